#!/bin/bash
# CUDA end to end: the small ResNet-50, MobileNetV2 and BERT encoder (tools/make_models.py) compiled for
# cuda-sm90 by `inferbooster compile` (plan, CUDA C, nvcc fat binary), the artifact checked;
# then, where an NVIDIA GPU and driver are present, run at batch 1 and 3 and compared with
# PyTorch's outputs: FP32 within the manifest's 1e-3, TF32 tensor cores within 2e-2.
# Without a GPU the runs must fail cleanly ("no CUDA driver", exit 1) and are reported
# skipped; without nvcc the whole test is skipped (exit 77).
#
# usage: test_cuda_models.sh CLI MODELDIR [SHARED_MODELDIR]
#   SHARED_MODELDIR: test_models_e2e's models, used as they are when complete and current
#   (their stamp matches tools/make_models.py); else they are generated into MODELDIR.
set -u
if [ $# -ne 2 ] && [ $# -ne 3 ]; then
    echo "usage: $0 CLI MODELDIR [SHARED_MODELDIR]" >&2
    exit 2
fi
CLI=$1
DIR=$2
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
HELPER=$SRC/tests/model_outputs.py
MODELS=${IB_CUDA_MODELS:-"resnet50_small mobilenet_v2_small bert_small"}
NVCC=${IB_NVCC:-/usr/local/cuda/bin/nvcc}
[ -x "$NVCC" ] || NVCC=$(command -v nvcc || true)
if [ -z "$NVCC" ] || [ ! -x "$NVCC" ]; then
    echo "skipped: nvcc not found (set IB_NVCC or install the CUDA toolkit)"
    echo "0 passed, 0 failed"
    exit 77
fi

want=$(sha256sum "$SRC/tools/make_models.py" | cut -d' ' -f1)
complete() {
    [ "$(cat "$1/.stamp" 2>/dev/null)" = "$want" ] && [ -f "$1/resnet50_small/manifest.json" ] &&
        [ -f "$1/mobilenet_v2_small/manifest.json" ] && [ -f "$1/bert_small/manifest.json" ]
}
if [ $# -eq 3 ] && complete "$3"; then DIR=$3; fi
if ! complete "$DIR"; then
    rm -rf "$DIR"
    mkdir -p "$DIR"
    echo "generating small models in $DIR"
    if ! "$PY" "$SRC/tools/make_models.py" "$DIR" --small --only resnet50,mobilenet_v2,bert; then
        echo "model generation failed (needs /usr/bin/python3 with torch, torchvision, onnx)" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "$want" > "$DIR/.stamp"
fi

passed=0
failed=0
skipped_runs=0
ok() { echo "pass $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }

# Compiles $1 (model dir) for target $2 at batch $3 into $4; checks the artifact.
compile() {
    local m=$1 target=$2 batch=$3 art=$4
    rm -rf "$art"
    if ! "$CLI" compile "$m/model.onnx" --target "$target" --batch "$batch" -o "$art" --json \
        > "$art.log" 2>&1 < /dev/null; then
        bad "$(basename "$m") compile $target batch $batch:"
        tail -n 15 "$art.log" | sed 's/^/    /'
        return 1
    fi
    for f in model.fatbin cuda_plan.txt weights.bin meta.json; do
        [ -s "$art/$f" ] || { bad "$(basename "$m") $target: artifact lacks $f"; return 1; }
    done
    grep -q '"device": "cuda"' "$art/meta.json" || { bad "$(basename "$m"): meta.json lacks device cuda"; return 1; }
    grep -q '"fallback": 0' "$art.log" || { bad "$(basename "$m"): reference fallback steps on the GPU"; return 1; }
    head -n 1 "$art/cuda_plan.txt" | grep -q '^inferbooster-cuda-plan 1$' || { bad "$(basename "$m"): bad plan"; return 1; }
    return 0
}

# Runs artifact $2 of model dir $1 on case dir $3 and compares (tolerance $4 when given).
run_case() {
    local m=$1 art=$2 case_dir=$3 tol=${4:-}
    local out=$art.out
    rm -rf "$out"
    mapfile -t inputs < <("$PY" "$HELPER" args "$m" "$case_dir")
    "$CLI" run "$art" "${inputs[@]}" --output-dir "$out" > "$out.log" 2>&1 < /dev/null
    local rc=$?
    if [ $rc -ne 0 ]; then
        if grep -q "no CUDA driver\|no NVIDIA GPU" "$out.log" && [ $rc -eq 1 ]; then
            skipped_runs=$((skipped_runs + 1))
            ok "$(basename "$m") $case_dir: no NVIDIA GPU/driver, fails cleanly (exit 1); GPU run skipped"
        else
            bad "$(basename "$m") $case_dir: run exited $rc:"
            tail -n 10 "$out.log" | sed 's/^/    /'
        fi
        return
    fi
    local report
    report=$(IB_COMPARE_TOLERANCE=$tol "$PY" "$HELPER" compare "$m" "$out" "$case_dir" 2>&1 < /dev/null)
    if [ $? -eq 0 ]; then
        ok "$(basename "$m") $case_dir on the GPU: $(echo "$report" | tail -n 1)${tol:+ (tolerance $tol)}"
    else
        bad "$(basename "$m") $case_dir on the GPU: $(echo "$report" | tail -n 1)"
        echo "$report" | head -n -1 | sed 's/^/    /'
    fi
}

WORK=$(mktemp -d /tmp/ib_cuda_models.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for name in $MODELS; do
    m=$DIR/$name
    art=$WORK/$name.sm90.ibc
    if compile "$m" cuda-sm90 1 "$art"; then
        ok "$name compiles for cuda-sm90 ($(grep -o '"kernels": [0-9]*' "$art.log"))"
        run_case "$m" "$art" .
    fi
    # Further runs only where a GPU is: they cost an nvcc build each.
    if [ $skipped_runs -eq 0 ]; then
        art3=$WORK/$name.sm90.b3.ibc
        compile "$m" cuda-sm90 3 "$art3" && run_case "$m" "$art3" cases/batch3
        artt=$WORK/$name.sm90.tf32.ibc
        compile "$m" cuda-sm90-tf32 1 "$artt" && run_case "$m" "$artt" . 2e-2
    fi
done
# CUDA artifacts are cache entries too: a second compile of the same model and target is
# a hit giving the same files (the first of the loop above filled the cache).
name=${MODELS%% *}
a1=$WORK/cache_hit_1.ibc
a2=$WORK/cache_hit_2.ibc
export INFERBOOSTER_CACHE_DIR=$WORK/cache
if compile "$DIR/$name" cuda-sm90 1 "$a1" && grep -q '"cache": "miss"' "$a1.log" &&
    compile "$DIR/$name" cuda-sm90 1 "$a2" && grep -q '"cache": "hit"' "$a2.log" &&
    diff -r "$a1" "$a2" > /dev/null; then
    ok "$name: cuda-sm90 compiled into the cache, then a hit with identical files"
else
    bad "$name: cuda-sm90 compile through the cache (miss, then hit, same files)"
fi
[ $skipped_runs -gt 0 ] && echo "GPU runs skipped: no NVIDIA GPU/driver on this machine (compile checks only)"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
