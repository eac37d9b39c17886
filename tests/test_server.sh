#!/usr/bin/env bash
# Server end to end: starts `inferbooster serve` on a free loopback port over a copy of
# examples/model_repository and exercises every endpoint with curl and Python (JSON and
# binary tensors, errors, repository load/unload, concurrency, metrics, shutdown).
# usage: test_server.sh path/to/inferbooster [source-dir]
set -u
BIN=${1:?usage: test_server.sh INFERBOOSTER [SOURCE_DIR]}
SRC=${2:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
TMP=$(mktemp -d)
export INFERBOOSTER_CACHE_DIR=${INFERBOOSTER_CACHE_DIR:-$TMP/cache}  # never ~/.cache
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
# expect_status NAME CODE curl-args...
expect_status() {
    local name=$1 want=$2
    shift 2
    local got
    got=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 20 "$@")
    if [ "$got" = "$want" ]; then ok; else bad "$name: status $got, expected $want ($(head -c 300 "$TMP/body"))"; fi
    if [ "$want" -ge 400 ] && [ -s "$TMP/body" ] && ! grep -q '"error"' "$TMP/body"; then
        bad "$name: error body lacks \"error\": $(head -c 200 "$TMP/body")"
    fi
}

# A repository with the example model, a copy without config.pbtxt (configured from the
# ONNX file) and a model whose config is broken.
REPO=$TMP/repo
mkdir -p "$REPO"
cp -r "$SRC/examples/model_repository/mlp" "$REPO/mlp"
mkdir -p "$REPO/plain/3" "$REPO/broken/1"
cp "$SRC/examples/model_repository/mlp/1/model.onnx" "$REPO/plain/3/model.onnx"
cp "$SRC/examples/model_repository/mlp/1/model.onnx" "$REPO/broken/1/model.onnx"
printf 'max_batch_size: 4\ninput [ { name: "nope" data_type: TYPE_FP32 dims: [ 16 ] } ]\n' >"$REPO/broken/config.pbtxt"
# A queue of one request, held for a second while the batcher waits for company.
mkdir -p "$REPO/slowq/1"
cp "$SRC/examples/model_repository/mlp/1/model.onnx" "$REPO/slowq/1/model.onnx"
printf 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1000000 default_queue_policy { max_queue_size: 1 } }\n' >"$REPO/slowq/config.pbtxt"

"$BIN" serve --model-repository "$REPO" --host 127.0.0.1 --http-port 0 --model-control-mode explicit \
    --load-model mlp --threads 1 --max-request-bytes 1048576 >"$TMP/log" 2>&1 &
SERVER_PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/log")
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$PORT" ]; then
    cat "$TMP/log"
    echo "0 passed, 1 failed"
    exit 1
fi
URL=http://127.0.0.1:$PORT

# ---- curl: every endpoint's status ----
expect_status live 200 "$URL/v2/health/live"
expect_status ready 200 "$URL/v2/health/ready"
expect_status server_metadata 200 "$URL/v2"
grep -q binary_tensor_data "$TMP/body" && ok || bad "server metadata lacks binary_tensor_data"
expect_status model_metadata 200 "$URL/v2/models/mlp"
grep -q '"platform":"onnxruntime_onnx"' "$TMP/body" && grep -q '"shape":\[-1,16\]' "$TMP/body" &&
    grep -Eq '"executor":"(compiled|reference)"' "$TMP/body" && ok ||
    bad "model metadata: $(cat "$TMP/body")"
expect_status model_version_metadata 200 "$URL/v2/models/mlp/versions/1"
expect_status model_config 200 "$URL/v2/models/mlp/config"
grep -q '"max_batch_size":32' "$TMP/body" && ok || bad "model config: $(cat "$TMP/body")"
expect_status model_ready 200 "$URL/v2/models/mlp/ready"
expect_status model_version_ready 200 "$URL/v2/models/mlp/versions/1/ready"
expect_status unknown_model_ready 400 "$URL/v2/models/nosuch/ready"
expect_status unknown_model_metadata 404 "$URL/v2/models/nosuch"
expect_status unknown_version 404 "$URL/v2/models/mlp/versions/7"
expect_status bad_version 400 "$URL/v2/models/mlp/versions/x1"
expect_status unknown_path 404 "$URL/v3/whatever"
expect_status wrong_method 405 -X POST "$URL/v2/models/mlp"
ROW='[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]'
expect_status infer_json 200 -X POST "$URL/v2/models/mlp/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,16],\"data\":$ROW}]}"
expect_status infer_unknown_model 404 -X POST "$URL/v2/models/nosuch/infer" -d '{}'
expect_status infer_bad_json 400 -X POST "$URL/v2/models/mlp/infer" -d '{"inputs": [ {'
expect_status infer_not_object 400 -X POST "$URL/v2/models/mlp/infer" -d '[1,2]'
expect_status infer_wrong_shape 400 -X POST "$URL/v2/models/mlp/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,15],\"data\":$ROW}]}"
expect_status infer_wrong_count 400 -X POST "$URL/v2/models/mlp/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[2,16],\"data\":$ROW}]}"
expect_status infer_huge_shape 400 -X POST "$URL/v2/models/mlp/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1000000000000,16],\"data\":$ROW}]}"
expect_status infer_wrong_dtype 400 -X POST "$URL/v2/models/mlp/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP64\",\"shape\":[1,16],\"data\":$ROW}]}"
expect_status infer_bytes 400 -X POST "$URL/v2/models/mlp/infer" -d '{"inputs":[{"name":"input","datatype":"BYTES","shape":[1],"data":["a"]}]}'
expect_status infer_unknown_input 400 -X POST "$URL/v2/models/mlp/infer" -d "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,16],\"data\":$ROW}]}"
expect_status infer_unknown_output 400 -X POST "$URL/v2/models/mlp/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,16],\"data\":$ROW}],\"outputs\":[{\"name\":\"zz\"}]}"
expect_status infer_string_value 400 -X POST "$URL/v2/models/mlp/infer" -d '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,16],"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,"x"]}]}'
expect_status infer_no_inputs 400 -X POST "$URL/v2/models/mlp/infer" -d '{"inputs":[]}'
DEEP=$(printf '[%.0s' $(seq 200))
expect_status infer_deep_json 400 -X POST "$URL/v2/models/mlp/infer" -d "{\"inputs\":$DEEP"
head -c 2000000 /dev/zero | tr '\0' ' ' >"$TMP/big"
expect_status infer_oversized 413 -X POST "$URL/v2/models/mlp/infer" --data-binary "@$TMP/big"
expect_status infer_oversized_chunked 413 -X POST -H 'Transfer-Encoding: chunked' "$URL/v2/models/mlp/infer" --data-binary "@$TMP/big"
expect_status infer_bad_header_length 400 -X POST -H 'Inference-Header-Content-Length: 99999' "$URL/v2/models/mlp/infer" -d '{}'
expect_status index 200 -X POST "$URL/v2/repository/index"
grep -q '"name":"plain","state":"UNAVAILABLE"' "$TMP/body" && grep -q '"name":"mlp","version":"1","state":"READY"' "$TMP/body" && ok ||
    bad "index: $(cat "$TMP/body")"
expect_status index_ready 200 -X POST "$URL/v2/repository/index" -d '{"ready":true}'
grep -q plain "$TMP/body" && bad "ready index lists plain" || ok
expect_status load_plain 200 -X POST "$URL/v2/repository/models/plain/load"
expect_status plain_ready 200 "$URL/v2/models/plain/versions/3/ready"
expect_status infer_plain 200 -X POST "$URL/v2/models/plain/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,16],\"data\":$ROW}]}"
expect_status reload_plain 200 -X POST "$URL/v2/repository/models/plain/load"
expect_status unload_plain 200 -X POST "$URL/v2/repository/models/plain/unload"
expect_status infer_unloaded 404 -X POST "$URL/v2/models/plain/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,16],\"data\":$ROW}]}"
expect_status load_broken 400 -X POST "$URL/v2/repository/models/broken/load"
grep -q nope "$TMP/body" && ok || bad "broken load message: $(cat "$TMP/body")"
expect_status load_missing 400 -X POST "$URL/v2/repository/models/missing/load"
expect_status load_bad_name 400 -X POST "$URL/v2/repository/models/.hidden/load"
# Uploads: the repository extension's file: parameters write ROOT/<name>/<version>/model.onnx.
B64=$(base64 -w0 "$SRC/examples/model_repository/mlp/1/model.onnx")
printf '{"parameters":{"file:2/model.onnx":"%s"}}' "$B64" >"$TMP/upload.json"
expect_status upload_load 200 -X POST "$URL/v2/repository/models/uploaded/load" --data-binary @"$TMP/upload.json"
cmp -s "$REPO/uploaded/2/model.onnx" "$SRC/examples/model_repository/mlp/1/model.onnx" && ok ||
    bad "uploaded file differs from the one sent"
ls -a "$REPO/uploaded/2" | grep -q upload- && bad "a temporary upload file was left behind" || ok
expect_status upload_ready 200 "$URL/v2/models/uploaded/versions/2/ready"
expect_status upload_infer 200 -X POST "$URL/v2/models/uploaded/infer" -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,16],\"data\":$ROW}]}"
expect_status upload_traversal 400 -X POST "$URL/v2/repository/models/up2/load" -d '{"parameters":{"file:../../x/model.onnx":"AAAA"}}'
expect_status upload_other_file 400 -X POST "$URL/v2/repository/models/up2/load" -d '{"parameters":{"file:1/evil.so":"AAAA"}}'
expect_status upload_version_zero 400 -X POST "$URL/v2/repository/models/up2/load" -d '{"parameters":{"file:0/model.onnx":"AAAA"}}'
expect_status upload_bad_base64 400 -X POST "$URL/v2/repository/models/up2/load" -d '{"parameters":{"file:1/model.onnx":"@@@@"}}'
expect_status upload_not_text 400 -X POST "$URL/v2/repository/models/up2/load" -d '{"parameters":{"file:1/model.onnx":12}}'
expect_status upload_config 400 -X POST "$URL/v2/repository/models/up2/load" -d '{"parameters":{"config":"{}"}}'
expect_status upload_not_object 400 -X POST "$URL/v2/repository/models/up2/load" -d '[1]'
# the refused traversal would have written $REPO/up2/../../x/model.onnx = $TMP/x/model.onnx
[ -e "$TMP/x" ] || [ -e "$REPO/up2" ] && bad "a refused upload wrote something" || ok
expect_status upload_garbage 400 -X POST "$URL/v2/repository/models/up3/load" -d '{"parameters":{"file:1/model.onnx":"bm90IGFuIG9ubngK"}}'
[ -e "$REPO/up3" ] && bad "a model that failed to load was left in the repository" || ok
expect_status upload_same_again 200 -X POST "$URL/v2/repository/models/uploaded/load" --data-binary @"$TMP/upload.json"
expect_status upload_replace 400 -X POST "$URL/v2/repository/models/uploaded/load" -d '{"parameters":{"file:2/model.onnx":"bm90IGFuIG9ubngK"}}'
cmp -s "$REPO/uploaded/2/model.onnx" "$SRC/examples/model_repository/mlp/1/model.onnx" && ok ||
    bad "a refused upload changed the served model"
expect_status alive_after_uploads 200 "$URL/v2/health/live"
# Back-pressure: the second request finds the queue full (503); the first still succeeds.
expect_status load_slowq 200 -X POST "$URL/v2/repository/models/slowq/load"
SLOWQ="{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,16],\"data\":$ROW}]}"
curl -s -o "$TMP/first" -w '%{http_code}' --max-time 20 -X POST "$URL/v2/models/slowq/infer" -d "$SLOWQ" >"$TMP/first_code" &
CURL_PID=$!
sleep 0.3
expect_status queue_full 503 -X POST "$URL/v2/models/slowq/infer" -d "$SLOWQ"
wait "$CURL_PID"
[ "$(cat "$TMP/first_code")" = 200 ] && ok || bad "queued request: $(cat "$TMP/first_code") $(cat "$TMP/first")"
# Per-request timeout: a request still queued after its timeout answers 503.
SLOWQ_T="{\"parameters\":{\"timeout\":100000},\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,16],\"data\":$ROW}]}"
expect_status queue_timeout 503 -X POST "$URL/v2/models/slowq/infer" -d "$SLOWQ_T"
grep -q "timed out" "$TMP/body" && ok || bad "timeout message: $(cat "$TMP/body")"
expect_status bad_timeout 400 -X POST "$URL/v2/models/slowq/infer" -d '{"parameters":{"timeout":-1},"inputs":[]}'
# Client disconnect: a request whose client hangs up while it waits in the queue (the
# batcher holds it for 1 s) is dropped without running.
metric() { curl -s --max-time 10 "$URL/metrics" | sed -n "s/^$1{model=\"$2\",version=\"1\"} //p"; }
EXEC_BEFORE=$(metric nv_inference_exec_count slowq)
curl -s -o /dev/null --max-time 0.3 -X POST "$URL/v2/models/slowq/infer" -d "$SLOWQ"
sleep 1.2
[ "$(metric ib_inference_request_cancelled slowq)" = 1 ] && ok ||
    bad "cancelled metric after a disconnect: '$(metric ib_inference_request_cancelled slowq)'"
[ "$(metric nv_inference_exec_count slowq)" = "$EXEC_BEFORE" ] && ok ||
    bad "the abandoned request ran: exec count $EXEC_BEFORE -> $(metric nv_inference_exec_count slowq)"
expect_status after_disconnect 200 -X POST "$URL/v2/models/slowq/infer" -d "$SLOWQ"
expect_status metrics 200 "$URL/metrics"
grep -q '^nv_inference_request_success{model="mlp",version="1"}' "$TMP/body" && ok || bad "metrics: $(head -c 400 "$TMP/body")"
grep -Eq '^ib_model_executor_info\{model="mlp",version="1",executor="(compiled|reference)",optimization="[a-z]+"\} 1' "$TMP/body" && ok ||
    bad "executor metric: $(grep executor "$TMP/body")"
# Rows executed count each execution's padding too: never fewer than the items.
ROWS=$(sed -n 's/^ib_inference_exec_rows_total{model="mlp",version="1"} //p' "$TMP/body")
ITEMS=$(sed -n 's/^nv_inference_count{model="mlp",version="1"} //p' "$TMP/body")
[ -n "$ROWS" ] && [ -n "$ITEMS" ] && [ "$ITEMS" -gt 0 ] && [ "$ROWS" -ge "$ITEMS" ] && ok ||
    bad "exec rows '$ROWS' vs inference count '$ITEMS'"
grep -q '^ib_inference_exec_duration_us{model="mlp",version="1"} [1-9]' "$TMP/body" && ok ||
    bad "exec duration metric: $(grep exec_duration "$TMP/body")"

# ---- Python: values, nested data, binary tensors, concurrency, metrics ----
PORT=$PORT SRC=$SRC "$PY" - <<'PYEOF' >"$TMP/py.out" 2>&1
import concurrent.futures, http.client, json, os, random, struct, sys
import numpy as np, onnx
from onnx import numpy_helper

port = int(os.environ["PORT"]); src = os.environ["SRC"]
passed = failed = 0
def check(name, cond, detail=""):
    global passed, failed
    if cond: passed += 1
    else:
        failed += 1; print("FAIL:", name, detail)

def post(path, body, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=body, headers=headers or {})
    r = c.getresponse(); data = r.read(); hdrs = dict(r.getheaders()); c.close()
    return r.status, hdrs, data

def metrics():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics"); text = c.getresponse().read().decode(); c.close()
    out = {}
    for line in text.splitlines():
        if line.startswith('nv_') and 'model="mlp"' in line:
            out[line.split("{")[0]] = int(line.split()[-1])
    return out

m = onnx.load(os.path.join(src, "examples/models/mlp/model.onnx"))
w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
def reference(x):
    h = np.maximum(x @ w[gemms[0].input[1]].T + w[gemms[0].input[2]], 0)
    z = h @ w[gemms[1].input[1]].T + w[gemms[1].input[2]]
    e = np.exp(z - z.max(axis=-1, keepdims=True)); return e / e.sum(axis=-1, keepdims=True)

x = np.load(os.path.join(src, "examples/models/mlp/input.npy")).astype(np.float32)
expected = np.load(os.path.join(src, "examples/models/mlp/expected_probabilities.npy"))
check("numpy reference", np.allclose(reference(x), expected, atol=1e-5))
before = metrics()

# Flat JSON, id and parameters echoed.
req = {"id": "req-1", "parameters": {"tag": "t"}, "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
st, h, body = post("/v2/models/mlp/infer", json.dumps(req))
check("flat status", st == 200, body[:300])
if st == 200:
    r = json.loads(body)
    check("id echoed", r.get("id") == "req-1")
    check("parameters echoed", r.get("parameters") == {"tag": "t"})
    check("model_version", r.get("model_version") == "1" and r.get("model_name") == "mlp")
    o = r["outputs"][0]
    check("flat output", o["name"] == "probabilities" and o["datatype"] == "FP32" and o["shape"] == [2, 4] and
          np.allclose(np.array(o["data"], np.float32).reshape(2, 4), expected, atol=1e-5), o)
# Nested JSON, explicit output, version in the path.
req = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 16], "data": x.tolist()}], "outputs": [{"name": "probabilities"}]}
st, h, body = post("/v2/models/mlp/versions/1/infer", json.dumps(req))
check("nested status", st == 200, body[:300])
if st == 200:
    o = json.loads(body)["outputs"][0]
    check("nested output", np.allclose(np.array(o["data"], np.float32).reshape(2, 4), expected, atol=1e-5))
# Binary input and binary output (binary tensor data extension).
hdr = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 16], "parameters": {"binary_data_size": x.nbytes}}],
                  "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
st, h, body = post("/v2/models/mlp/infer", hdr + x.tobytes(), {"Inference-Header-Content-Length": str(len(hdr)), "Content-Type": "application/octet-stream"})
check("binary status", st == 200, body[:300])
if st == 200:
    hl = int(h.get("Inference-Header-Content-Length", "-1"))
    check("binary header length", 0 < hl < len(body), h)
    meta = json.loads(body[:hl]); o = meta["outputs"][0]
    check("binary size param", o["parameters"]["binary_data_size"] == 32 and "data" not in o, o)
    y = np.frombuffer(body[hl:], np.float32).reshape(2, 4)
    check("binary output", np.allclose(y, expected, atol=1e-5))
# binary_data_output for every output, JSON input.
req = {"parameters": {"binary_data_output": True}, "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 16], "data": x.ravel().tolist()}]}
st, h, body = post("/v2/models/mlp/infer", json.dumps(req))
hl = int(h.get("Inference-Header-Content-Length", "0"))
check("binary_data_output", st == 200 and hl > 0 and np.allclose(np.frombuffer(body[hl:], np.float32).reshape(2, 4), expected, atol=1e-5))
# Binary errors: size mismatch, trailing bytes, both data and binary.
bad_hdr = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 16], "parameters": {"binary_data_size": 12}}]}).encode()
st, _, body = post("/v2/models/mlp/infer", bad_hdr + x.tobytes()[:12], {"Inference-Header-Content-Length": str(len(bad_hdr))})
check("binary size mismatch 400", st == 400 and b"binary_data_size" in body, body)
st, _, body = post("/v2/models/mlp/infer", hdr + x.tobytes() + b"xx", {"Inference-Header-Content-Length": str(len(hdr))})
check("binary trailing bytes 400", st == 400, body)
st, _, body = post("/v2/models/mlp/infer", hdr + x.tobytes()[:-4], {"Inference-Header-Content-Length": str(len(hdr))})
check("binary short 400", st == 400, body)
# Batch above max_batch_size (32) is refused.
big = np.zeros((33, 16), np.float32)
st, _, body = post("/v2/models/mlp/infer", json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [33, 16], "data": big.ravel().tolist()}]}))
check("batch above max 400", st == 400 and b"max_batch_size" in body, body)
# Other datatypes are refused by name for an FP32 input; FP16 data would need an FP16 model.
for dt in ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP64"]:
    st, _, body = post("/v2/models/mlp/infer", json.dumps({"inputs": [{"name": "input", "datatype": dt, "shape": [1, 16], "data": [0] * 16}]}))
    check("datatype %s refused" % dt, st == 400 and b"expects FP32" in body, body)

# Concurrency: bounded parallel requests of 1-3 rows; each answer checked against numpy.
def one(i):
    rows = 1 + i % 3
    xi = np.random.default_rng(i).standard_normal((rows, 16)).astype(np.float32)
    if i % 2:
        h = json.dumps({"id": str(i), "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 16], "parameters": {"binary_data_size": xi.nbytes}}],
                        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
        st, hd, body = post("/v2/models/mlp/infer", h + xi.tobytes(), {"Inference-Header-Content-Length": str(len(h))})
        if st != 200: return "status %d %s" % (st, body[:200])
        hl = int(hd["Inference-Header-Content-Length"]); y = np.frombuffer(body[hl:], np.float32).reshape(rows, 4)
        rid = json.loads(body[:hl]).get("id")
    else:
        st, hd, body = post("/v2/models/mlp/infer", json.dumps({"id": str(i), "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 16], "data": xi.tolist()}]}))
        if st != 200: return "status %d %s" % (st, body[:200])
        r = json.loads(body); y = np.array(r["outputs"][0]["data"], np.float32).reshape(rows, 4); rid = r.get("id")
    if rid != str(i): return "id %r for request %d" % (rid, i)
    if not np.allclose(y, reference(xi), atol=1e-5): return "wrong values for request %d" % i
    return None
N = 192
with concurrent.futures.ThreadPoolExecutor(32) as ex:
    errors = [e for e in ex.map(one, range(N)) if e]
check("concurrent requests all correct", not errors, errors[:3])
items = sum(1 + i % 3 for i in range(N))
after = metrics()
succ = after["nv_inference_request_success"] - before["nv_inference_request_success"]
# Four single requests above succeeded (2 rows each) before the concurrent ones.
check("success counter", succ == N + 4, (succ, N + 4))
check("failure counter", after["nv_inference_request_failure"] > before["nv_inference_request_failure"])
check("inference count", after["nv_inference_count"] - before["nv_inference_count"] == items + 4 * 2, (after, before))
ex_count = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
check("exec count", 0 < ex_count <= succ, ex_count)
print("batching: %d requests (%d items) ran in %d executions" % (succ, items, ex_count))
check("durations", after["nv_inference_request_duration_us"] > before["nv_inference_request_duration_us"] and
      after["nv_inference_queue_duration_us"] >= before["nv_inference_queue_duration_us"])
check("pending gauge zero", after["nv_inference_pending_request_count"] == 0)
# Mutated requests (JSON and binary): every one gets an answer, 200 or 4xx, never a crash.
random.seed(11)
base = json.dumps({"id": "m", "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 16], "data": x.tolist()}]}).encode()
bin_hdr = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 16], "parameters": {"binary_data_size": x.nbytes}}]}).encode()
tokens = [b"[", b"]", b"{", b"}", b",", b"\"", b"-1", b"1e999", b"null", b"true", b"\"FP16\"", b"\"BYTES\"", b"99999999999999999999", b"\\u0000"]
odd = []
for i in range(300):
    binary = i % 3 == 0
    b = bytearray(bin_hdr + x.tobytes() if binary else base)
    for _ in range(random.randint(1, 4)):
        at = random.randrange(len(b))
        r = random.random()
        if r < 0.4: b[at] = random.randrange(256)
        elif r < 0.7: b[at:at] = random.choice(tokens)
        else: del b[at:at + random.randint(1, 8)]
    hdrs = {"Inference-Header-Content-Length": str(len(bin_hdr))} if binary else {}
    try:
        st, _, body = post("/v2/models/mlp/infer", bytes(b), hdrs)
    except Exception as e:
        odd.append("%d: %r" % (i, e)); break
    if st not in (200, 400): odd.append("%d: status %d %s" % (i, st, body[:100]))
check("mutated requests answered 200/400", not odd, odd[:3])
check("alive after mutations", post("/v2/models/mlp/infer", base)[0] == 200)
print("PY %d %d" % (passed, failed))
PYEOF
grep -v '^PY ' "$TMP/py.out"
read -r _ p f < <(grep '^PY ' "$TMP/py.out" || echo "PY 0 1")
PASS=$((PASS + p))
FAIL=$((FAIL + f))

# ---- Shutdown: SIGTERM drains and exits 0 ----
kill -TERM "$SERVER_PID"
RC=
for _ in $(seq 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        wait "$SERVER_PID"
        RC=$?
        break
    fi
    sleep 0.1
done
[ "$RC" = 0 ] && ok || { bad "server exit status after SIGTERM: '${RC:-still running}'"; tail -5 "$TMP/log"; }
SERVER_PID=

# ---- Usage errors and control mode none ----
"$BIN" serve >/dev/null 2>&1; [ $? = 2 ] && ok || bad "serve without --model-repository should exit 2"
"$BIN" serve --model-repository "$TMP/nosuch" >/dev/null 2>&1; [ $? != 0 ] && ok || bad "missing repository accepted"
"$BIN" serve --model-repository "$REPO" --model-control-mode sometimes >/dev/null 2>&1; [ $? = 2 ] && ok || bad "bad control mode accepted"
rm -rf "$REPO/broken"
"$BIN" serve --model-repository "$REPO" --http-port 0 --threads 1 >"$TMP/log2" 2>&1 &
SERVER_PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/log2")
    [ -n "$PORT" ] && break
    sleep 0.1
done
if [ -n "$PORT" ]; then
    expect_status none_mode_plain_ready 200 "http://127.0.0.1:$PORT/v2/models/plain/ready"
    expect_status none_mode_load 503 -X POST "http://127.0.0.1:$PORT/v2/repository/models/plain/load"
else
    bad "server in control mode none did not start: $(cat "$TMP/log2")"
fi

kill -TERM "$SERVER_PID" 2>/dev/null
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=

# ---- Control mode poll: a model directory added is loaded, one removed is unloaded ----
PREPO=$TMP/poll
mkdir -p "$PREPO"
cp -r "$SRC/examples/model_repository/mlp" "$PREPO/mlp"
"$BIN" serve --model-repository "$PREPO" --http-port 0 --threads 1 --model-control-mode poll \
    --repository-poll-secs 1 >"$TMP/log3" 2>&1 &
SERVER_PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/log3")
    [ -n "$PORT" ] && break
    sleep 0.1
done
# wait_status NAME CODE URL: polls up to 30 s for the status.
wait_status() {
    local got=
    for _ in $(seq 150); do
        got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$3")
        [ "$got" = "$2" ] && break
        sleep 0.2
    done
    [ "$got" = "$2" ] && ok || bad "$1: status $got, expected $2 ($(tail -3 "$TMP/log3"))"
}
if [ -n "$PORT" ]; then
    expect_status poll_mode_load 503 -X POST "http://127.0.0.1:$PORT/v2/repository/models/mlp/load"
    mkdir -p "$PREPO/added/2"
    cp "$SRC/examples/model_repository/mlp/1/model.onnx" "$PREPO/added/2/model.onnx"
    wait_status poll_added_ready 200 "http://127.0.0.1:$PORT/v2/models/added/versions/2/ready"
    mkdir -p "$PREPO/added/5"
    cp "$SRC/examples/model_repository/mlp/1/model.onnx" "$PREPO/added/5/model.onnx"
    wait_status poll_new_version_ready 200 "http://127.0.0.1:$PORT/v2/models/added/versions/5/ready"
    expect_status poll_old_version_gone 400 "http://127.0.0.1:$PORT/v2/models/added/versions/2/ready"
    rm -rf "$PREPO/added"
    wait_status poll_removed_unready 400 "http://127.0.0.1:$PORT/v2/models/added/ready"
    expect_status poll_mlp_still_ready 200 "http://127.0.0.1:$PORT/v2/models/mlp/ready"
else
    bad "server in control mode poll did not start: $(cat "$TMP/log3")"
fi
kill -TERM "$SERVER_PID" 2>/dev/null
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=

# ---- Cache metrics: a cold cache compiles every warmed batch size, a restart loads them ----
# --compile-all: the example MLP is otherwise too small to be worth a module (and so the
# cache); the optimised session is built in the background, as by default.
CREPO=$TMP/cachemetrics
mkdir -p "$CREPO"
cp -r "$SRC/examples/model_repository/mlp" "$CREPO/mlp"
# cache_round NAME: starts a server on $CREPO with its own cache, waits until the optimised
# session is live, and leaves hits, misses and compile time in HITS MISSES COMPILE_US.
cache_round() {
    HITS= MISSES= COMPILE_US=
    INFERBOOSTER_CACHE_DIR=$TMP/cache_metrics "$BIN" serve --model-repository "$CREPO" --http-port 0 \
        --threads 1 --compile-all >"$TMP/log4" 2>&1 &
    SERVER_PID=$!
    PORT=
    for _ in $(seq 100); do
        PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/log4")
        [ -n "$PORT" ] && break
        sleep 0.1
    done
    if [ -z "$PORT" ]; then
        bad "$1: the server did not start: $(tail -3 "$TMP/log4")"
    else
        URL=http://127.0.0.1:$PORT
        for _ in $(seq 600); do
            curl -s --max-time 5 "$URL/metrics" | grep -q 'ib_model_executor_info{model="mlp",version="1",executor="compiled",optimization="swapped"}' && break
            sleep 0.2
        done
        HITS=$(metric ib_model_cache_hits_total mlp)
        MISSES=$(metric ib_model_cache_misses_total mlp)
        COMPILE_US=$(metric ib_model_compile_duration_us mlp)
    fi
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}
# The MLP's config warms batch sizes 1, 8, 16 and 32: one executable each.
cache_round cold
[ "$HITS" = 0 ] && [ "$MISSES" = 4 ] && ok || bad "cold cache: hits '$HITS', misses '$MISSES' (expected 0 and 4)"
[ "${COMPILE_US:-0}" -gt 0 ] 2>/dev/null && ok || bad "cold cache: compile duration '$COMPILE_US'"
COLD_US=${COMPILE_US:-0}
cache_round warm
[ "$HITS" = 4 ] && [ "$MISSES" = 0 ] && ok || bad "warm cache: hits '$HITS', misses '$MISSES' (expected 4 and 0)"
[ "${COMPILE_US:-0}" -gt 0 ] 2>/dev/null && [ "$COMPILE_US" -lt "$COLD_US" ] && ok ||
    bad "warm cache: compile duration '$COMPILE_US' us, not below the cold $COLD_US us"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
