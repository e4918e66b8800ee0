#!/usr/bin/env bash
# Benchmark of `senaite-sync load` into a real SENAITE 2.6 (see README.md here), side by side with
# (a) creating the same kind of data one by one through plain senaite.jsonapi and (b) the
# destination's in-process floor (../shared/senaite/floor/create_floor.py), same instance, same run.
#
#   benches/real_senaite/load.sh
#
# Env:
#   NAME (bench), PORT (8381)        the bulk-seeded source (restored from the cache like run.sh)
#   DEST (benchdst), DEST_PORT (8382) the destination (recreated empty; the receiver must be
#                                    pip-installed in /opt/senaite/venv: companion/)
#   A_SAMPLES (40)                   samples created one by one for baseline (a)
#   BATCH (50)                       load --batch-size
#   SNAP                             reuse an extracted snapshot of the source instead of extracting
#   BIN (target/release/senaite-sync)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SHARED="${SENAITE_SHARED:-/work/shared/senaite}"
NAME="${NAME:-bench}"
PORT="${PORT:-8381}"
DEST="${DEST:-benchdst}"
DEST_PORT="${DEST_PORT:-8382}"
SENAITE_DATA="${SENAITE_DATA:-/var/lib/senaite}"
D="$SENAITE_DATA/$NAME"
BULK_TARGET="${BULK_TARGET:-10200}"
A_SAMPLES="${A_SAMPLES:-40}"
BATCH="${BATCH:-50}"
BIN="${BIN:-$ROOT/target/release/senaite-sync}"
CACHE="${CACHE:-$HOME/.cache/senaite-sync}"
TARBALL="$CACHE/senaite-$NAME-seeded-$BULK_TARGET.tar.zst"
SITE="http://127.0.0.1:$PORT/senaite"
DSITE="http://127.0.0.1:$DEST_PORT/senaite"
WORK="${WORK:-/tmp/senaite-bench-load}"
PY="${PY:-$HOME/.cache/senaite-sync/pyenv/bin/python3}"
export TZ=UTC SENAITE_USER=admin SENAITE_PASSWORD=admin
source "$HERE/common.sh"

mkdir -p "$WORK" "$CACHE"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
cp "$BIN" "$WORK/senaite-sync" && BIN="$WORK/senaite-sync"
"$PY" -c 'import pyarrow' || { log "needs pyarrow in $PY (bash .ci/run creates it)"; exit 2; }

# --- 1. the source snapshot -------------------------------------------------------------------
SNAP="${SNAP:-$WORK/src-snap}"
if [ ! -f "$SNAP/manifest.json" ]; then
    ensure_seeded_instance
    PID="$("$SHARED/start.sh" "$NAME" "$PORT" | tail -1)"
    log "extracting the source ($SITE, pid $PID) into $SNAP"
    "$BIN" --progress never extract --url "$SITE" --out "$SNAP" --force --restart
    "$SHARED/stop.sh" "$NAME"
fi
N_SNAP=$(jq '[.counts[]] | add' "$SNAP/manifest.json")
log "snapshot $SNAP: $N_SNAP objects"

# --- 2. a fresh destination, then load ----------------------------------------------------------
"$SHARED/stop.sh" "$DEST" || true
rm -rf "${SENAITE_DATA:?}/$DEST" "$WORK/state"
DPID="$("$SHARED/start.sh" "$DEST" "$DEST_PORT" | tail -1)"
trap '"$SHARED/stop.sh" "$DEST" || true' EXIT
log "destination $DSITE up (pid $DPID); loading"
c0=$(cpu_of "$DPID"); t0=$(now)
/usr/bin/time -f '%U %S %e %M' -o "$WORK/time-load" \
    "$BIN" --progress never load "$SNAP" --url "$DSITE" --state "$WORK/state" --batch-size "$BATCH" --json \
    > "$WORK/load.json" 2> "$WORK/load.log" || { tail -20 "$WORK/load.log"; exit 1; }
t1=$(now); c1=$(cpu_of "$DPID")
L_CPU=$(echo "$c1 - $c0" | bc -l)
L_S=$(echo "$t1 - $t0" | bc -l)
L_N=$(jq '.totals.created + .totals.updated' "$WORK/load.json")
L_RATE=$(echo "$L_N / $L_S" | bc -l)
read -r lu ls _ lrss < "$WORK/time-load"
log "load: $L_N objects written in $(printf %.1f "$L_S") s = $(printf %.1f "$L_RATE") objects/s; rejected $(jq '.rejected | length' "$WORK/load.json")"

# --- 3. (a) plain senaite.jsonapi: samples created one by one (SENAITE creates their analyses) ---
"$PY" - "$SNAP" "$A_SAMPLES" > "$WORK/a.bodies.jsonl" <<'EOF'
import json, sys
import pyarrow.parquet as pq
snap, n = sys.argv[1], int(sys.argv[2])
objs = pq.read_table(snap + "/tables/objects.parquet",
                     columns=["uid", "portal_type", "parent_uid", "fields"]).to_pylist()
service_of = {}
for o in objs:
    if o["portal_type"] == "Analysis":
        f = json.loads(o["fields"])
        svc = (f.get("Service") or {}).get("uid") or f.get("getServiceUID")
        if svc:
            service_of.setdefault(o["parent_uid"], []).append(svc)
out = 0
for o in objs:
    if o["portal_type"] != "AnalysisRequest" or o["uid"] not in service_of:
        continue
    f = json.loads(o["fields"])
    body = {"Contact": (f.get("Contact") or {}).get("uid"),
            "SampleType": (f.get("SampleType") or {}).get("uid"),
            "DateSampled": "2026-01-02 10:00:00",
            "Analyses": service_of[o["uid"]]}
    if not body["Contact"] or not body["SampleType"]:
        continue
    print(json.dumps({"client": o["parent_uid"], "objects": 1 + len(body["Analyses"]), "body": body}))
    out += 1
    if out >= n:
        break
EOF
log "(a) $(wc -l < "$WORK/a.bodies.jsonl") samples created one by one through senaite.jsonapi"
A_N=0
t0=$(now)
while read -r line; do
    client=$(jq -r .client <<<"$line")
    jq -c .body <<<"$line" > "$WORK/a.body.json"
    code=$(curl -s -o "$WORK/a.resp.json" -w '%{http_code}' -u admin:admin -H 'Content-Type: application/json' \
        --data-binary @"$WORK/a.body.json" "$DSITE/@@API/senaite/v1/AnalysisRequest/create/$client")
    if [ "$code" = 200 ] && jq -e '.items[0].uid' "$WORK/a.resp.json" >/dev/null; then
        A_N=$((A_N + $(jq .objects <<<"$line")))
    else
        log "(a) create answered $code: $(head -c 300 "$WORK/a.resp.json")"
    fi
done < "$WORK/a.bodies.jsonl"
t1=$(now)
A_S=$(echo "$t1 - $t0" | bc -l)
A_RATE=$(echo "$A_N / $A_S" | bc -l)
log "(a) $A_N objects in $(printf %.1f "$A_S") s = $(printf %.1f "$A_RATE") objects/s"

# --- 4. (b) the in-process floor on a stopped copy of the destination ---------------------------
"$SHARED/stop.sh" "$DEST"
FLOOR="$SENAITE_DATA/${DEST}-floor"
rm -rf "$FLOOR"
cp -a "$SENAITE_DATA/$DEST" "$FLOOR"
sed -i "s|$SENAITE_DATA/$DEST|$FLOOR|g" "$FLOOR/etc/zope.conf"
log "(b) create_floor.py on a copy of the loaded destination"
(cd "$FLOOR" && /opt/senaite/venv/bin/zconsole run etc/zope.conf "$SHARED/floor/create_floor.py") \
    > "$WORK/floor.out" 2> "$WORK/floor.err" || { tail -20 "$WORK/floor.err"; exit 1; }
cat "$WORK/floor.out" >&2
rm -rf "$FLOOR"
B_RATE=$(sed -n 's/^raw samples:.* = \([0-9.]*\) objects\/s.*/\1/p' "$WORK/floor.out")
C_RATE=$(sed -n 's/^contacts:.* = \([0-9.]*\) objects\/s.*/\1/p' "$WORK/floor.out")

# --- 5. the table ---------------------------------------------------------------------------------
echo
echo "load of $N_SNAP objects into a fresh SENAITE 2.6 ($DSITE), batch $BATCH"
{
    printf 'what\tobjects\tseconds\tobjects/s\tnote\n'
    printf 'load\t%d\t%.1f\t%.1f\tclient CPU %.1f s, peak RSS %d MB; server CPU %.1f s\n' "$L_N" "$L_S" "$L_RATE" \
        "$(echo "$lu + $ls" | bc -l)" "$((lrss / 1024))" "$L_CPU"
    printf '(a) plain senaite.jsonapi creates\t%d\t%.1f\t%.1f\tsamples with their analyses\n' "$A_N" "$A_S" "$A_RATE"
    printf '(b) in-process floor\t-\t-\t%s\tsamples with analyses (contacts: %s)\n' "$B_RATE" "$C_RATE"
} | column -t -s $'\t'
echo
printf 'load / (a) = %.2f (target >= 2);  (b) / load = %.2f (target <= 1.5)\n' \
    "$(echo "$L_RATE / $A_RATE" | bc -l)" "$(echo "$B_RATE / $L_RATE" | bc -l)"
