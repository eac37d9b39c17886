#!/bin/bash
# Acceptance run on the full-size models: ResNet-50, MobileNetV2 and a BERT-base encoder
# (seeded random weights) through `inferbooster run`, with max abs error against PyTorch
# and wall time next to PyTorch's own forward time (the peer, same thread count). Not part
# of the test suite: it exports ~550 MB of models and runs them.
#
# usage: bench/full_models.sh [CLI] [MODELDIR] [-- extra `run` flags, e.g. --reference]
#   CLI defaults to build/inferbooster, MODELDIR to build/full_models.
#   IB_FULL_MODELS: which models (default "resnet50 mobilenet_v2 bert").
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

printf '\n%-14s %-8s %14s %12s %12s %10s\n' model result max_abs_err ib_run_s torch_s ratio
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
        "${extra[@]}" > "$out.log" 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    torch_s=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("torch_forward_s", 0))' \
        "$mdir/manifest.json")
    ratio=$(awk -v a="$secs" -v b="$torch_s" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "?" }')
    if [ $rc -ne 0 ]; then
        printf '%-14s %-8s %14s %12s %12s %10s\n' "$m" FAIL "exit $rc" "$secs" "$torch_s" -
        tail -n 20 "$out.log" | sed 's/^/    /'
        failed=$((failed + 1))
        continue
    fi
    report=$("$PY" "$HELPER" compare "$mdir" "$out" 2>&1)
    status=$?
    err=$(echo "$report" | tail -n 1 | sed 's/^max_abs_err=//')
    if [ $status -eq 0 ]; then
        printf '%-14s %-8s %14s %12s %12s %10s\n' "$m" pass "$err" "$secs" "$torch_s" "$ratio"
        passed=$((passed + 1))
    else
        printf '%-14s %-8s %14s %12s %12s %10s\n' "$m" FAIL "$err" "$secs" "$torch_s" "$ratio"
        echo "$report" | head -n -1 | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo
echo "ib_run_s: whole \`inferbooster run\` process (load, prepare, one run, write outputs);"
echo "torch_s: PyTorch forward only, best of 3, $(nproc) CPUs here, torch threads=2."
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
