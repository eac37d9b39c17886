#!/usr/bin/env bash
# Progressive optimisation under traffic: `inferbooster serve --compile-all` makes the
# example model ready at once on the reference executor while the compiled session is
# built and warmed in the background; clients keep sending requests (JSON and binary,
# keep-alive) while the compiled session replaces the reference one. Every request must
# succeed with the same values, before and after the swap, and metadata and metrics must
# say which executor is live.
# usage: test_server_hotswap.sh path/to/inferbooster [source-dir]
set -u
BIN=${1:?usage: test_server_hotswap.sh INFERBOOSTER [SOURCE_DIR]}
SRC=${2:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$TMP/repo"
cp -r "$SRC/examples/model_repository/mlp" "$TMP/repo/mlp"
cp -r "$SRC/examples/model_repository/mlp" "$TMP/repo/early"
sed -i 's/^name: "mlp"/name: "early"/' "$TMP/repo/early/config.pbtxt"
"$BIN" serve --model-repository "$TMP/repo" --http-port 0 --threads 1 --compile-all \
    --model-control-mode explicit --load-model mlp >"$TMP/log" 2>&1 &
SERVER_PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/log")
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$PORT" ]; then
    echo "FAIL: the server did not start: $(cat "$TMP/log")"
    echo "0 passed, 1 failed"
    exit 1
fi
/usr/bin/python3 - "$PORT" "$SRC" <<'PYEOF'
import http.client, json, sys, threading, time
import numpy as np
port, src = int(sys.argv[1]), sys.argv[2]
passed = failed = 0
def check(cond, what):
    global passed, failed
    if cond: passed += 1
    else: failed += 1; print("FAIL:", what)

def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path); r = c.getresponse(); body = r.read(); c.close()
    return r.status, body

x = np.load(src + "/examples/models/mlp/input.npy").astype(np.float32)
want = np.load(src + "/examples/models/mlp/expected_probabilities.npy")
st, meta = get("/v2/models/mlp")
meta = json.loads(meta)
check(st == 200 and meta["parameters"]["executor"] == "reference" and meta["parameters"]["optimization"] == "running",
      "ready at once on the reference executor while compiling: %s" % meta.get("parameters"))

state = {"stop": False, "ok": 0, "errors": [], "compiled_at": None, "ok_before": 0}
lock = threading.Lock()
def client(binary):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    rows = x[:1] if binary else x
    while not state["stop"]:
        if binary:
            hdr = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                                          "parameters": {"binary_data_size": rows.nbytes}}],
                              "parameters": {"binary_data_output": True}}).encode()
            c.request("POST", "/v2/models/mlp/infer", hdr + rows.tobytes(),
                      {"Inference-Header-Content-Length": str(len(hdr))})
        else:
            c.request("POST", "/v2/models/mlp/infer", json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                      "shape": list(rows.shape), "data": rows.flatten().tolist()}]}))
        r = c.getresponse(); body = r.read()
        err = None
        if r.status != 200:
            err = "HTTP %d: %s" % (r.status, body[:200])
        else:
            if binary:
                hl = int(r.getheader("Inference-Header-Content-Length"))
                y = np.frombuffer(body[hl:], np.float32).reshape(1, 4)
                exp = want[:1]
            else:
                y = np.array(json.loads(body)["outputs"][0]["data"], np.float32).reshape(2, 4)
                exp = want
            if not np.allclose(y, exp, atol=1e-5): err = "values differ: %s vs %s" % (y, exp)
        with lock:
            if err: state["errors"].append(err)
            else:
                state["ok"] += 1
                if state["compiled_at"] is None: state["ok_before"] += 1
threads = [threading.Thread(target=client, args=(k % 2 == 1,)) for k in range(4)]
for t in threads: t.start()
deadline = time.time() + 240
while time.time() < deadline:
    st, body = get("/v2/models/mlp")
    if st == 200 and json.loads(body)["parameters"]["executor"] == "compiled":
        with lock: state["compiled_at"] = state["ok"]
        break
    time.sleep(0.05)
time.sleep(1.5)  # traffic on the compiled session
state["stop"] = True
for t in threads: t.join()
check(state["compiled_at"] is not None, "the compiled session was swapped in within 240 s")
check(not state["errors"], "%d failed requests, first: %s" % (len(state["errors"]), state["errors"][:1]))
check(state["ok_before"] > 0, "requests served on the reference executor before the swap")
check(state["compiled_at"] is not None and state["ok"] > state["compiled_at"], "requests served after the swap")
print("     %d requests, %d before the swap, 0 failed" % (state["ok"], state["ok_before"]) if not state["errors"] else "")
st, body = get("/metrics")
text = body.decode()
# A version unloaded while its compiled session is still being built: the unload answers,
# the optimizer stops at its next step, and the model can be loaded again.
def post(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", path, b""); r = c.getresponse(); body = r.read(); c.close()
    return r.status, body
st, _ = post("/v2/repository/models/early/load")
st2, meta = get("/v2/models/early")
check(st == 200 and json.loads(meta)["parameters"]["optimization"] == "running", "early: loaded, compiling")
t = time.time()
st, body = post("/v2/repository/models/early/unload")
check(st == 200, "unload while compiling: %d %s" % (st, body[:200]))
st, _ = get("/v2/models/early/ready")
check(st != 200, "early is no longer ready after its unload")
st, _ = post("/v2/repository/models/early/load")
check(st == 200, "early loads again")
print("     unload during the background compile took %.2f s" % (time.time() - t))
check('ib_model_executor_info{model="mlp",version="1",executor="compiled",optimization="swapped"} 1' in text,
      "executor metric after the swap")
check('ib_model_session_swaps_total{model="mlp",version="1"} 1' in text, "one session swap counted")
check('nv_inference_request_failure{model="mlp",version="1"} 0' in text, "no failure counted")
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PYEOF
rc=$?
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
src=$?
[ $src = 0 ] || { echo "FAIL: SIGTERM exit status $src"; rc=1; }
exit $rc
