#!/usr/bin/env bash
# Benchmark of `senaite-sync extract` against a real SENAITE 2.6 (see README.md here).
#
#   benches/real_senaite/run.sh            # seed (or restore the cached seed), measure, stop
#
# Env:
#   NAME (bench), PORT (8381)          instance name / port (start.sh NAME PORT)
#   BULK_TARGET (10200)                objects the bulk seed creates (uid_catalog, no Reference)
#   SAMPLE_N (1000)                    objects read one by one for baseline (a)
#   VARIANTS ("default:4 default:1 default:2 v1:4 v1:1 v1:2")  extract variants, MODE:JOBS
#   BIN (target/release/senaite-sync)  the extractor (built with cargo build --release if missing)
#   CACHE (~/.cache/senaite-sync)      where the seeded instance is cached as a tar
#   KEEP_RUNNING=1                     leave the instance running at the end
#   PERF=1                             also record `perf record -g` of the v1 -j 4 extract
#   SITE_URL=http://h:p/senaite SERVER_PID=N   measure an already running site instead (no seeding,
#                                      no start/stop; SERVER_PID for the server-CPU column)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SHARED="${SENAITE_SHARED:-/work/shared/senaite}"
NAME="${NAME:-bench}"
PORT="${PORT:-8381}"
SENAITE_DATA="${SENAITE_DATA:-/var/lib/senaite}"
D="$SENAITE_DATA/$NAME"
BULK_TARGET="${BULK_TARGET:-10200}"
SAMPLE_N="${SAMPLE_N:-1000}"
VARIANTS="${VARIANTS:-default:4 default:1 default:2 v1:4 v1:1 v1:2}"
BIN="${BIN:-$ROOT/target/release/senaite-sync}"
CACHE="${CACHE:-$HOME/.cache/senaite-sync}"
TARBALL="$CACHE/senaite-$NAME-seeded-$BULK_TARGET.tar.zst"
SITE="${SITE_URL:-http://127.0.0.1:$PORT/senaite}"
API="$SITE/@@API/senaite/v1"
WORK="${WORK:-/tmp/senaite-bench-$NAME}"
export TZ=UTC

source "$HERE/common.sh"

mkdir -p "$WORK" "$CACHE"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

# --- 0. the binary -------------------------------------------------------------------------
if [ ! -x "$BIN" ]; then
    log "building $BIN"
    (cd "$ROOT" && cargo build --release)
fi
# a private copy: others may rebuild target/release while the variants run
cp "$BIN" "$WORK/senaite-sync" && BIN="$WORK/senaite-sync"
log "extractor: $BIN ($(stat -c %y "$ROOT/target/release/senaite-sync" 2>/dev/null | cut -c1-19) build)"

# --- 1. a seeded instance (cached) -----------------------------------------------------------
if [ -n "${SITE_URL:-}" ]; then
    PID="${SERVER_PID:?SERVER_PID is needed with SITE_URL}"
    log "measuring the running site $SITE_URL (server pid $PID)"
else
ensure_seeded_instance

PID="$("$SHARED/start.sh" "$NAME" "$PORT" | tail -1)"
trap '[ "${KEEP_RUNNING:-0}" = 1 ] || "$SHARED/stop.sh" "$NAME"' EXIT
log "instance $NAME up on $PORT, pid $PID"
fi

# --- 2. the listing (uid, portal_type) every measurement uses ----------------------------------
log "listing uid_catalog"
: > "$WORK/listing.tsv"
b=0
while :; do
    curl -sf -u admin:admin \
        "$API/search?catalog=uid_catalog&path=/${SITE#http*://*/}&depth=100&sort_on=UID&limit=1000&b_start=$b" \
        -o "$WORK/listing.page.json"
    n=$(jq '.items | length' "$WORK/listing.page.json")
    jq -r '.items[] | select(.uid != null and .portal_type != "Reference") | [.uid, .portal_type] | @tsv' \
        "$WORK/listing.page.json" >> "$WORK/listing.tsv"
    [ "$n" -lt 1000 ] && break
    b=$((b + 1000))
done
sort -u -o "$WORK/listing.tsv" "$WORK/listing.tsv"
TOTAL=$(wc -l < "$WORK/listing.tsv")
log "$TOTAL objects listed (without Reference); by type:"
cut -f2 "$WORK/listing.tsv" | sort | uniq -c | sort -rn | head -8 >&2

# warm the server's caches once (first complete reads after a start are slower)
curl -s -o /dev/null -u admin:admin "$API/search?portal_type=AnalysisRequest&complete=yes&workflow=yes&limit=50"

# --- 3. baseline (a): SENAITE.SYNC's pattern, one GET per object, sequential -------------------
# One curl process with a keep-alive connection, SAMPLE_N uids drawn with a fixed seed.
python3 - "$WORK/listing.tsv" "$SAMPLE_N" > "$WORK/sample.uids" <<'EOF'
import random, sys
rows = [l.split("\t")[0] for l in open(sys.argv[1]) if l.strip()]
random.Random(20260602).shuffle(rows)
print("\n".join(rows[: int(sys.argv[2])]))
EOF
N_A=$(wc -l < "$WORK/sample.uids")
{
    echo 'user = "admin:admin"'
    echo 'silent'
    echo 'write-out = "%{http_code} %{time_total}\n"'
    while read -r uid; do
        echo "url = \"$API/$uid?complete=yes&workflow=yes\""
        echo 'output = "/dev/null"'
    done < "$WORK/sample.uids"
} > "$WORK/a.curlrc"
log "(a) $N_A single GETs ?complete=yes&workflow=yes, sequential"
c0=$(cpu_of "$PID"); t0=$(now)
curl -K "$WORK/a.curlrc" > "$WORK/a.out"
t1=$(now); c1=$(cpu_of "$PID")
A_S=$(echo "$t1 - $t0" | bc -l)
A_RATE=$(echo "$N_A / $A_S" | bc -l)
A_BAD=$(awk '$1 != 200' "$WORK/a.out" | wc -l)
printf 'a_single_get\t%d\t%.2f\t%.1f\t%.1f\t-\t%d non-200\n' "$N_A" "$A_S" "$A_RATE" \
    "$(echo "$c1 - $c0" | bc -l)" "$A_BAD" >> "$RESULTS"
log "(a) $(printf '%.1f' "$A_RATE") objects/s ($A_BAD non-200); extrapolated to $TOTAL objects: $(printf '%.0f' "$(echo "$TOTAL / $A_RATE" | bc -l)") s"

# --- 4. baseline (b): the server's floor, complete searches of 500 per page, curl ---------------
{
    echo 'user = "admin:admin"'
    echo 'silent'
    echo 'write-out = "%{http_code} %{time_total} %{url}\n"'
    i=0
    cut -f2 "$WORK/listing.tsv" | sort | uniq -c | while read -r cnt pt; do
        for ((b = 0; b < cnt; b += 500)); do
            i=$((i + 1))
            echo "url = \"$API/search?portal_type=$pt&complete=yes&workflow=yes&limit=500&b_start=$b\""
            echo "output = \"$WORK/b.pages/$(printf %05d "$i").json\""
        done
    done
} > "$WORK/b.curlrc"
rm -rf "$WORK/b.pages"; mkdir -p "$WORK/b.pages"
log "(b) complete searches, 500 per page, every portal type, sequential"
c0=$(cpu_of "$PID"); t0=$(now)
curl -K "$WORK/b.curlrc" > "$WORK/b.out"
t1=$(now); c1=$(cpu_of "$PID")
B_S=$(echo "$t1 - $t0" | bc -l)
N_B=$(cat "$WORK"/b.pages/*.json | jq -s 'map(.items // [] | length) | add')
B_RATE=$(echo "$N_B / $B_S" | bc -l)
B_BAD=$(awk '$1 != 200' "$WORK/b.out" | wc -l)
printf 'b_floor_pages500\t%d\t%.2f\t%.1f\t%.1f\t-\t%d pages non-200\n' "$N_B" "$B_S" "$B_RATE" \
    "$(echo "$c1 - $c0" | bc -l)" "$B_BAD" >> "$RESULTS"
log "(b) $N_B objects in $(printf '%.1f' "$B_S") s = $(printf '%.1f' "$B_RATE") objects/s ($(printf '%.2f' "$(echo "1000 / $B_RATE" | bc -l)") ms/object); non-200 pages: $B_BAD"
awk '$1 != 200 { print "    " $0 }' "$WORK/b.out" >&2

# --- 5. senaite-sync extract variants -----------------------------------------------------------
for v in $VARIANTS; do
    mode="${v%%:*}"; jobs="${v##*:}"
    case "$mode" in
        default) extra=() ;;
        v1) extra=(--history v1 --local-roles none) ;;
        *) log "unknown variant $v"; exit 2 ;;
    esac
    out="$WORK/snap-$mode-j$jobs"
    rm -rf "$out"
    log "extract $mode -j $jobs ${extra[*]:-}"
    perf_pre=()
    if [ "${PERF:-0}" = 1 ] && [ "$v" = v1:4 ]; then
        perf_pre=(perf record -g -o "$WORK/perf-v1-j4.data" --)
    fi
    c0=$(cpu_of "$PID"); t0=$(now)
    SENAITE_USER=admin SENAITE_PASSWORD=admin /usr/bin/time -f '%U %S %e' -o "$WORK/time-$mode-j$jobs" \
        "${perf_pre[@]}" "$BIN" --progress never -v extract --url "$SITE" --out "$out" -j "$jobs" "${extra[@]}" \
        > "$WORK/extract-$mode-j$jobs.out" 2> "$WORK/extract-$mode-j$jobs.log"
    t1=$(now); c1=$(cpu_of "$PID")
    S=$(echo "$t1 - $t0" | bc -l)
    N=$(jq '[.counts[]] | add' "$out/manifest.json")
    read -r cu cs _ < "$WORK/time-$mode-j$jobs"
    R=$(echo "$N / $S" | bc -l)
    printf 'extract_%s_j%s\t%d\t%.2f\t%.1f\t%.1f\t%.1f\t%s\n' "$mode" "$jobs" "$N" "$S" "$R" \
        "$(echo "$c1 - $c0" | bc -l)" "$(echo "$cu + $cs" | bc -l)" \
        "$(printf 'x%.2f vs (a), x%.2f vs (b)' "$(echo "$R / $A_RATE" | bc -l)" "$(echo "$R / $B_RATE" | bc -l)")" \
        >> "$RESULTS"
    cat "$WORK/extract-$mode-j$jobs.out" >&2
    python3 "$HERE/analyze_log.py" "$WORK/extract-$mode-j$jobs.log" "$jobs" \
        | tee "$WORK/analysis-$mode-j$jobs.txt" | sed 's/^/    /' >&2
done

# --- 6. the table -------------------------------------------------------------------------------
echo
echo "SENAITE 2.6 at $SITE, $TOTAL objects listed; (a) = $N_A single GETs, (b) = complete pages of 500"
{
    printf 'variant\tobjects\tseconds\tobjects/s\tserver_cpu_s\tclient_cpu_s\tnote\n'
    cat "$RESULTS"
} | column -t -s $'\t'
echo
echo "ratios: objects/s of the variant / objects/s of (a) resp. (b); (b) ratio >= 0.80 means within 1.25x of the floor"
