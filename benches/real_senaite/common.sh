# Shared by run.sh and load.sh (sourced): logging, timing, and the bulk-seeded instance.
# Expects SHARED, NAME, PORT, D, SITE, BULK_TARGET, TARBALL, WORK, HERE to be set.

log() { echo "[$(basename "$0") $(date +%H:%M:%S)] $*" >&2; }
now() { date +%s.%N; }
# utime+stime of a pid, in seconds
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

# The instance $NAME, bulk-seeded to $BULK_TARGET objects: kept if already seeded, else restored
# from the cached tarball, else seeded from scratch (~15 min) and cached. Leaves it stopped.
ensure_seeded_instance() {
    "$SHARED/stop.sh" "$NAME" || true
    if [ -f "$D/.bulk-seeded-$BULK_TARGET" ]; then
        log "instance $NAME already bulk-seeded ($BULK_TARGET)"
    elif [ -f "$TARBALL" ]; then
        log "restoring the seeded instance from $TARBALL"
        rm -rf "$D"
        mkdir -p "$SENAITE_DATA"
        tar -C "$SENAITE_DATA" -I zstd -xf "$TARBALL"
    else
        log "seeding $NAME from scratch (API seed, then in-process bulk seed to $BULK_TARGET objects)"
        rm -rf "$D"
        t0=$(now)
        "$SHARED/start.sh" "$NAME" "$PORT" >/dev/null
        "$SHARED/seed.sh" "$SITE" >/dev/null
        "$SHARED/stop.sh" "$NAME"
        t1=$(now)
        (cd "$D" && BULK_TARGET="$BULK_TARGET" /opt/senaite/venv/bin/zconsole run etc/zope.conf \
            "$HERE/seed_bulk.py" 2>"$WORK/seed_bulk.stderr" | tee "$WORK/seed_bulk.log" >&2)
        t2=$(now)
        log "seeding took $(echo "$t1 - $t0" | bc) s (API seed) + $(echo "$t2 - $t1" | bc) s (bulk)"
        touch "$D/.bulk-seeded-$BULK_TARGET"
        # pack nothing, keep history: the instance as the seed left it
        log "caching it as $TARBALL"
        tar -C "$SENAITE_DATA" -I 'zstd -T0 -3' -cf "$TARBALL.part" "$NAME" && mv "$TARBALL.part" "$TARBALL"
    fi

}
