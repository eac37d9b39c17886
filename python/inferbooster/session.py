"""InferenceSession with ONNX Runtime's Python surface over the InferBooster C library:
load a model, describe its inputs/outputs/metadata, run it on NumPy arrays."""

import ctypes
import os
import threading

import numpy as np

from . import _lib


# ---- Errors: ONNX Runtime's exception names (onnxruntime_pybind11_state) -------------
class InferBoosterError(RuntimeError):
    """A failure reported by the library; .status is its name ("IB_ERR_SHAPE")."""

    def __init__(self, message, status="IB_ERR_INTERNAL"):
        super().__init__(message)
        self.status = status


class Fail(InferBoosterError):
    pass


class InvalidArgument(InferBoosterError):
    pass


class NoSuchFile(InferBoosterError):
    pass


class InvalidProtobuf(InferBoosterError):
    pass


class InvalidGraph(InferBoosterError):
    pass


class NotImplemented(InferBoosterError):  # noqa: A001 (ONNX Runtime's name)
    pass


class RuntimeException(InferBoosterError):
    pass


_Unsupported = NotImplemented  # ONNX Runtime's name shadows the builtin; raise the alias


_STATUS_CLASS = {
    _lib.IB_ERR_INVALID_ARGUMENT: InvalidArgument,
    _lib.IB_ERR_INVALID_MODEL: InvalidGraph,
    _lib.IB_ERR_UNSUPPORTED: NotImplemented,
    _lib.IB_ERR_OUT_OF_MEMORY: Fail,
    _lib.IB_ERR_IO: NoSuchFile,
    _lib.IB_ERR_SHAPE: InvalidArgument,
    _lib.IB_ERR_RUNTIME: RuntimeException,
    _lib.IB_ERR_INTERNAL: Fail,
}


def _status_name(status):
    name = _lib.ib_status_name(status)
    return name.decode() if name else "IB_ERR_%d" % status


def _raise(status, what=None):
    """Raises the exception for `status` with the calling thread's library message."""
    msg = (_lib.ib_last_error() or b"").decode("utf-8", "replace")
    name = _status_name(status)
    text = "[InferBooster] %s: %s" % (name, msg or what or "failed")
    raise _STATUS_CLASS.get(status, Fail)(text, name)


# ---- Data types ------------------------------------------------------------------------
# ib_dtype code -> (NumPy dtype or None, ONNX Runtime type string)
_DTYPES = {
    1: (np.dtype(np.float32), "tensor(float)"),
    2: (np.dtype(np.uint8), "tensor(uint8)"),
    3: (np.dtype(np.int8), "tensor(int8)"),
    4: (np.dtype(np.uint16), "tensor(uint16)"),
    5: (np.dtype(np.int16), "tensor(int16)"),
    6: (np.dtype(np.int32), "tensor(int32)"),
    7: (np.dtype(np.int64), "tensor(int64)"),
    8: (None, "tensor(string)"),
    9: (np.dtype(np.bool_), "tensor(bool)"),
    10: (np.dtype(np.float16), "tensor(float16)"),
    11: (np.dtype(np.float64), "tensor(double)"),
    12: (np.dtype(np.uint32), "tensor(uint32)"),
    13: (np.dtype(np.uint64), "tensor(uint64)"),
    14: (np.dtype(np.complex64), "tensor(complex64)"),
    15: (np.dtype(np.complex128), "tensor(complex128)"),
    16: (None, "tensor(bfloat16)"),
}
_NP_TO_IB = {np_dtype: code for code, (np_dtype, _) in _DTYPES.items() if np_dtype is not None}


def _type_string(code):
    entry = _DTYPES.get(code)
    return entry[1] if entry else "tensor(undefined)"


# ---- Descriptions ------------------------------------------------------------------
class NodeArg:
    """An input or output: .name, .type ('tensor(float)'), .shape (ints; the symbolic
    name or None where the model does not fix a dimension)."""

    __slots__ = ("name", "type", "shape", "_dtype_code")

    def __init__(self, name, type_, shape, dtype_code):
        self.name = name
        self.type = type_
        self.shape = shape
        self._dtype_code = dtype_code

    def __repr__(self):
        return "NodeArg(name=%r, type=%r, shape=%r)" % (self.name, self.type, self.shape)


def _node_arg(info):
    name = info.name.decode("utf-8", "replace") if info.name else ""
    if info.rank < 0:
        shape = None
    else:
        shape = []
        for d in range(min(info.rank, _lib.IB_MAX_RANK)):
            if info.shape[d] >= 0:
                shape.append(int(info.shape[d]))
            elif info.dim_names[d]:
                shape.append(info.dim_names[d].decode("utf-8", "replace"))
            else:
                shape.append(None)
    return NodeArg(name, _type_string(info.dtype), shape, info.dtype)


class ModelMetadata:
    """get_modelmeta(): what ONNX Runtime's ModelMetadata holds: producer_name,
    graph_name, domain, description (the model's doc_string), graph_description (the
    graph's doc_string), version (model_version) and custom_metadata_map (the model's
    metadata_props; where a key repeats, the last value, as ONNX Runtime keeps it). Also
    producer_version, ir_version and opset, which ONNX Runtime does not give."""

    def __init__(self, producer_name="", graph_name="", domain="", description="",
                 graph_description="", version=0, custom_metadata_map=None,
                 producer_version="", ir_version=0, opset=0):
        self.producer_name = producer_name
        self.graph_name = graph_name
        self.domain = domain
        self.description = description
        self.graph_description = graph_description
        self.version = version
        self.custom_metadata_map = dict(custom_metadata_map or {})
        self.producer_version = producer_version
        self.ir_version = ir_version
        self.opset = opset

    def __repr__(self):
        return ("ModelMetadata(producer_name=%r, graph_name=%r, domain=%r, version=%r)"
                % (self.producer_name, self.graph_name, self.domain, self.version))


# ---- Options -----------------------------------------------------------------------
class SessionOptions:
    """The options ONNX Runtime code sets. intra_op_num_threads (0: the CPUs this
    process may use) sizes the session's thread pool; the others are accepted and kept
    so existing code runs unchanged."""

    def __init__(self):
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.graph_optimization_level = 99
        self.execution_mode = 0
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.enable_profiling = False
        self.enable_mem_pattern = True
        self.enable_cpu_mem_arena = True
        self.optimized_model_filepath = ""
        self.use_reference = False
        self._config = {}

    def add_session_config_entry(self, key, value):
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key):
        return self._config[str(key)]


class RunOptions:
    """Accepted for compatibility; InferBooster runs have no per-run options yet."""

    def __init__(self):
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.run_tag = ""
        self.terminate = False


# Serialises lazy model loads (get_modelmeta on a session made without an ib_model).
_MODEL_LOAD_LOCK = threading.Lock()

PROVIDERS = ["InferBoosterExecutionProvider", "CPUExecutionProvider"]


def get_available_providers():
    return list(PROVIDERS)


def get_device():
    return "CPU"


# ---- Outputs: library buffers handed to NumPy without a copy ---------------------
class _LibraryBuffer:
    """Owns one output buffer the library allocated; NumPy keeps it as the array's base
    and releasing the last view frees it (ib_tensor_release). The run already made a
    fresh buffer for each output, so handing it over saves a copy of every result."""

    __slots__ = ("_tensor", "__array_interface__")

    def __init__(self, tensor, np_dtype, shape):
        self._tensor = tensor
        self.__array_interface__ = {
            "version": 3,
            "shape": shape,
            "typestr": np_dtype.str,
            "data": (tensor.data, False),
        }

    def __del__(self, _release=_lib.ib_tensor_release, _byref=ctypes.byref):
        _release(_byref(self._tensor))


def _to_numpy(tensor):
    """Turns a library-owned output into a NumPy array, taking ownership of its data."""
    np_dtype = _DTYPES.get(tensor.dtype, (None, None))[0]
    shape = tuple(tensor.shape[:tensor.rank])
    if np_dtype is None:
        _lib.ib_tensor_release(ctypes.byref(tensor))
        raise _Unsupported(
            "[InferBooster] IB_ERR_UNSUPPORTED: output of type %s has no NumPy equivalent"
            % _type_string(tensor.dtype), "IB_ERR_UNSUPPORTED")
    if not tensor.data or tensor.nbytes == 0:
        _lib.ib_tensor_release(ctypes.byref(tensor))
        return np.empty(shape, dtype=np_dtype)
    if not tensor.owns_data:  # not expected from a run, but never alias library memory
        return np.array(np.asarray(_LibraryBuffer(tensor, np_dtype, shape)))
    return np.asarray(_LibraryBuffer(tensor, np_dtype, shape))


# ---- The session -----------------------------------------------------------------------
class InferenceSession:
    """onnxruntime.InferenceSession's surface, run by InferBooster.

    path_or_bytes: a model file path (str / os.PathLike) or the serialized model bytes.
    sess_options: SessionOptions (or ONNX Runtime's; intra_op_num_threads is read).
    providers: accepted for compatibility; InferBooster runs every model itself.
    server: "http://host:port" of an `inferbooster serve` server to run the model on
    (model_name= names a model already in its repository).
    """

    def __new__(cls, *args, server=None, **kwargs):
        # server="http://host:port" gives the remote session (inferbooster.remote).
        if server is not None and cls is InferenceSession:
            from .remote import RemoteSession

            return super().__new__(RemoteSession)
        return super().__new__(cls)

    def __init__(self, path_or_bytes, sess_options=None, providers=None,
                 provider_options=None, **kwargs):
        self._model = None
        self._session = None
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        self._model_path = None
        self._model_bytes = None
        opts = _lib.SessionOptions()
        _lib.ib_session_options_init(ctypes.byref(opts))
        threads = getattr(self._sess_options, "intra_op_num_threads", 0) or 0
        opts.num_threads = int(threads)
        use_ref = getattr(self._sess_options, "use_reference", None)
        if use_ref is not None:
            opts.use_reference = 1 if use_ref else opts.use_reference
        session = ctypes.c_void_p()
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            data = bytes(path_or_bytes)
            self._model_bytes = data
            model = ctypes.c_void_p()
            st = _lib.ib_model_load_bytes(data, len(data), None, ctypes.byref(model))
            if st:
                _raise(st)
            self._model = model
            st = _lib.ib_session_create(model, ctypes.byref(opts), ctypes.byref(session))
        elif isinstance(path_or_bytes, (str, os.PathLike)):
            path = os.fspath(path_or_bytes)
            self._model_path = path
            if not os.path.exists(path):
                raise NoSuchFile("[InferBooster] IB_ERR_IO: Load model from %s failed: "
                                 "file does not exist" % path, "IB_ERR_IO")
            # The session owns its model; a cache hit does not even parse the file.
            st = _lib.ib_session_create_from_file(os.fsencode(path), ctypes.byref(opts),
                                                  ctypes.byref(session))
        else:
            raise TypeError("Unable to load from type '%s'" % type(path_or_bytes).__name__)
        if st:
            _raise(st)
        self._session = session
        self._inputs_meta = self._describe(_lib.ib_session_input_count,
                                           _lib.ib_session_input_info)
        self._outputs_meta = self._describe(_lib.ib_session_output_count,
                                            _lib.ib_session_output_info)
        self._input_dtypes = {a.name: _DTYPES.get(a._dtype_code, (None,))[0]
                              for a in self._inputs_meta}
        self._output_names = [a.name for a in self._outputs_meta]
        self._in_names_c = (ctypes.c_char_p * max(len(self._inputs_meta), 1))(
            *[a.name.encode() for a in self._inputs_meta])
        self._out_names_c = (ctypes.c_char_p * max(len(self._output_names), 1))(
            *[n.encode() for n in self._output_names])
        self._providers = list(PROVIDERS)

    def _describe(self, count_fn, info_fn):
        args = []
        for i in range(count_fn(self._session)):
            info = _lib.ValueInfo()
            st = info_fn(self._session, i, ctypes.byref(info))
            if st:
                _raise(st)
            args.append(_node_arg(info))
        return args

    def __del__(self):
        # Module globals may already be gone at interpreter exit; the process is then
        # freeing everything anyway.
        try:
            if self._session is not None:
                _lib.ib_session_destroy(self._session)
            if self._model is not None:
                _lib.ib_model_destroy(self._model)
        except Exception:
            pass
        self._session = self._model = None

    # -- description --
    def get_inputs(self):
        return list(self._inputs_meta)

    def get_outputs(self):
        return list(self._outputs_meta)

    def get_overridable_initializers(self):
        return []

    def _model_handle(self):
        """The session's ib_model; loaded now (and kept) when the session was made without
        one (a cache hit need not parse the model)."""
        if self._model is not None:
            return self._model
        with _MODEL_LOAD_LOCK:
            if self._model is not None:
                return self._model
            model = ctypes.c_void_p()
            if self._model_bytes is not None:
                st = _lib.ib_model_load_bytes(self._model_bytes, len(self._model_bytes), None,
                                              ctypes.byref(model))
            elif self._model_path is not None:
                st = _lib.ib_model_load_file(os.fsencode(self._model_path), ctypes.byref(model))
            else:
                raise InvalidArgument("[InferBooster] IB_ERR_INVALID_ARGUMENT: the session "
                                      "has no model to describe", "IB_ERR_INVALID_ARGUMENT")
            if st:
                _raise(st)
            self._model = model
        return self._model

    def get_modelmeta(self):
        if _lib.ib_model_get_metadata is None:
            return ModelMetadata()
        md = _lib.ModelMetadata()
        st = _lib.ib_model_get_metadata(self._model_handle(), ctypes.byref(md))
        if st:
            _raise(st)

        def s(b):
            return b.decode("utf-8", "replace") if b else ""

        props = {}
        for i in range(md.n_props):  # file order: a repeated key keeps its last value
            props[s(md.prop_keys[i])] = s(md.prop_values[i])
        return ModelMetadata(producer_name=s(md.producer_name), graph_name=s(md.graph_name),
                             domain=s(md.domain), description=s(md.doc_string),
                             graph_description=s(md.graph_doc_string),
                             version=int(md.model_version), custom_metadata_map=props,
                             producer_version=s(md.producer_version),
                             ir_version=int(md.ir_version), opset=int(md.opset))

    @property
    def executor(self):
        """How the library runs this model: "compiled" or "reference"."""
        if _lib.ib_session_executor is None:
            return "reference"
        name = _lib.ib_session_executor(self._session)
        return name.decode() if name else "unknown"

    def get_providers(self):
        return list(self._providers)

    def get_provider_options(self):
        return {p: {} for p in self._providers}

    def set_providers(self, providers=None, provider_options=None):
        pass

    def disable_fallback(self):
        pass

    def enable_fallback(self):
        pass

    def get_session_options(self):
        return self._sess_options

    def end_profiling(self):
        return ""

    @property
    def _model_path_or_bytes(self):
        return self._model_path if self._model_path is not None else self._model_bytes

    # -- running --
    def _as_input(self, name, value):
        if isinstance(value, np.ndarray):
            arr = value
        else:
            # Python scalars and lists take the model's dtype, as ONNX Runtime users
            # expect of `{"x": [[1.0, 2.0]]}`.
            want = self._input_dtypes.get(name)
            arr = np.asarray(value, dtype=want)
        if not arr.flags.c_contiguous or not arr.dtype.isnative:
            arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
        return arr

    def run(self, output_names, input_feed, run_options=None):
        """Runs the model: input_feed maps input names to arrays; returns a list of NumPy
        arrays, one per name in output_names (all outputs when it is None or empty)."""
        n_in = len(input_feed)
        names_in = (ctypes.c_char_p * max(n_in, 1))()
        tensors_in = (_lib.Tensor * max(n_in, 1))()
        keep = []  # the arrays whose memory the tensors borrow
        for i, (name, value) in enumerate(input_feed.items()):
            arr = self._as_input(name, value)
            _fill(tensors_in[i], arr, name)
            keep.append(arr)
            names_in[i] = name.encode() if isinstance(name, str) else bytes(name)
        if not output_names:
            n_out, names_out = len(self._output_names), self._out_names_c
        else:
            n_out = len(output_names)
            names_out = (ctypes.c_char_p * max(n_out, 1))(
                *[n.encode() if isinstance(n, str) else bytes(n) for n in output_names])
        return self._invoke(n_in, names_in, tensors_in, n_out, names_out)

    def _run_positional(self, arrays):
        """Runs with one array per model input, in model order, returning every output:
        the interposition's hot path (no dict, no name encoding)."""
        n_in = len(self._inputs_meta)
        if len(arrays) != n_in:
            raise InvalidArgument("[InferBooster] IB_ERR_INVALID_ARGUMENT: %d inputs given, "
                                  "the model has %d" % (len(arrays), n_in),
                                  "IB_ERR_INVALID_ARGUMENT")
        tensors_in = (_lib.Tensor * max(n_in, 1))()
        keep = []
        for i, arr in enumerate(arrays):
            if not arr.flags.c_contiguous or not arr.dtype.isnative:
                arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
            _fill(tensors_in[i], arr, self._inputs_meta[i].name)
            keep.append(arr)
        return self._invoke(n_in, self._in_names_c, tensors_in, len(self._output_names),
                            self._out_names_c)

    def _invoke(self, n_in, names_in, tensors_in, n_out, names_out):
        tensors_out = (_lib.Tensor * max(n_out, 1))()
        st = _lib.ib_session_run(self._session, n_in, names_in, tensors_in, n_out, names_out,
                                 tensors_out)
        if st:
            _raise(st)
        results = []
        for o in range(n_out):
            # Each output's ownership moves into its array, even when a later one fails.
            try:
                results.append(_to_numpy(tensors_out[o]))
            except InferBoosterError:
                for rest in range(o + 1, n_out):
                    _lib.ib_tensor_release(ctypes.byref(tensors_out[rest]))
                raise
        return results


def _fill(t, arr, name):
    """Points tensor t at arr's memory (arr: C-contiguous, native byte order)."""
    code = _NP_TO_IB.get(arr.dtype)
    if code is None:
        raise InvalidArgument("[InferBooster] IB_ERR_INVALID_ARGUMENT: input '%s': NumPy "
                              "dtype %s is not supported" % (name, arr.dtype),
                              "IB_ERR_INVALID_ARGUMENT")
    if arr.ndim > _lib.IB_MAX_RANK:
        raise InvalidArgument("[InferBooster] IB_ERR_INVALID_ARGUMENT: input '%s': rank %d "
                              "exceeds %d" % (name, arr.ndim, _lib.IB_MAX_RANK),
                              "IB_ERR_INVALID_ARGUMENT")
    t.dtype = code
    t.rank = arr.ndim
    t.shape[:arr.ndim] = arr.shape
    t.data = arr.ctypes.data
    t.nbytes = arr.nbytes
