#!/usr/bin/env bash
# Benchmark of `senaite-sync extract` against a real BIKA LIMS 3.1.15 (../shared/bika), side by
# side with the server's own floor: the same objects read by bika.lims' legacy `@@API/read` in
# the largest pages the server allows (page_size=0: a whole catalog per request), with curl.
#
#   benches/real_bika/extract.sh        # seed (or restore the cached seed), measure, stop
#
# The floor, per run (one curl process, sequential, keep-alive):
#   - GET @@API/read?catalog_name=C&page_size=0&sort_on=UID  for C = bika_catalog and
#     bika_setup_catalog (every field, as the extractor's full reads);
#   - portal_catalog, whose whole read fails on this site (folders whose `constrainTypesMode`
#     default method is broken, e.g. SamplingRounds): one POST read (page_size=0) naming the UIDs
#     (`UID[]`) of every object of the types that read whole, and the types that do not with
#     `include_fields` = the identity keys only (fewer fields than the extractor gets: a floor
#     slightly below the fair one);
#   - bika_analysis_catalog with include_fields = the field set the extractor ends up with for
#     analyses (their full read fails on the server, `success: false, "'Ca'"`; the extractor
#     re-reads them with the keys of the analyses inlined in the requests' `Analyses`, plus its
#     identity keys, minus `path` and `*_uid`): computed here once, before timing, from an
#     untimed bika_catalog read, by the same rule;
#   - the same attachment downloads (`<path>/at_download/AttachmentFile` of every Attachment).
# The extractor additionally probes the site, reads users (getusers per role, routes /users),
# asks routes for file names, and writes the snapshot: all counted against it.
#
# Env:
#   NAME (b2), PORT (8496)        instance (../shared/bika/start.sh NAME PORT)
#   SAMPLES (600)                 bulk analysis requests seeded (tests/e2e/seed_bika.py --samples)
#   RUNS (3)                      alternating floor/extract rounds (medians are reported)
#   VARIANTS ("250:2 5000:2 5000:1")   extract variants PAGE_SIZE:JOBS
#   BIN (target/release/senaite-sync)  built with cargo build --release if missing
#   CACHE (~/.cache/senaite-sync)      the seeded instance is cached there as a tarball, keyed
#                                      by SAMPLES and the sha256 of tests/e2e/seed_bika.py
#   KEEP_RUNNING=1                leave the instance running at the end
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SHARED="${BIKA_SHARED:-/work/shared/bika}"
NAME="${NAME:-b2}"
PORT="${PORT:-8496}"
BIKA_DATA="${BIKA_DATA:-/var/lib/bika}"
D="$BIKA_DATA/$NAME"
SAMPLES="${SAMPLES:-600}"
RUNS="${RUNS:-3}"
VARIANTS="${VARIANTS:-250:2 5000:2 5000:1}"
BIN="${BIN:-$ROOT/target/release/senaite-sync}"
CACHE="${CACHE:-$HOME/.cache/senaite-sync}"
# The cache key names the seed script's content: a changed seed (e.g. the partitioned sample)
# is seeded afresh instead of restoring a tarball of the old one.
SEED_KEY="$SAMPLES-$(sha256sum "$ROOT/tests/e2e/seed_bika.py" | cut -c1-12)"
TARBALL="$CACHE/bika-seeded-$SEED_KEY.tar.zst"
SITE="http://127.0.0.1:$PORT/lims"
WORK="${WORK:-/tmp/bika-bench-$NAME}"
export TZ=UTC

log() { echo "[$(basename "$0") $(date +%H:%M:%S)] $*" >&2; }
now() { date +%s.%N; }
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

mkdir -p "$WORK" "$CACHE"

# --- 0. the binary (a private copy: others may rebuild target/release meanwhile) ----------------
if [ ! -x "$BIN" ]; then
    log "building $BIN"
    (cd "$ROOT" && cargo build --release)
fi
cp "$BIN" "$WORK/senaite-sync" && BIN="$WORK/senaite-sync"

# --- 1. a seeded instance: kept, else restored from the tarball, else seeded and cached -------
"$SHARED/stop.sh" "$NAME" >/dev/null 2>&1 || true
if [ -f "$D/.bench-seeded-$SEED_KEY" ]; then
    log "instance $NAME already seeded ($SAMPLES samples)"
elif [ -f "$TARBALL" ]; then
    log "restoring the seeded instance from $TARBALL"
    rm -rf "$D"
    tar -C "$BIKA_DATA" -I zstd -xf "$TARBALL" --transform "s|^[^/]*|$NAME|"
else
    log "seeding $NAME from scratch (tests/e2e/seed_bika.py --samples $SAMPLES)"
    rm -rf "$D"
    t0=$(now)
    "$SHARED/start.sh" "$NAME" "$PORT" >/dev/null
    python3 "$ROOT/tests/e2e/seed_bika.py" "$SITE" --samples "$SAMPLES" > "$WORK/seed.log"
    "$SHARED/stop.sh" "$NAME" >/dev/null
    log "seeding took $(echo "$(now) - $t0" | bc) s"
    touch "$D/.bench-seeded-$SEED_KEY"
    tar -C "$BIKA_DATA" -I 'zstd -T0 -3' -cf "$TARBALL.part" "$NAME" && mv "$TARBALL.part" "$TARBALL"
    log "cached as $TARBALL"
fi
PID="$("$SHARED/start.sh" "$NAME" "$PORT" | tail -1)"
trap '[ "${KEEP_RUNNING:-0}" = 1 ] || "$SHARED/stop.sh" "$NAME" >/dev/null' EXIT
log "instance $NAME up on $PORT, pid $PID"

# --- 2. the floor's requests (worked out untimed; one curl process replays them) ----------------
read_url() { echo "$SITE/@@API/read?catalog_name=$1&page_size=0&sort_on=UID&sort_order=ascending${2:+&include_fields=$2}"; }
IDENTITY="UID,portal_type,id,title,review_state,inactive_state,cancellation_state,transitions"
curl -sf -u admin:admin "$(read_url bika_catalog)" -o "$WORK/ars.json"
# the extractor's field set for analyses: keys of the inlined analyses + identity - path - *_uid
FIELDS=$(jq -r --arg id "$IDENTITY" '[.objects[] | select(.portal_type == "AnalysisRequest") | .Analyses[]? | objects | keys[]]
    + ($id | split(",")) | unique | map(select(. != "path" and (endswith("_uid") | not))) | join(",")' "$WORK/ars.json")
# portal_catalog cannot be read whole (folders with a broken constrainTypesMode): its types that
# read whole go in one POST naming their UIDs, the others with the identity keys only.
curl -sf -u admin:admin "$(read_url portal_catalog UID,portal_type)" \
    | jq -r '.objects[] | [.UID, .portal_type] | @tsv' > "$WORK/portal_catalog.tsv"
: > "$WORK/good.uids"; BAD_TYPES=""
for t in $(cut -f2 "$WORK/portal_catalog.tsv" | sort -u); do
    if curl -sf -u admin:admin "$(read_url portal_catalog)&portal_type=$t" | jq -e '.success == true' > /dev/null; then
        awk -F'\t' -v t="$t" '$2 == t { print $1 }' "$WORK/portal_catalog.tsv" >> "$WORK/good.uids"
    else
        BAD_TYPES="$BAD_TYPES $t"
    fi
done
log "portal_catalog: $(wc -l < "$WORK/good.uids") objects read whole; types that fail whole:$BAD_TYPES"
{ echo "catalog_name=portal_catalog&page_size=0&sort_on=UID&sort_order=ascending"; sed 's/^/UID[]=/' "$WORK/good.uids"; } \
    | paste -sd'&' > "$WORK/portal_catalog.form"
ATTS=$(curl -sf -u admin:admin "$(read_url portal_catalog UID,path)&portal_type=Attachment" | jq -r '.objects[].path')
{
    first=1
    seg() { # URL OUTPUT [DATA_FILE]
        [ "$first" = 1 ] || echo 'next'
        first=0
        echo 'user = "admin:admin"'; echo 'silent'
        echo 'write-out = "%{http_code} %{time_total} %{size_download} %{url}\n"'
        echo "url = \"$1\""; echo "output = \"$2\""
        [ -z "${3:-}" ] || echo "data-binary = \"@$3\""
    }
    seg "$SITE/@@API/read" "$WORK/floor/1.json" "$WORK/portal_catalog.form"
    i=1
    for t in $BAD_TYPES; do
        i=$((i + 1)); seg "$(read_url portal_catalog "$IDENTITY")&portal_type=$t" "$WORK/floor/$i.json"
    done
    seg "$(read_url bika_catalog)" "$WORK/floor/b1.json"
    seg "$(read_url bika_setup_catalog)" "$WORK/floor/b2.json"
    seg "$(read_url bika_analysis_catalog "$FIELDS")" "$WORK/floor/b3.json"
    for p in $ATTS; do
        seg "http://127.0.0.1:$PORT$p/at_download/AttachmentFile" /dev/null
    done
} > "$WORK/floor.curlrc"
mkdir -p "$WORK/floor"
# warm the server once (first reads after a start are slower)
curl -s -K "$WORK/floor.curlrc" > /dev/null

floor() {
    rm -f "$WORK"/floor/*.json
    local c0 t0 t1 c1
    c0=$(cpu_of "$PID"); t0=$(now)
    curl -K "$WORK/floor.curlrc" > "$WORK/floor.out"
    t1=$(now); c1=$(cpu_of "$PID")
    if awk '$1 != 200' "$WORK/floor.out" | grep -q . || cat "$WORK"/floor/*.json | jq -e 'select(.success != true)' >/dev/null; then
        log "floor: a request failed:"; cat "$WORK/floor.out" >&2; exit 1
    fi
    FLOOR_READ=$(cat "$WORK"/floor/*.json | jq -s 'map(.objects | length) | add')
    printf 'floor\t%s\t%s\t-\t-\n' "$(echo "$t1 - $t0" | bc -l)" "$(echo "$c1 - $c0" | bc -l)"
}

extract() { # PAGE_SIZE JOBS
    local out="$WORK/snap" c0 t0 t1 c1 cu cs rss
    rm -rf "$out"
    c0=$(cpu_of "$PID"); t0=$(now)
    SENAITE_USER=admin SENAITE_PASSWORD=admin /usr/bin/time -f '%U %S %M' -o "$WORK/time" \
        "$BIN" --progress never -v extract --url "$SITE" --out "$out" --source-kind bika \
        --page-size "$1" -j "$2" > "$WORK/extract.out" 2> "$WORK/extract-$1-$2.log"
    t1=$(now); c1=$(cpu_of "$PID")
    read -r cu cs rss < "$WORK/time"
    N=$(jq '[.counts[]] | add' "$out/manifest.json")
    printf 'extract_p%s_j%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(echo "$t1 - $t0" | bc -l)" \
        "$(echo "$c1 - $c0" | bc -l)" "$(echo "$cu + $cs" | bc -l)" "$rss"
}

# --- 3. alternating rounds -----------------------------------------------------------------------
RAW="$WORK/raw.tsv"; : > "$RAW"
for r in $(seq 1 "$RUNS"); do
    log "round $r/$RUNS"
    floor >> "$RAW"
    for v in $VARIANTS; do
        extract "${v%%:*}" "${v##*:}" >> "$RAW"
    done
done
NOTES=$(jq -r '[.notes[]? | .kind] | group_by(.) | map("\(.[0])=\(length)") | join(" ")' "$WORK/snap/manifest.json")

# --- 4. the table ---------------------------------------------------------------------------------
echo
echo "BIKA LIMS 3.1.15 at $SITE ($SAMPLES bulk samples): snapshot objects N=$N; floor reads $FLOOR_READ catalog entries (objects in several catalogs count in each)"
echo "medians of $RUNS alternating rounds; objects/s = N / seconds for both sides; ratio = seconds / floor seconds (<= 1.25 is the target);"
echo "cpu_ratio = the server's CPU seconds / the floor's (steadier than wall time on a shared machine)"
FS=$(awk -F'\t' '$1 == "floor" { print $2 }' "$RAW" | median)
FC=$(awk -F'\t' '$1 == "floor" { print $3 }' "$RAW" | median)
{
    printf 'variant\tseconds\tobjects/s\tratio\tserver_cpu_s\tcpu_ratio\tclient_cpu_s\tpeak_rss_MB\tRSS_MB/1k_objects\n'
    for name in floor $(for v in $VARIANTS; do echo "extract_p${v%%:*}_j${v##*:}"; done); do
        s=$(awk -F'\t' -v n="$name" '$1 == n { print $2 }' "$RAW" | median)
        sc=$(awk -F'\t' -v n="$name" '$1 == n { print $3 }' "$RAW" | median)
        if [ "$name" = floor ]; then cc=-; rss=-; per=-; else
            cc=$(awk -F'\t' -v n="$name" '$1 == n { print $4 }' "$RAW" | median)
            rss=$(awk -F'\t' -v n="$name" '$1 == n { print $5 }' "$RAW" | median)
            per=$(printf '%.1f' "$(echo "$rss / 1024 / $N * 1000" | bc -l)")
            rss=$(printf '%.0f' "$(echo "$rss / 1024" | bc -l)"); cc=$(printf '%.2f' "$cc")
        fi
        printf '%s\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\n' "$name" "$s" "$(echo "$N / $s" | bc -l)" \
            "$(echo "$s / $FS" | bc -l)" "$sc" "$(echo "$sc / $FC" | bc -l)" "$cc" "$rss" "$per"
    done
} | column -t -s $'\t'
echo "notes in the last snapshot: $NOTES"
echo "raw rounds: $RAW"
