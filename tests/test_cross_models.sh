#!/bin/bash
# 64-bit ARM end to end (label cross): compiles ResNet-18 and MobileNetV2 on this x86 machine with --target
# aarch64, runs them under qemu-aarch64 with inferbooster-run and compares the outputs
# with the x86 reference executor (max |got - want| / max(1, |want|) <= 1e-4). Also:
# artifact + runner <= 1.2x the model's weights, and the refusals (x86 artifact on ARM, bad input, a plan with reference-op steps).
#
# usage: test_cross_models.sh CLI RUNNER WORKDIR
#   RUNNER: the cross-built inferbooster-run (test_cross_runtime.sh). The small models of tools/make_models.py by default (qemu is slow); IB_CROSS_FULL=1
#   uses the full 224x224 resnet18 and mobilenet_v2 (minutes).
set -u
if [ $# -ne 3 ]; then
    echo "usage: $0 CLI RUNNER WORKDIR" >&2
    exit 2
fi
CLI=$1
RUNNER=$2
WORK=$3
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
SYSROOT=/usr/aarch64-linux-gnu
QEMU=(qemu-aarch64 -L "$SYSROOT")
TOL=1e-4
passed=0
failed=0
pass() { echo "pass $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ $failed -eq 0 ]; exit $?; }

if [ ! -x "$RUNNER" ] || ! command -v qemu-aarch64 >/dev/null; then
    echo "needs the cross-built runner $RUNNER (test_cross_runtime) and qemu-aarch64" >&2
    fail "setup"
    finish
fi
mkdir -p "$WORK"

# Models: regenerated when tools/make_models.py changes.
if [ "${IB_CROSS_FULL:-0}" = 1 ]; then
    MODELS="resnet18 mobilenet_v2"; SIZE_FLAG=""; MDIR=$WORK/models-full
else
    MODELS="resnet18_small mobilenet_v2_small"; SIZE_FLAG="--small"; MDIR=$WORK/models
fi
want=$(sha256sum "$SRC/tools/make_models.py" | cut -d' ' -f1)
if [ "$(cat "$MDIR/.stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$MDIR"
    mkdir -p "$MDIR"
    if ! "$PY" "$SRC/tools/make_models.py" "$MDIR" $SIZE_FLAG --only resnet18,mobilenet_v2 \
            > "$MDIR.log" 2>&1; then
        tail -n 20 "$MDIR.log" | sed 's/^/    /'
        fail "model generation (needs /usr/bin/python3 with torch, torchvision, onnx)"
        finish
    fi
    echo "$want" > "$MDIR/.stamp"
fi

# compare GOT_DIR WANT_DIR: every .npy of WANT_DIR matched in GOT_DIR within TOL.
compare() {
    "$PY" - "$1" "$2" "$TOL" <<'EOF'
import os, sys
import numpy as np
got_dir, want_dir, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
names = sorted(f for f in os.listdir(want_dir) if f.endswith(".npy"))
if not names:
    sys.exit("no outputs in " + want_dir)
worst = 0.0
for n in names:
    w = np.load(os.path.join(want_dir, n)).astype(np.float64)
    g = np.load(os.path.join(got_dir, n)).astype(np.float64)
    if g.shape != w.shape:
        sys.exit("%s: shape %s, want %s" % (n, g.shape, w.shape))
    err = float(np.max(np.abs(g - w) / np.maximum(1.0, np.abs(w)))) if w.size else 0.0
    if not np.isfinite(err):
        sys.exit("%s: not finite" % n)
    worst = max(worst, err)
print("max_rel_err=%.3g" % worst)
sys.exit(0 if worst <= tol else 1)
EOF
}

for m in $MODELS; do
    model=$MDIR/$m/model.onnx
    art=$WORK/$m.aarch64.ibc
    rm -rf "$art" "$WORK/$m.ref" "$WORK/$m.out" "$WORK/$m.out-file"
    if ! "$CLI" compile "$model" --target aarch64 -o "$art" > "$WORK/$m.compile.log" 2>&1; then
        tail -n 20 "$WORK/$m.compile.log" | sed 's/^/    /'
        fail "$m: compile --target aarch64"
        continue
    fi
    if readelf -h "$art/model.so" | grep -q AArch64; then
        pass "$m: compiled for aarch64 ($(grep kernels: "$WORK/$m.compile.log" | xargs))"
    else
        fail "$m: model.so is not aarch64 code"
    fi
    # Seeded random inputs: the host CLI and the runner generate the same data.
    if ! "$CLI" run "$model" --reference --seed 7 --output-dir "$WORK/$m.ref" > "$WORK/$m.ref.log" 2>&1; then
        tail -n 20 "$WORK/$m.ref.log" | sed 's/^/    /'
        fail "$m: x86 reference run"
        continue
    fi
    start=$(date +%s.%N)
    if ! timeout 600 "${QEMU[@]}" "$RUNNER" "$art" --seed 7 --threads 2 --output-dir "$WORK/$m.out" \
            > "$WORK/$m.run.log" 2>&1; then
        tail -n 20 "$WORK/$m.run.log" | sed 's/^/    /'
        fail "$m: inferbooster-run under qemu-aarch64"
        continue
    fi
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if report=$(compare "$WORK/$m.out" "$WORK/$m.ref" 2>&1); then
        pass "$m: aarch64 (qemu, ${secs}s) vs x86 reference $report"
    else
        fail "$m: aarch64 vs x86 reference: $report"
    fi
    # The test case's own input file, against PyTorch's output.
    if timeout 600 "${QEMU[@]}" "$RUNNER" "$art" --input "input=$MDIR/$m/inputs/input.npy" \
            --output-dir "$WORK/$m.out-file" > "$WORK/$m.run2.log" 2>&1 &&
        report=$(compare "$WORK/$m.out-file" "$MDIR/$m/expected" 2>&1); then
        pass "$m: aarch64 with --input vs PyTorch $report"
    else
        fail "$m: aarch64 with --input vs PyTorch: ${report:-run failed}"
    fi
    # Deployed size: artifact + runner against the model's weights.
    if [ "${m%_small}" = resnet18 ]; then
        wbytes=$("$PY" -c "
import sys, onnx
from onnx import numpy_helper
g = onnx.load(sys.argv[1]).graph
print(sum(numpy_helper.to_array(t).nbytes for t in g.initializer))" "$model")
        abytes=$(cat "$art"/* | wc -c)
        rbytes=$(wc -c < "$RUNNER")
        ratio=$(awk -v a="$abytes" -v r="$rbytes" -v w="$wbytes" 'BEGIN { printf "%.4f", (a + r) / w }')
        line="artifact $abytes B + runner $rbytes B vs weights $wbytes B: ${ratio}x"
        if awk -v x="$ratio" 'BEGIN { exit !(x <= 1.2) }'; then pass "$m: $line"; else fail "$m: $line"; fi
    fi
done

# Refusals: clear errors and exit code 2, never a crash.
m=${MODELS%% *}
x86=$WORK/$m.x86.ibc
rm -rf "$x86"
"$CLI" compile "$MDIR/$m/model.onnx" --target generic -o "$x86" > /dev/null 2>&1
out=$("${QEMU[@]}" "$RUNNER" "$x86" 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q "x86-64"; then pass "x86 artifact on aarch64 refused"; else fail "x86 artifact on aarch64: rc=$rc $out"; fi
printf 'not a numpy file' > "$WORK/bad.npy"
out=$("${QEMU[@]}" "$RUNNER" "$WORK/$m.aarch64.ibc" --input "input=$WORK/bad.npy" 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q "bad.npy"; then pass "bad .npy refused"; else fail "bad .npy: rc=$rc $out"; fi
out=$("${QEMU[@]}" "$RUNNER" "$WORK/$m.aarch64.ibc" --input "nosuch=$WORK/bad.npy" 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q "nosuch"; then pass "unknown input refused"; else fail "unknown input: rc=$rc $out"; fi
# TopK has no kernel template: the deployable runtime could not run its step.
"$PY" - "$WORK/topk.onnx" <<'EOF'
import sys
import numpy as np
from onnx import TensorProto, helper, numpy_helper
k = numpy_helper.from_array(np.array([2], dtype=np.int64), "k")
node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], name="top2")
g = helper.make_graph([node], "topk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                      [helper.make_tensor_value_info("values", TensorProto.FLOAT, [1, 2]),
                       helper.make_tensor_value_info("indices", TensorProto.INT64, [1, 2])], [k])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
open(sys.argv[1], "wb").write(m.SerializeToString())
EOF
out=$("$CLI" compile "$WORK/topk.onnx" --target aarch64 -o "$WORK/topk.ibc" 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q "top2" && [ ! -e "$WORK/topk.ibc" ]; then
    pass "reference-op step refused for aarch64"
else
    fail "reference-op step for aarch64: rc=$rc $out"
fi
finish
