"""InferBooster for Python: an ONNX Runtime-compatible InferenceSession over the C
library, and interposition that speeds up existing PyTorch and ONNX Runtime code."""

from ._lib import lib_path as _lib_path  # noqa: F401  (loads libinferbooster.so)
from .session import (  # noqa: F401
    Fail,
    InferBoosterError,
    InferenceSession,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    ModelMetadata,
    NodeArg,
    NoSuchFile,
    NotImplemented,
    RunOptions,
    RuntimeException,
    SessionOptions,
    get_available_providers,
    get_device,
)

__version__ = "0.1.0"
__all__ = [
    "Fail", "InferBoosterError", "InferenceSession", "InvalidArgument", "InvalidGraph",
    "InvalidProtobuf", "ModelMetadata", "NodeArg", "NoSuchFile", "NotImplemented",
    "RunOptions", "RuntimeException", "SessionOptions", "get_available_providers",
    "get_device", "interpose",
]


def interpose(torch=True, onnxruntime=True, **options):
    """Makes existing PyTorch / ONNX Runtime code run through InferBooster: see
    inferbooster.interpose for what is captured and when it falls back."""
    from . import interposition

    return interposition.install(torch=torch, onnxruntime=onnxruntime, **options)


def __getattr__(name):
    # inferbooster.torch imports PyTorch, so it loads only when asked for.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError("module 'inferbooster' has no attribute %r" % name)
