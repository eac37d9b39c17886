#!/bin/bash
# Tuned vs untuned end to end: `inferbooster bench` of MODEL with the tuning database
# (INFERBOOSTER_TUNING_DB=DB) and without it (off), alternating in rounds so that load on a
# shared machine hits both sides alike; each run in its own session and autogroup at
# nice -20 (as bench/compare.py --priority does, root needed for the priority).
# Prints each round's medians and the median of the per-round ratios.
# (ONNX Runtime's numbers for the same models: bench/compare.sh.)
#
# usage: bench/tune_compare.sh CLI MODEL DB [--batch N] [--rounds R] [--runs N]
#   first tune: CLI tune MODEL --db DB --budget 20m [--batch N]
set -u
if [ $# -lt 3 ]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
CLI=$1 MODEL=$2 DB=$3
shift 3
BATCH=1 ROUNDS=3 RUNS=30
while [ $# -gt 0 ]; do
    case $1 in
        --batch) BATCH=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ -f "$DB" ] || { echo "no tuning database at $DB" >&2; exit 2; }

prio() {
    setsid bash -c 'echo -20 > /proc/self/autogroup 2>/dev/null; exec nice -n -20 "$@"' _ "$@"
}
# the two artifacts are compiled once, then only timed
WORK=$(mktemp -d /tmp/ib_tune_compare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
INFERBOOSTER_TUNING_DB=off "$CLI" compile "$MODEL" --batch "$BATCH" -o "$WORK/off.ibc" > /dev/null || exit 1
INFERBOOSTER_TUNING_DB=$DB "$CLI" compile "$MODEL" --batch "$BATCH" -o "$WORK/tuned.ibc" \
    | grep "tuned:" || echo "(no tuned kernels: the database has no records for this batch/target)"
median_ms() {
    prio "$CLI" bench "$WORK/$1.ibc" --runs "$RUNS" --json \
        2>/dev/null | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["median_ms"])'
}
ratios=()
printf "%-6s %12s %12s %8s\n" round "untuned ms" "tuned ms" ratio
for r in $(seq 1 "$ROUNDS"); do
    u=$(median_ms off) || exit 1
    t=$(median_ms tuned) || exit 1
    ratio=$(/usr/bin/python3 -c "print('%.3f' % ($t / $u))")
    ratios+=("$ratio")
    printf "%-6s %12.3f %12.3f %8s\n" "$r" "$u" "$t" "$ratio"
done
/usr/bin/python3 - "${ratios[@]}" <<'EOF'
import statistics, sys
r = [float(x) for x in sys.argv[1:]]
print("tuned / untuned, median of %d rounds: %.3f" % (len(r), statistics.median(r)))
EOF
echo "(batch $BATCH, medians of $RUNS runs per side and round, high priority)"
