"""Remote mode: the InferenceSession API against an `inferbooster serve` server over the
Open Inference Protocol (KServe V2 REST) with the binary tensor extension. A model is
named (already in the server's repository) or given as a path / bytes, which is uploaded
through the repository extension (Triton's `file:` load parameters) under a content hash."""

import base64
import hashlib
import http.client
import json
import os
import threading
import urllib.parse

import numpy as np

from .session import (
    Fail,
    InferBoosterError,
    InferenceSession,
    InvalidArgument,
    ModelMetadata,
    NodeArg,
    NoSuchFile,
    SessionOptions,
)

# KServe V2 datatype <-> NumPy dtype and ONNX Runtime type string.
_V2_TYPES = {
    "BOOL": (np.dtype(np.bool_), "tensor(bool)"),
    "UINT8": (np.dtype(np.uint8), "tensor(uint8)"),
    "UINT16": (np.dtype(np.uint16), "tensor(uint16)"),
    "UINT32": (np.dtype(np.uint32), "tensor(uint32)"),
    "UINT64": (np.dtype(np.uint64), "tensor(uint64)"),
    "INT8": (np.dtype(np.int8), "tensor(int8)"),
    "INT16": (np.dtype(np.int16), "tensor(int16)"),
    "INT32": (np.dtype(np.int32), "tensor(int32)"),
    "INT64": (np.dtype(np.int64), "tensor(int64)"),
    "FP16": (np.dtype(np.float16), "tensor(float16)"),
    "FP32": (np.dtype(np.float32), "tensor(float)"),
    "FP64": (np.dtype(np.float64), "tensor(double)"),
    "BYTES": (None, "tensor(string)"),
    "BF16": (None, "tensor(bfloat16)"),
}
_NP_TO_V2 = {d: name for name, (d, _) in _V2_TYPES.items() if d is not None}

_TIMEOUT_S = 300


def _error(status, text):
    try:
        msg = json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        msg = text
    name = "IB_ERR_INVALID_ARGUMENT" if 400 <= status < 500 else "IB_ERR_RUNTIME"
    cls = InvalidArgument if 400 <= status < 500 else Fail
    if status == 404:
        cls, name = NoSuchFile, "IB_ERR_IO"
    return cls("[InferBooster server] HTTP %d: %s" % (status, msg), name)


class _Client:
    """One keep-alive HTTP connection per thread (http.client is not thread-safe)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme != "http":
            raise InvalidArgument("[InferBooster] IB_ERR_INVALID_ARGUMENT: server %r: only "
                                  "http:// is supported" % url, "IB_ERR_INVALID_ARGUMENT")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.prefix = u.path.rstrip("/")
        self._local = threading.local()

    def request(self, method, path, body=None, headers=None):
        """Returns (status, response headers, body bytes); retries once on a connection
        the server closed while idle."""
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=_TIMEOUT_S)
                self._local.conn = conn
            try:
                conn.request(method, self.prefix + path, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp, data
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                conn.close()
                self._local.conn = None
                if attempt:
                    raise Fail("[InferBooster] IB_ERR_IO: server %s:%d: %s"
                               % (self.host, self.port, e), "IB_ERR_IO") from None

    def json(self, method, path, payload=None):
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, _, data = self.request(method, path, body, headers)
        if status != 200:
            raise _error(status, data.decode("utf-8", "replace"))
        return json.loads(data) if data else {}


def _node_arg(entry):
    dt = _V2_TYPES.get(entry.get("datatype", ""), (None, "tensor(undefined)"))
    shape = [int(d) if int(d) >= 0 else None for d in entry.get("shape", [])]
    return NodeArg(entry.get("name", ""), dt[1], shape, entry.get("datatype"))


class RemoteSession(InferenceSession):
    """InferenceSession whose model runs on an InferBooster server."""

    def __init__(self, path_or_bytes, sess_options=None, providers=None,
                 provider_options=None, server=None, model_name=None, **kwargs):
        self._session = self._model = None
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        self._client = _Client(server)
        self._server = server
        self._name = model_name or self._resolve(path_or_bytes)
        md = self._client.json("GET", "/v2/models/%s" % urllib.parse.quote(self._name))
        self._md = md
        self._inputs_meta = [_node_arg(e) for e in md.get("inputs", [])]
        self._outputs_meta = [_node_arg(e) for e in md.get("outputs", [])]
        self._output_names = [a.name for a in self._outputs_meta]
        self._input_dtypes = {a.name: _V2_TYPES.get(a._dtype_code, (None,))[0]
                              for a in self._inputs_meta}
        self._providers = ["InferBoosterExecutionProvider"]

    def _resolve(self, path_or_bytes):
        """A repository name is used as is; a model file or bytes is uploaded (once: the
        name is its content hash, so a second client finds it loaded)."""
        if isinstance(path_or_bytes, (str, os.PathLike)):
            path = os.fspath(path_or_bytes)
            if not os.path.exists(path) and "/" not in path and not path.endswith(".onnx"):
                return path
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise NoSuchFile("[InferBooster] IB_ERR_IO: %s: %s" % (path, e.strerror),
                                 "IB_ERR_IO") from None
        elif isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            data = bytes(path_or_bytes)
        else:
            raise TypeError("Unable to load from type '%s'" % type(path_or_bytes).__name__)
        name = "ib-" + hashlib.sha256(data).hexdigest()[:24]
        status, _, _ = self._client.request("GET", "/v2/models/%s/ready" % name)
        if status == 200:
            return name
        payload = {"parameters": {"file:1/model.onnx": base64.b64encode(data).decode()}}
        try:
            self._client.json("POST", "/v2/repository/models/%s/load" % name, payload)
        except InferBoosterError as e:
            raise type(e)("%s (uploading the model; a server started with "
                          "--model-control-mode explicit accepts uploads)" % e,
                          e.status) from None
        return name

    def __del__(self):
        pass

    @property
    def executor(self):
        return "remote"

    def get_modelmeta(self):
        return ModelMetadata(graph_name=self._md.get("name", ""),
                             producer_name=self._md.get("platform", ""),
                             custom_metadata_map={"server": str(self._server)})

    def run(self, output_names, input_feed, run_options=None):
        names = list(input_feed.keys())
        return self._infer(names, [self._as_input(n, input_feed[n]) for n in names],
                           output_names or self._output_names)

    def _run_positional(self, arrays):
        return self._infer([a.name for a in self._inputs_meta],
                           [np.ascontiguousarray(a) for a in arrays], self._output_names)

    def _infer(self, names, arrays, output_names):
        header = {"inputs": [], "outputs": [{"name": n, "parameters": {"binary_data": True}}
                                            for n in output_names]}
        blobs = []
        for name, arr in zip(names, arrays):
            if not arr.flags.c_contiguous or not arr.dtype.isnative:
                arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
            dt = _NP_TO_V2.get(arr.dtype)
            if dt is None:
                raise InvalidArgument("[InferBooster] IB_ERR_INVALID_ARGUMENT: input '%s': "
                                      "NumPy dtype %s is not supported" % (name, arr.dtype),
                                      "IB_ERR_INVALID_ARGUMENT")
            header["inputs"].append({"name": name, "shape": list(arr.shape), "datatype": dt,
                                     "parameters": {"binary_data_size": arr.nbytes}})
            blobs.append(arr.tobytes())
        head = json.dumps(header).encode()
        status, resp, data = self._client.request(
            "POST", "/v2/models/%s/infer" % urllib.parse.quote(self._name),
            head + b"".join(blobs),
            {"Content-Type": "application/octet-stream",
             "Inference-Header-Content-Length": str(len(head))})
        if status != 200:
            raise _error(status, data.decode("utf-8", "replace"))
        json_len = resp.getheader("Inference-Header-Content-Length")
        json_len = int(json_len) if json_len is not None else len(data)
        reply = json.loads(data[:json_len])
        offset = json_len
        by_name = {}
        for out in reply.get("outputs", []):
            np_dtype = _V2_TYPES.get(out.get("datatype"), (None,))[0]
            if np_dtype is None:
                raise Fail("[InferBooster] IB_ERR_UNSUPPORTED: output '%s' has datatype %s"
                           % (out.get("name"), out.get("datatype")), "IB_ERR_UNSUPPORTED")
            shape = tuple(int(d) for d in out.get("shape", []))
            size = (out.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                if offset + size > len(data):
                    raise Fail("[InferBooster] IB_ERR_IO: the server's reply is truncated",
                               "IB_ERR_IO")
                arr = np.frombuffer(data, dtype=np_dtype, count=size // np_dtype.itemsize,
                                    offset=offset).reshape(shape).copy()
                offset += size
            else:
                arr = np.asarray(out.get("data", []), dtype=np_dtype).reshape(shape)
            by_name[out.get("name")] = arr
        try:
            return [by_name[n] for n in output_names]
        except KeyError as e:
            raise Fail("[InferBooster] IB_ERR_RUNTIME: the server did not return output %s"
                       % e, "IB_ERR_RUNTIME") from None
