#!/bin/bash
# Acceptance run on the full-size models: ResNet-50, MobileNetV2 and a BERT-base encoder
# (seeded random weights) through `inferbooster run`, with max abs error against PyTorch
# and run time next to PyTorch's forward time measured in the same run (the peer). Not part
# of the test suite: it exports ~550 MB of models and runs them.
#
# usage: bench/full_models.sh [CLI] [MODELDIR] [-- extra `run` flags, e.g. --reference]
#   CLI defaults to build/inferbooster, MODELDIR to build/full_models.
#   IB_FULL_MODELS: which models (default "resnet50 mobilenet_v2 bert");
#   IB_FULL_REPEAT: timed runs per model, for both InferBooster and PyTorch (default 5).
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
CLI=$SRC/build/inferbooster
DIR=$SRC/build/full_models
pos=0
extra=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        extra=("$@")
        break
    fi
    case $pos in
        0) CLI=$1 ;;
        1) DIR=$1 ;;
        *) echo "usage: $0 [CLI] [MODELDIR] [-- run flags]" >&2; exit 2 ;;
    esac
    pos=$((pos + 1))
    shift
done
PY=/usr/bin/python3
MAKE_MODELS=$SRC/tools/make_models.py
HELPER=$SRC/tests/model_outputs.py
MODELS=${IB_FULL_MODELS:-resnet50 mobilenet_v2 bert}
RUN_TIMEOUT=${IB_FULL_TIMEOUT:-600}
REPEAT=${IB_FULL_REPEAT:-5}

if [ ! -x "$CLI" ]; then
    echo "not executable: $CLI (build first, or pass the CLI path)" >&2
    exit 2
fi

want=$(sha256sum "$MAKE_MODELS" | cut -d' ' -f1)
mkdir -p "$DIR"
for m in $MODELS; do
    if [ "$(cat "$DIR/$m/.stamp" 2>/dev/null)" != "$want" ] || [ ! -f "$DIR/$m/manifest.json" ]; then
        rm -rf "${DIR:?}/$m"
        echo "exporting $m to $DIR/$m"
        "$PY" "$MAKE_MODELS" "$DIR" --only "$m" || exit 1
        echo "$want" > "$DIR/$m/.stamp"
    fi
done

# The peer in the same run, on the same load: PyTorch's best forward time.
declare -A torch_s
while read -r _ name secs; do
    torch_s[$name]=$secs
done < <("$PY" "$MAKE_MODELS" "$DIR" --time-only --repeat "$REPEAT" --only "$(echo $MODELS | tr ' ' ,)")

printf '\n%-14s %-6s %12s %10s %12s %10s %8s\n' model result max_abs_err process_s ib_run_ms torch_ms ratio
passed=0
failed=0
for m in $MODELS; do
    mdir=$DIR/$m
    out=$DIR/out/$m
    rm -rf "$out"
    mkdir -p "$out"
    mapfile -t inputs < <("$PY" "$HELPER" args "$mdir")
    start=$(date +%s.%N)
    timeout "$RUN_TIMEOUT" "$CLI" run "$mdir/model.onnx" "${inputs[@]}" --output-dir "$out" \
        --repeat "$REPEAT" "${extra[@]}" > "$out.log" 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    # `run --repeat N` prints "median: X ms over N runs".
    ib_ms=$(sed -n 's/^median: \([0-9.]*\) ms.*/\1/p' "$out.log" | tail -n 1)
    ib_ms=${ib_ms:-?}
    t_ms=$(awk -v t="${torch_s[$m]:-0}" 'BEGIN { printf "%.1f", t * 1000 }')
    ratio=$(awk -v a="$ib_ms" -v b="$t_ms" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "?" }')
    if [ $rc -ne 0 ]; then
        printf '%-14s %-6s %12s %10s %12s %10s %8s\n' "$m" FAIL "exit $rc" "$secs" - "$t_ms" -
        tail -n 20 "$out.log" | sed 's/^/    /'
        failed=$((failed + 1))
        continue
    fi
    report=$("$PY" "$HELPER" compare "$mdir" "$out" 2>&1)
    status=$?
    err=$(echo "$report" | tail -n 1 | sed 's/^max_abs_err=//')
    if [ $status -eq 0 ]; then
        printf '%-14s %-6s %12s %10s %12s %10s %8s\n' "$m" pass "$err" "$secs" "$ib_ms" "$t_ms" "$ratio"
        passed=$((passed + 1))
    else
        printf '%-14s %-6s %12s %10s %12s %10s %8s\n' "$m" FAIL "$err" "$secs" "$ib_ms" "$t_ms" "$ratio"
        echo "$report" | head -n -1 | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo
echo "process_s: the whole \`inferbooster run\` (load, prepare, $REPEAT runs, write outputs);"
echo "ib_run_ms: its median run; torch_ms: PyTorch's best of $REPEAT forward passes in this"
echo "same run (torch threads=2; $(nproc) CPUs here); ratio = ib_run_ms / torch_ms (lower is better)."
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
