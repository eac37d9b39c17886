#!/bin/bash
# Tests of the inferbooster command: help and usage errors, hw, info, run with .npy
# inputs and outputs (checked against numpy), hostile inputs (exit 2, never a crash),
# and the conformance runner (JSON, pass lists, crash and hang isolation).
#
# usage: test_cli.sh PATH/TO/inferbooster
set -u
if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 PATH/TO/inferbooster" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
CLI=$1
PY=/usr/bin/python3
DATA=/usr/share/libonnx-testdata/data
RELU=$DATA/node/test_relu/model.onnx
T=$(mktemp -d /tmp/ib_test_cli.XXXXXX)
# Compiles go through a cache of this run (ctest also sets one), never ~/.cache.
export INFERBOOSTER_CACHE_DIR=${INFERBOOSTER_CACHE_DIR:-$T/cache}
trap 'rm -rf "$T"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [ -s "$T/err" ] && tail -n 5 "$T/err" | sed 's/^/    stderr: /'
    return 0
}
# expect_rc WANT NAME CMD...: runs CMD (stdout -> $T/out, stderr -> $T/err).
expect_rc() {
    local want=$1 name=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then ok "$name"; else bad "$name (exit $rc, want $want)"; fi
}
# check NAME: passes when the previous command (a test, a python check...) succeeded.
check() { if [ "$2" -eq 0 ]; then ok "$1"; else bad "$1"; fi; }

# ---- help, version, usage errors -----------------------------------------------------
expect_rc 0 "--help" "$CLI" --help
grep -q "usage: inferbooster" "$T/out"; check "--help prints usage" $?
expect_rc 0 "--version" "$CLI" --version
grep -q "^inferbooster [0-9]" "$T/out"; check "--version prints the version" $?
for cmd in info run conformance hw; do
    expect_rc 0 "$cmd --help" "$CLI" $cmd --help
    grep -q "usage: inferbooster $cmd" "$T/out"; check "$cmd --help prints its usage" $?
done
expect_rc 2 "no command" "$CLI"
expect_rc 2 "unknown command" "$CLI" frobnicate
grep -q "unknown command 'frobnicate'" "$T/err"; check "unknown command is named" $?
expect_rc 2 "unknown top-level option" "$CLI" --frobnicate
for cmd in info run conformance hw; do
    expect_rc 2 "$cmd unknown option" "$CLI" $cmd --no-such-option
done
expect_rc 2 "info without a model" "$CLI" info
expect_rc 2 "run without a model" "$CLI" run
expect_rc 2 "run --threads not a number" "$CLI" run "$RELU" --threads abc
expect_rc 2 "run --input without '='" "$CLI" run "$RELU" --input x.npy
expect_rc 2 "run --repeat without value" "$CLI" run "$RELU" --repeat
expect_rc 2 "conformance -j 0" "$CLI" conformance -j 0
# bench, compile and tune share one table-driven option parser (cli_util.c)
for cmd in bench compile tune; do
    expect_rc 0 "$cmd --help" "$CLI" $cmd --help
    grep -q "usage: inferbooster $cmd" "$T/out"; check "$cmd --help prints its usage" $?
    expect_rc 2 "$cmd unknown option" "$CLI" $cmd --no-such-option
    grep -q "$cmd: unknown option '--no-such-option'" "$T/err"; check "$cmd names the unknown option" $?
    expect_rc 2 "$cmd with two models" "$CLI" $cmd "$RELU" "$RELU"
    grep -q "one model at a time" "$T/err"; check "$cmd refuses a second model" $?
    expect_rc 2 "$cmd without a model" "$CLI" $cmd
done
expect_rc 2 "bench --runs=0" "$CLI" bench "$RELU" --runs=0
grep -q -- "--runs must be an integer in \[1, 1000000\], not '0'" "$T/err"; check "bench --runs=0 names the range" $?
expect_rc 2 "bench --batch without value" "$CLI" bench "$RELU" --batch
expect_rc 2 "compile -o without value" "$CLI" compile "$RELU" -o
expect_rc 2 "tune --budget not a duration" "$CLI" tune "$RELU" --budget 5x
grep -q "budget wants a duration" "$T/err"; check "tune --budget 5x is explained" $?
expect_rc 2 "tune --threads 0" "$CLI" tune "$RELU" --threads=0
expect_rc 2 "conformance on a missing directory" "$CLI" conformance "$T/nonexistent"
# run, serve, cache and conformance use the same parser: repeatable options, more than one
# other argument, a short option's attached value (-j2)
for cmd in serve cache; do
    expect_rc 0 "$cmd --help" "$CLI" $cmd --help
    grep -q "usage: inferbooster $cmd" "$T/out"; check "$cmd --help prints its usage" $?
done
for cmd in info hw run serve cache conformance; do
    expect_rc 2 "$cmd unknown option" "$CLI" $cmd --no-such-option
    grep -q "$cmd: unknown option '--no-such-option'" "$T/err"; check "$cmd names the unknown option" $?
done
expect_rc 2 "run with two models" "$CLI" run "$RELU" "$RELU"
grep -q "one model at a time" "$T/err"; check "run refuses a second model" $?
expect_rc 2 "run --input twice for one name" "$CLI" run "$RELU" --input x=a.npy --input=x=b.npy
grep -q "input 'x' given twice" "$T/err"; check "run names the input given twice" $?
expect_rc 2 "run --dim not a number" "$CLI" run "$RELU" --dim batch=two
expect_rc 2 "serve --load-model without explicit mode" "$CLI" serve --model-repository "$T" \
    --load-model a --load-model b
grep -q "needs --model-control-mode explicit" "$T/err"; check "serve: --load-model repeats, then is checked" $?
expect_rc 2 "serve --http-port out of range" "$CLI" serve --model-repository "$T" --http-port 70000
expect_rc 2 "serve with a stray argument" "$CLI" serve --model-repository "$T" extra
expect_rc 2 "cache with a third argument" "$CLI" cache evict a b
grep -q "cache: unexpected argument 'b'" "$T/err"; check "cache names the extra argument" $?
expect_rc 2 "cache --max-entries 0" "$CLI" cache --max-entries 0 ls
expect_rc 2 "conformance -j0 (attached)" "$CLI" conformance -j0
expect_rc 0 "conformance -j2 with two --filter" "$CLI" conformance -j2 --filter node/test_relu \
    --filter=node/test_abs
grep -q "^2 passed, 0 failed" "$T/out"; check "conformance runs the two filtered cases" $?

# ---- hw --------------------------------------------------------------------------------
expect_rc 0 "hw" "$CLI" hw
grep -q "^CPU" "$T/out" && grep -q "^GPU" "$T/out"; check "hw prints CPU and GPU sections" $?
expect_rc 0 "hw --json" "$CLI" hw --json
cp "$T/out" "$T/hw.json"
"$PY" - "$T/hw.json" <<'EOF'
import json, platform, sys
hw = json.load(open(sys.argv[1]))
cpu, gpu = hw["cpu"], hw["gpu"]
assert cpu["logical_cpus"] >= 1 and 1 <= cpu["usable_cpus"] <= cpu["logical_cpus"], cpu
assert isinstance(cpu["features"], list)
assert gpu["source"] in ("cuda", "nvml", "none") and len(gpu["devices"]) >= 0
flags = set()
for line in open("/proc/cpuinfo"):
    key = line.split(":")[0].strip()
    if key in ("flags", "Features"):
        flags |= set(line.split(":", 1)[1].split())
machine = platform.machine()
feature = "avx2" if machine == "x86_64" else "asimd" if machine == "aarch64" else None
if feature:
    mine, kernel = feature in cpu["features"], feature in flags
    assert mine == kernel, "%s: hw says %s, /proc/cpuinfo says %s" % (feature, mine, kernel)
EOF
check "hw --json parses and agrees with /proc/cpuinfo" $?

# ---- info --------------------------------------------------------------------------------
expect_rc 0 "info relu" "$CLI" info "$RELU"
grep -q "Relu" "$T/out" && grep -q "\[3, 4, 5\]" "$T/out"; check "info lists op and shape" $?
expect_rc 0 "info relu --json" "$CLI" info "$RELU" --json
cp "$T/out" "$T/info.json"
"$PY" - "$T/info.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["inputs"] == [{"name": "x", "dtype": "float32", "shape": [3, 4, 5]}], m["inputs"]
assert m["outputs"][0]["name"] == "y"
assert m["ops"] == [{"op_type": "Relu", "domain": "", "count": 1}], m["ops"]
assert m["nodes"] == 1 and m["parameters"] == 0 and m["flops"] == 60, m
assert any(o["domain"] == "" for o in m["opsets"]) and m["ir_version"] > 0
EOF
check "info --json content" $?

# Models made here: a symbolic batch dim, weights for FLOPs and parameters, and an output
# name that tries to escape the output directory.
"$PY" - "$T" <<'EOF'
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
d = sys.argv[1]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "sym", [x], [y])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/sym.onnx")
w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
x2 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
y2 = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", [x2], [y2], [w])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/matmul.onnx")
e = helper.make_tensor_value_info("../evil", TensorProto.FLOAT, [2])
x3 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
g = helper.make_graph([helper.make_node("Identity", ["x"], ["../evil"])], "evil", [x3], [e])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/evil.onnx")
i = helper.make_tensor_value_info("i", TensorProto.INT64, [5])
o = helper.make_tensor_value_info("o", TensorProto.FLOAT, [5, 2])
t = numpy_helper.from_array(np.arange(14, dtype=np.float32).reshape(7, 2), "table")
g = helper.make_graph([helper.make_node("Gather", ["table", "i"], ["o"])], "gather", [i], [o], [t])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/gather.onnx")
EOF
check "generate test models with onnx" $?

expect_rc 0 "info symbolic" "$CLI" info "$T/sym.onnx" --json
"$PY" -c "
import json,sys; m=json.load(open('$T/out'))
assert m['inputs'][0]['shape'] == ['batch', 4], m['inputs']
assert m['flops'] is None, m['flops']" 2>"$T/err"
check "info shows symbolic dims by name, FLOPs unknown" $?
expect_rc 0 "info matmul" "$CLI" info "$T/matmul.onnx" --json
"$PY" -c "
import json; m=json.load(open('$T/out'))
assert m['parameters'] == 12 and m['parameter_bytes'] == 48, m
assert m['flops'] == 2*2*3*4, m['flops']" 2>"$T/err"
check "info counts parameters and MatMul FLOPs" $?

# ---- run ---------------------------------------------------------------------------------
expect_rc 0 "run relu with random input" "$CLI" run "$RELU" --seed 7
grep -q "^output 'y': float32 \[3,4,5\]" "$T/out" && grep -q "fnv1a=" "$T/out"
check "run prints output shape and checksum" $?
cp "$T/out" "$T/run1"
"$CLI" run "$RELU" --seed 7 >"$T/run2" 2>/dev/null
cmp -s "$T/run1" "$T/run2"; check "run with the same seed is deterministic" $?
"$CLI" run "$RELU" --seed 8 >"$T/run3" 2>/dev/null
! cmp -s "$T/run1" "$T/run3"; check "run with another seed differs" $?
expect_rc 0 "run --repeat" "$CLI" run "$RELU" --repeat 3 --threads 1
grep -q "^median: .* ms over 3 runs" "$T/out"; check "run --repeat prints the median" $?

mkdir -p "$T/in"
"$PY" -c "
import numpy as np
rng = np.random.default_rng(1)
np.save('$T/in/x.npy', rng.standard_normal((3, 4, 5)).astype(np.float32))
np.save('$T/in/x64.npy', rng.standard_normal((3, 4, 5)))
np.save('$T/in/x_shape.npy', rng.standard_normal((4, 5)).astype(np.float32))
np.save('$T/in/x_fortran.npy', np.asfortranarray(rng.standard_normal((3, 4, 5)).astype(np.float32)))
np.save('$T/in/sym.npy', rng.standard_normal((6, 4)).astype(np.float32))
np.save('$T/in/idx.npy', np.array([0, 6, 3, 3, 1], np.int64))
"
check "write .npy inputs with numpy" $?
expect_rc 0 "run --input --output-dir" "$CLI" run "$RELU" --input "x=$T/in/x.npy" --output-dir "$T/out1"
"$PY" - "$T" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
x = np.load(d + "/in/x.npy")
y = np.load(d + "/out1/y.npy")
assert y.dtype == np.float32 and y.shape == (3, 4, 5), (y.dtype, y.shape)
assert np.allclose(y, np.maximum(x, 0), rtol=0, atol=1e-5)
h = 0xcbf29ce484222325
for b in y.tobytes():
    h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
line = [l for l in open(d + "/out") if "fnv1a=" in l][0]
assert line.strip().endswith("fnv1a=%016x" % h), (line, "%016x" % h)
assert abs(float(line.split("sum=")[1].split()[0]) - float(y.sum(dtype=np.float64))) < 1e-4
EOF
check ".npy round trip matches numpy (values, checksum)" $?

expect_rc 0 "run symbolic dim from the file" "$CLI" run "$T/sym.onnx" --input "x=$T/in/sym.npy"
grep -q "^output 'y': float32 \[6,4\]" "$T/out"; check "symbolic dim takes the file's size" $?
expect_rc 0 "run --dim" "$CLI" run "$T/sym.onnx" --dim batch=5
grep -q "^output 'y': float32 \[5,4\]" "$T/out"; check "--dim sets a random input's symbolic dim" $?
expect_rc 0 "run gather with random indices" "$CLI" run "$T/gather.onnx" --seed 3
grep -q "^output 'o': float32 \[5,2\]" "$T/out"; check "random indices stay within the gathered axis" $?
expect_rc 0 "run gather with file indices" "$CLI" run "$T/gather.onnx" --input "i=$T/in/idx.npy" --output-dir "$T/outg"
"$PY" -c "
import numpy as np
o = np.load('$T/outg/o.npy'); t = np.arange(14, dtype=np.float32).reshape(7, 2)
assert (o == t[[0, 6, 3, 3, 1]]).all()" 2>"$T/err"
check "int64 .npy input" $?

expect_rc 0 "run output with a hostile name" "$CLI" run "$T/evil.onnx" --output-dir "$T/o/evil_out"
[ ! -e "$T/o/evil.npy" ] && [ ! -e "$T/o/evil_out/../evil.npy" ] && [ "$(ls -A "$T/o/evil_out" | wc -l)" = 1 ] &&
    ! ls -A "$T/o/evil_out" | grep -q '^\.'
check "output file name stays inside --output-dir" $?

# ---- hostile inputs: exit 2, never a crash -----------------------------------------------
printf 'this is not a numpy file at all' >"$T/in/garbage.npy"
head -c 100 "$T/in/x.npy" >"$T/in/truncated.npy"
"$PY" -c "
d = open('$T/in/x.npy','rb').read()
open('$T/in/badheader.npy','wb').write(d[:10] + d[10:].replace(b\"'shape': (3, 4, 5)\", b\"'shape': (3, 4, 9)\", 1))
open('$T/in/hugeheader.npy','wb').write(b'\x93NUMPY\x02\x00\xff\xff\xff\x7f{')
"
for f in garbage truncated badheader hugeheader x_fortran; do
    expect_rc 2 "corrupt .npy ($f) exits 2" "$CLI" run "$RELU" --input "x=$T/in/$f.npy"
done
grep -q "Fortran" "$T/err"; check "Fortran order is named in the error" $?
expect_rc 2 "wrong dtype .npy exits 2" "$CLI" run "$RELU" --input "x=$T/in/x64.npy"
grep -q "float64" "$T/err"; check "dtype mismatch is explained" $?
expect_rc 2 "wrong shape .npy exits 2" "$CLI" run "$RELU" --input "x=$T/in/x_shape.npy"
expect_rc 2 "missing .npy file exits 2" "$CLI" run "$RELU" --input "x=$T/in/nonexistent.npy"
expect_rc 2 "unknown input name exits 2" "$CLI" run "$RELU" --input "nosuch=$T/in/x.npy"
grep -q "nosuch" "$T/err"; check "unknown input is named" $?

size=$(stat -c %s "$RELU")
head -c $((size / 2)) "$RELU" >"$T/truncated.onnx"
expect_rc 2 "info on a truncated model exits 2" "$CLI" info "$T/truncated.onnx"
grep -q "truncated.onnx" "$T/err"; check "model error names the file" $?
expect_rc 2 "run on a truncated model exits 2" "$CLI" run "$T/truncated.onnx"
expect_rc 2 "info on a missing model exits 2" "$CLI" info "$T/nonexistent.onnx"
head -c 4096 /dev/urandom >"$T/random.onnx"
"$CLI" info "$T/random.onnx" >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] || [ $rc -eq 0 ]; check "info on random bytes does not crash (exit $rc)" $?

# ---- conformance ---------------------------------------------------------------------------
C3=("$DATA/node/test_relu" "$DATA/node/test_abs" "$DATA/node/test_add")
expect_rc 0 "conformance on 3 cases --json" "$CLI" conformance "${C3[@]}" --json
cp "$T/out" "$T/conf.json"
"$PY" - "$T/conf.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
names = [c["name"] for c in r["cases"]]
assert names == ["node/test_abs", "node/test_add", "node/test_relu"], names
assert r["passed"] + r["failed"] + r["unsupported"] == 3, r
assert all(c["status"] in ("pass", "fail", "unsupported") for c in r["cases"])
assert r["passed"] == sum(c["status"] == "pass" for c in r["cases"])
assert {c["name"]: c["status"] for c in r["cases"]}["node/test_relu"] == "pass", r
EOF
check "conformance --json content" $?

expect_rc 0 "conformance text and --list-passing" "$CLI" conformance "${C3[@]}" -j 2 --list-passing "$T/passing.txt"
tail -n 1 "$T/out" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$' && grep -q '^unsupported: [0-9]' "$T/out" &&
    grep -q '^pass node/test_relu$' "$T/out"
check "conformance prints case lines and the summary" $?
grep -qx "node/test_relu" "$T/passing.txt" && sort -c "$T/passing.txt"
check "--list-passing writes sorted passing names" $?
expect_rc 0 "--expect-passing with the same list" "$CLI" conformance "${C3[@]}" --expect-passing "$T/passing.txt"
{ cat "$T/passing.txt"; echo "node/test_not_a_case"; } >"$T/expect.txt"
expect_rc 1 "--expect-passing flags a regression" "$CLI" conformance "${C3[@]}" --expect-passing "$T/expect.txt"
grep -q "^regression: node/test_not_a_case" "$T/out"; check "regression is named" $?

IB_CONFORMANCE_FAULT='crash:*relu' expect_rc 0 "conformance survives a crashing case" \
    "$CLI" conformance "${C3[@]}" --json
"$PY" -c "
import json; r = json.load(open('$T/out'))
s = {c['name']: c for c in r['cases']}
assert s['node/test_relu']['status'] == 'fail' and 'crashed: signal' in s['node/test_relu']['message'], s
assert len(r['cases']) == 3" 2>"$T/err"
check "a crash is reported as that case's failure" $?
IB_CONFORMANCE_FAULT='hang:*abs' expect_rc 0 "conformance survives a hanging case" \
    "$CLI" conformance "${C3[@]}" --timeout 1 -j 3
grep -q "^fail node/test_abs: (timed out" "$T/out" && grep -q "^pass node/test_relu" "$T/out"
check "a hang is reported as a timeout" $?

mkdir -p "$T/cases/bad/test_truncated"
cp -r "$DATA/node/test_relu/test_data_set_0" "$T/cases/bad/test_truncated/"
cp "$T/truncated.onnx" "$T/cases/bad/test_truncated/model.onnx"
expect_rc 0 "conformance with a broken model" "$CLI" conformance "$T/cases"
grep -q "^fail bad/test_truncated: " "$T/out"; check "a broken model is a failure, not a crash" $?

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
