#!/bin/bash
# Tuning for a target that is not this machine: `tune --target aarch64 --agent CMD` sends
# each batch of cross-compiled candidates to inferbooster-agent running under
# qemu-aarch64 (the stand-in for a board reached over ssh). Under qemu the timings mean
# nothing; what is checked is that every candidate's NEON code runs and is checked
# against the default knobs' on the target, that candidates which crash, hang or compute
# wrong results fail alone, that the records are the target's, that compile for aarch64
# applies them, and that the agent refuses a malformed job.
#
# usage: test_cross_tune.sh PATH/TO/inferbooster RUNTIME_AARCH64_BUILDDIR
set -u
CLI=$1
RT=$2
SYSROOT=/usr/aarch64-linux-gnu
AGENT="qemu-aarch64 -L $SYSROOT $RT/inferbooster-agent"
PY=/usr/bin/python3
T=$(mktemp -d /tmp/ib_test_cross_tune.XXXXXX)
trap 'rm -rf "$T"' EXIT
export INFERBOOSTER_CACHE_DIR=$T/cache
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; [ -s "$T/log" ] && tail -n 5 "$T/log" | sed 's/^/    /'; }
check() { if [ "$2" -eq 0 ]; then ok "$1"; else bad "$1"; fi; }
finish() { echo "$passed passed, $failed failed"; [ $failed -eq 0 ]; exit $?; }

if [ ! -x "$RT/inferbooster-agent" ]; then
    bad "the aarch64 agent was not built ($RT/inferbooster-agent; test_cross_runtime builds it)"
    finish
fi
$PY - "$T/m.onnx" <<'PYEOF'
import sys
import numpy as np
from onnx import TensorProto, helper, numpy_helper, save
rng = np.random.default_rng(11)
w = numpy_helper.from_array((rng.standard_normal((24, 8, 3, 3)) * 0.2).astype(np.float32), "w")
b = numpy_helper.from_array((rng.standard_normal(24) * 0.1).astype(np.float32), "b")
nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])]
g = helper.make_graph(nodes, "cross_tune", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24, 10, 10])], [w, b])
save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), sys.argv[1])
PYEOF
check "model written" $?

"$CLI" tune "$T/m.onnx" --target aarch64 --trials 6 --db "$T/db.jsonl" --agent "$AGENT" >"$T/log" 2>&1
check "tune --target aarch64 through the agent under qemu exits 0" $?
$PY - "$T/db.jsonl" <<'PYEOF' >>"$T/log" 2>&1
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == 6, len(recs)
assert all(r["target"].startswith("aarch64") for r in recs), {r["target"] for r in recs}
assert sum(r["ok"] for r in recs) >= 4, [(r["ok"], r["note"]) for r in recs]
assert all(r["ms"] > 0 for r in recs if r["ok"])
PYEOF
check "6 aarch64 records, measured and checked on the target" $?
"$CLI" tune "$T/m.onnx" --db "$T/db.jsonl" --list-tasks --target aarch64 >"$T/log" 2>&1 &&
    awk '$1 == "0" && $6 == "6" { found = 1 } END { exit !found }' "$T/log" &&
    "$CLI" tune "$T/m.onnx" --db "$T/db.jsonl" --list-tasks --target x86-64-v3 >"$T/log2" 2>&1 &&
    awk '$1 == "0" && $6 == "0" { found = 1 } END { exit !found }' "$T/log2"
check "--list-tasks counts the 6 records for aarch64, none for another target" $?

# broken candidates: each fails alone, the agent is restarted after a crash or a hang
mkdir -p "$T/tmp"
for brk in crash:1 hang:2 wrong:3; do
    TMPDIR=$T/tmp INFERBOOSTER_TUNE_BREAK=$brk "$CLI" tune "$T/m.onnx" --target aarch64 --trials 4 \
        --db "$T/broken_${brk%%:*}.jsonl" --agent "$AGENT" >"$T/log" 2>&1 &&
    $PY - "$T/broken_${brk%%:*}.jsonl" "${brk%%:*}" "${brk##*:}" <<'PYEOF' >>"$T/log" 2>&1
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
kind, idx = sys.argv[2], int(sys.argv[3])
assert len(recs) == 4, len(recs)
broken = recs[idx]
want = {"crash": "crashed", "hang": "timed out", "wrong": "wrong output"}[kind]
assert not broken["ok"] and want in broken["note"], broken
others = [r for i, r in enumerate(recs) if i != idx]
assert sum(r["ok"] for r in others) >= 2, [(r["ok"], r["note"]) for r in others]
PYEOF
    check "a candidate made to ${brk%%:*} (number ${brk##*:}) fails alone, tuning goes on" $?
done

[ -z "$(ls -A "$T/tmp")" ]
check "no scratch left behind: the tuner's own, and agents' that died with a candidate (swept by the next)" $?

INFERBOOSTER_TUNING_DB=$T/db.jsonl "$CLI" compile "$T/m.onnx" --target aarch64 -o "$T/art" >"$T/log" 2>&1 &&
    grep -q "tuned:    1 kernels" "$T/log" && qemu-aarch64 -L $SYSROOT "$RT/inferbooster-run" "$T/art" >>"$T/log" 2>&1
check "compile --target aarch64 applies the agent-measured record; the artifact runs" $?

out=$(printf 'not a job\n' | $AGENT 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "^ref fail measurement job: not a measurement job"
check "the agent refuses a malformed job (exit 2, a clear line)" $?
out=$(printf 'inferbooster-measure-job 1\nthreads 1 repeats 3 priority 0 flush 0\n' | $AGENT 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "^ref fail measurement job: bad output line"
check "the agent refuses a job cut short" $?
finish
