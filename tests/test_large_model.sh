#!/bin/bash
# A model whose weights are 3 GiB of external data loads by mapping, not copying: the
# data file is sparse, the run gathers two known elements, and the peak RSS stays far
# below the weight size. Usage: test_large_model.sh INFERBOOSTER
set -u
ib=$1
tmp=$(mktemp -d)
export INFERBOOSTER_CACHE_DIR=${INFERBOOSTER_CACHE_DIR:-$tmp/cache}  # never ~/.cache
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1"; fi; }

/usr/bin/python3 - "$tmp" <<'PY'
import sys, os, struct
import numpy as np
import onnx
from onnx import helper, TensorProto
d = sys.argv[1]
n = 3 * 1024**3 // 4                  # 3 GiB of float32
with open(os.path.join(d, "weights.bin"), "wb") as f:
    f.truncate(n * 4)                 # sparse: no disk blocks
    for idx, val in ((5, 1.5), (n - 7, -2.25)):
        f.seek(idx * 4); f.write(struct.pack("<f", val))
w = TensorProto()
w.name = "W"
w.data_type = TensorProto.FLOAT
w.dims.append(n)
w.data_location = TensorProto.EXTERNAL
for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", str(n * 4))):
    e = w.external_data.add(); e.key = k; e.value = v
g = helper.make_graph([helper.make_node("Gather", ["W", "idx"], ["y"], axis=0)], "big",
    [helper.make_tensor_value_info("idx", TensorProto.INT64, [2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=[w])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
with open(os.path.join(d, "model.onnx"), "wb") as f:
    f.write(m.SerializeToString())
np.save(os.path.join(d, "idx.npy"), np.array([5, n - 7], dtype=np.int64))
PY

/usr/bin/time -f '%M' -o "$tmp/rss" "$ib" run "$tmp/model.onnx" --input "idx=$tmp/idx.npy" \
    --output-dir "$tmp/out" > "$tmp/log" 2>&1
rc=$?
check "3 GiB external-data model runs" "[ $rc = 0 ]"
[ $rc = 0 ] || cat "$tmp/log"
check "gathered values are the ones written" \
    "/usr/bin/python3 -c 'import numpy as np,sys; y=np.load(\"$tmp/out/y.npy\"); sys.exit(0 if list(y)==[1.5,-2.25] else 1)'"
rss_kb=$(tail -n 1 "$tmp/rss" 2>/dev/null)
[[ "$rss_kb" =~ ^[0-9]+$ ]] || rss_kb=99999999
echo "peak RSS: $((rss_kb / 1024)) MiB for 3072 MiB of weights"
check "peak RSS under 512 MiB (weights mapped, not read)" "[ $rss_kb -lt 524288 ]"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
