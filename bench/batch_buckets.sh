#!/bin/bash
# Batch buckets: how a run at batch n is best served by variants compiled for 1, 2, 4, ...
# Times `inferbooster bench` at a few n that are not buckets with the three policies
# (INFERBOOSTER_BATCH_BUCKETS=split: n in bucket pieces, pad: n padded to the next
# bucket, off: a variant compiled for exactly n), alternating, and prints median ms,
# the ratio to the exact-size variant and peak RSS. The buckets are compiled first
# (unmeasured) into a private cache.
#
# usage: bench/batch_buckets.sh [--model resnet18|resnet50|PATH.onnx] [--sizes "3 5 6 13"]
#                               [--runs R] [--rounds K] [--priority] [--cli PATH]
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
CLI=$SRC/build/inferbooster
MODEL=resnet18
SIZES="3 5 6 13"
RUNS=10
ROUNDS=2
PRIORITY=0
while [ $# -gt 0 ]; do
    case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --priority) PRIORITY=1; shift ;;
    --cli) CLI=$2; shift 2 ;;
    *) echo "usage: $0 [--model M] [--sizes \"3 5 13\"] [--runs R] [--rounds K] [--priority] [--cli PATH]" >&2; exit 2 ;;
    esac
done
case "$MODEL" in
*.onnx) M=$MODEL ;;
*) M=$SRC/bench/models/$MODEL/model.onnx ;;
esac
[ -f "$M" ] || { echo "no model $M (bench/full_models.sh exports the benchmark models)" >&2; exit 2; }
[ -x "$CLI" ] || { echo "no $CLI: build first" >&2; exit 2; }
CACHE=$(mktemp -d /tmp/ib_batch_buckets.XXXXXX)
trap 'rm -rf "$CACHE"' EXIT
# Measured processes at autogroup nice -20 (root), as bench/compare.sh --priority does.
measure() {
    if [ "$PRIORITY" = 1 ]; then
        setsid bash -c 'echo -20 > /proc/self/autogroup; exec nice -n -20 "$@"' _ "$@"
    else
        "$@"
    fi
}
field() { /usr/bin/python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print('%.3f %.1f' % (d['median_ms'], d['peak_rss_mb']))"; }
max=1
for n in $SIZES; do while [ $max -lt "$n" ]; do max=$((max * 2)); done; done
echo "compiling buckets 1..$max and the exact sizes (unmeasured)..." >&2
for ((b = 1; b <= max; b *= 2)); do
    "$CLI" bench "$M" --batch $b --runs 1 --warmup 0 --cache-dir "$CACHE" --json >/dev/null
done
for n in $SIZES; do
    INFERBOOSTER_BATCH_BUCKETS=off "$CLI" bench "$M" --batch "$n" --runs 1 --warmup 0 \
        --cache-dir "$CACHE" --json >/dev/null
done
declare -A MS RSS
for ((r = 0; r < ROUNDS; r++)); do
    for n in $SIZES; do
        for mode in split pad off; do
            read -r ms rss < <(INFERBOOSTER_BATCH_BUCKETS=$mode measure "$CLI" bench "$M" \
                --batch "$n" --runs "$RUNS" --threads 2 --cache-dir "$CACHE" --json | field)
            MS[$n,$mode]="${MS[$n,$mode]:-} $ms"
            RSS[$n,$mode]=$rss
        done
    done
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf "%-10s %5s  %9s %9s %9s  %11s %9s  %s\n" model batch "split ms" "pad ms" "exact ms" \
    "split/exact" "pad/exact" "peak RSS MB split/pad/exact"
for n in $SIZES; do
    s=$(echo "${MS[$n,split]}" | med); p=$(echo "${MS[$n,pad]}" | med); e=$(echo "${MS[$n,off]}" | med)
    printf "%-10s %5s  %9.2f %9.2f %9.2f  %11.2f %9.2f  %s/%s/%s\n" "$(basename "$(dirname "$M")")" \
        "$n" "$s" "$p" "$e" "$(echo "$s / $e" | bc -l)" "$(echo "$p / $e" | bc -l)" \
        "${RSS[$n,split]}" "${RSS[$n,pad]}" "${RSS[$n,off]}"
done
