"""ctypes binding of the InferBooster C API (include/inferbooster/inferbooster.h): finds
libinferbooster.so, mirrors its structs exactly and declares every function's signature."""

import ctypes
import os

IB_MAX_RANK = 8

# ib_status values (IB_STATUS_LIST).
IB_OK = 0
IB_ERR_INVALID_ARGUMENT = 1
IB_ERR_INVALID_MODEL = 2
IB_ERR_UNSUPPORTED = 3
IB_ERR_OUT_OF_MEMORY = 4
IB_ERR_IO = 5
IB_ERR_SHAPE = 6
IB_ERR_RUNTIME = 7
IB_ERR_INTERNAL = 8


class Tensor(ctypes.Structure):
    """struct ib_tensor."""

    _fields_ = [
        ("dtype", ctypes.c_int),
        ("rank", ctypes.c_int32),
        ("shape", ctypes.c_int64 * IB_MAX_RANK),
        ("data", ctypes.c_void_p),
        ("nbytes", ctypes.c_size_t),
        ("owns_data", ctypes.c_int32),
    ]


class ValueInfo(ctypes.Structure):
    """struct ib_value_info."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int),
        ("rank", ctypes.c_int32),
        ("shape", ctypes.c_int64 * IB_MAX_RANK),
        ("dim_names", ctypes.c_char_p * IB_MAX_RANK),
    ]


class SessionOptions(ctypes.Structure):
    """struct ib_session_options."""

    _fields_ = [
        ("num_threads", ctypes.c_int32),
        ("target", ctypes.c_char_p),
        ("use_reference", ctypes.c_int32),
        ("no_cache", ctypes.c_int32),
        ("cache_dir", ctypes.c_char_p),
        ("tuning_db", ctypes.c_char_p),
    ]


class ModelMetadata(ctypes.Structure):
    """struct ib_model_metadata."""

    _fields_ = [
        ("producer_name", ctypes.c_char_p),
        ("producer_version", ctypes.c_char_p),
        ("domain", ctypes.c_char_p),
        ("graph_name", ctypes.c_char_p),
        ("model_version", ctypes.c_int64),
        ("ir_version", ctypes.c_int64),
        ("opset", ctypes.c_int64),
        ("doc_string", ctypes.c_char_p),
        ("graph_doc_string", ctypes.c_char_p),
        ("n_props", ctypes.c_size_t),
        ("prop_keys", ctypes.POINTER(ctypes.c_char_p)),
        ("prop_values", ctypes.POINTER(ctypes.c_char_p)),
    ]


_LIB_NAME = "libinferbooster.so"


def _candidates():
    env = os.environ.get("INFERBOOSTER_LIB")
    if env:
        # An explicit choice is the only one tried, so a wrong path is an error, not a
        # silent fall back to some other build.
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    found = [os.path.join(here, _LIB_NAME)]
    # Running from the source checkout: python/inferbooster -> <repo>/build*/.
    repo = os.path.dirname(os.path.dirname(here))
    found.append(os.path.join(repo, "build", _LIB_NAME))
    try:
        others = sorted(d for d in os.listdir(repo) if d.startswith("build"))
    except OSError:
        others = []
    found.extend(os.path.join(repo, d, _LIB_NAME) for d in others if d != "build")
    found.append(_LIB_NAME)  # the dynamic loader's search path
    return found


def _load():
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append("%s: not found" % path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    raise ImportError(
        "inferbooster: cannot load %s (set INFERBOOSTER_LIB to its path): %s"
        % (_LIB_NAME, "; ".join(errors))
    )


lib, lib_path = _load()

_P = ctypes.POINTER
_c = ctypes.c_void_p  # opaque handles (ib_model *, ib_session *)


def _declare(name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


ib_status_name = _declare("ib_status_name", ctypes.c_char_p, ctypes.c_int)
ib_last_error = _declare("ib_last_error", ctypes.c_char_p)
ib_dtype_name = _declare("ib_dtype_name", ctypes.c_char_p, ctypes.c_int)
ib_dtype_size = _declare("ib_dtype_size", ctypes.c_size_t, ctypes.c_int)
ib_tensor_element_count = _declare("ib_tensor_element_count", ctypes.c_int64, _P(Tensor))
ib_tensor_release = _declare("ib_tensor_release", None, _P(Tensor))
ib_model_load_file = _declare("ib_model_load_file", ctypes.c_int, ctypes.c_char_p, _P(_c))
ib_model_load_bytes = _declare(
    "ib_model_load_bytes", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
    _P(_c))
ib_model_destroy = _declare("ib_model_destroy", None, _c)
ib_model_input_count = _declare("ib_model_input_count", ctypes.c_size_t, _c)
ib_model_output_count = _declare("ib_model_output_count", ctypes.c_size_t, _c)
ib_model_input_info = _declare(
    "ib_model_input_info", ctypes.c_int, _c, ctypes.c_size_t, _P(ValueInfo))
ib_model_output_info = _declare(
    "ib_model_output_info", ctypes.c_int, _c, ctypes.c_size_t, _P(ValueInfo))
ib_session_options_init = _declare("ib_session_options_init", None, _P(SessionOptions))
ib_session_create = _declare(
    "ib_session_create", ctypes.c_int, _c, _P(SessionOptions), _P(_c))
ib_session_create_from_file = _declare(
    "ib_session_create_from_file", ctypes.c_int, ctypes.c_char_p, _P(SessionOptions), _P(_c))
ib_session_input_count = _declare("ib_session_input_count", ctypes.c_size_t, _c)
ib_session_output_count = _declare("ib_session_output_count", ctypes.c_size_t, _c)
ib_session_input_info = _declare(
    "ib_session_input_info", ctypes.c_int, _c, ctypes.c_size_t, _P(ValueInfo))
ib_session_output_info = _declare(
    "ib_session_output_info", ctypes.c_int, _c, ctypes.c_size_t, _P(ValueInfo))
ib_session_destroy = _declare("ib_session_destroy", None, _c)
ib_session_run = _declare(
    "ib_session_run", ctypes.c_int, _c, ctypes.c_size_t, _P(ctypes.c_char_p), _P(Tensor),
    ctypes.c_size_t, _P(ctypes.c_char_p), _P(Tensor))

try:
    ib_model_get_metadata = _declare(
        "ib_model_get_metadata", ctypes.c_int, _c, _P(ModelMetadata))
except AttributeError:  # an older library: metadata then comes back empty
    ib_model_get_metadata = None

try:
    ib_session_executor = _declare("ib_session_executor", ctypes.c_char_p, _c)
except AttributeError:  # an older library
    ib_session_executor = None
