#!/bin/bash
# End-to-end accuracy: small ResNet, MobileNetV2 and BERT exported from PyTorch, run through
# `inferbooster run` at batch 1 and batch 3 (the symbolic batch dimension), outputs compared
# with PyTorch's (max abs error <= manifest tolerance).
#
# usage: test_models_e2e.sh CLI MODELDIR
#   MODELDIR is where the models are generated (kept between runs; regenerated when
#   tools/make_models.py changes). IB_E2E_MODES: CLI mode flags to test, one run per word
#   ("reference" -> --reference, "default" -> no flag); default "reference default".
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 CLI MODELDIR" >&2
    exit 2
fi
CLI=$1
DIR=$2
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
MAKE_MODELS=$SRC/tools/make_models.py
HELPER=$SRC/tests/model_outputs.py
MODELS="resnet50_small mobilenet_v2_small bert_small"
MODES=${IB_E2E_MODES:-reference default}
RUN_TIMEOUT=${IB_E2E_TIMEOUT:-300}

if [ ! -x "$CLI" ]; then
    echo "not executable: $CLI" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# Regenerate only when the generator changed (its hash is the stamp) or a model is missing.
want=$(sha256sum "$MAKE_MODELS" | cut -d' ' -f1)
have=$(cat "$DIR/.stamp" 2>/dev/null || true)
regen=0
[ "$want" = "$have" ] || regen=1
for m in $MODELS; do
    [ -f "$DIR/$m/manifest.json" ] || regen=1
done
if [ $regen = 1 ]; then
    rm -rf "$DIR"
    mkdir -p "$DIR"
    echo "generating small models in $DIR"
    if ! "$PY" "$MAKE_MODELS" "$DIR" --small; then
        echo "model generation failed (needs /usr/bin/python3 with torch, torchvision, onnx)" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "$want" > "$DIR/.stamp"
fi

passed=0
failed=0
for mode in $MODES; do
    case $mode in
        reference) flag=(--reference) ;;
        default) flag=() ;;
        *) echo "unknown mode '$mode' in IB_E2E_MODES" >&2; exit 2 ;;
    esac
    for m in $MODELS; do
        mdir=$DIR/$m
        while read -r case case_dir; do
            label="$m/$case"
            out=$DIR/out-$mode/$m/$case
            rm -rf "$out"
            mkdir -p "$out"
            mapfile -t inputs < <("$PY" "$HELPER" args "$mdir" "$case_dir")
            start=$(date +%s.%N)
            timeout "$RUN_TIMEOUT" "$CLI" run "$mdir/model.onnx" "${inputs[@]}" --output-dir "$out" \
                "${flag[@]}" > "$out.log" 2>&1 < /dev/null
            rc=$?
            secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
            if [ $rc -ne 0 ]; then
                echo "FAIL $label mode=$mode: inferbooster run exited $rc after ${secs}s:"
                tail -n 20 "$out.log" | sed 's/^/    /'
                failed=$((failed + 1))
                continue
            fi
            report=$("$PY" "$HELPER" compare "$mdir" "$out" "$case_dir" 2>&1 < /dev/null)
            if [ $? -eq 0 ]; then
                echo "pass $label $(echo "$report" | tail -n 1) mode=$mode time=${secs}s"
                passed=$((passed + 1))
            else
                echo "FAIL $label $(echo "$report" | tail -n 1) mode=$mode time=${secs}s"
                echo "$report" | head -n -1 | sed 's/^/    /'
                failed=$((failed + 1))
            fi
        done < <("$PY" "$HELPER" cases "$mdir")
    done
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
