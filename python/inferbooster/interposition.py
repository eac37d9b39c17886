"""Interposition: routes existing PyTorch and ONNX Runtime code through InferBooster
without edits. torch.nn.Module.__call__ is patched so the outermost eval-mode module called
with gradients off is captured (see inferbooster.torch); onnxruntime.InferenceSession is
replaced by a factory that gives InferBooster's session for the models it supports and the
original for the rest. Frameworks imported later are patched when they are imported."""

import importlib.abc
import sys
import threading
import warnings

_lock = threading.Lock()
_installed = {"torch": False, "onnxruntime": False}
_wanted = set()
_server = None  # interpose(server=...): where sessions and captured modules run


class _Depth(threading.local):
    depth = 0


_tls = _Depth()


class native_scope:
    """Inside it, Module calls on this thread go straight to PyTorch (used while a
    captured module runs natively or is exported, so nested modules stay native)."""

    __slots__ = ("_saved",)

    def __enter__(self):
        self._saved = _tls.depth
        _tls.depth = self._saved + 1

    def __exit__(self, *exc):
        _tls.depth = self._saved
        return False


# ---- PyTorch ---------------------------------------------------------------------------
def _patch_torch(torch_module):
    import torch

    from . import torch as ib_torch

    ib_torch.SERVER = _server
    module_cls = torch.nn.Module
    original = module_cls.__call__
    if getattr(original, "_inferbooster_original", None) is not None:
        return  # already patched
    is_grad_enabled = torch.is_grad_enabled
    call = ib_torch.call
    tls = _tls

    def __call__(self, *args, **kwargs):
        if tls.depth:
            return original(self, *args, **kwargs)
        tls.depth = 1
        try:
            if kwargs or self.training or not args or is_grad_enabled():
                return original(self, *args, **kwargs)
            return call(self, args, original)
        finally:
            tls.depth = 0

    __call__._inferbooster_original = original
    module_cls.__call__ = __call__

    # Assigning a tensor or a submodule may replace a captured module's weights.
    epoch = ib_torch.STRUCTURE_EPOCH
    tensor_cls = torch.Tensor
    for name in ("__setattr__", "register_parameter", "register_buffer", "add_module",
                 "register_module"):
        original_method = getattr(module_cls, name, None)
        if original_method is None:
            continue

        def patched(self, key, value=None, *rest, _original=original_method, **kwargs):
            if value is None or isinstance(value, (tensor_cls, module_cls)):
                epoch[0] += 1
            return _original(self, key, value, *rest, **kwargs)

        patched._inferbooster_original = original_method
        patched.__name__ = name
        setattr(module_cls, name, patched)


def _unpatched_call(module, *args, **kwargs):
    """Calls module the way PyTorch would without interposition (for measurements)."""
    call = type(module).__call__
    with native_scope():  # nested modules stay in PyTorch too
        return getattr(call, "_inferbooster_original", call)(module, *args, **kwargs)


def _unpatch_torch():
    mod = sys.modules.get("torch")
    if mod is None:
        return
    for name in ("__call__", "__setattr__", "register_parameter", "register_buffer",
                 "add_module", "register_module"):
        current = getattr(mod.nn.Module, name, None)
        original = getattr(current, "_inferbooster_original", None)
        if original is not None:
            setattr(mod.nn.Module, name, original)


# ---- ONNX Runtime ----------------------------------------------------------------------
class _SessionFactoryMeta(type):
    def __instancecheck__(cls, obj):
        from .session import InferenceSession as IBSession

        return isinstance(obj, (IBSession, cls._original))

    def __subclasscheck__(cls, sub):
        from .session import InferenceSession as IBSession

        return issubclass(sub, (IBSession, cls._original))


def _ort_wants_cpu(providers):
    if not providers:
        return True
    for p in providers:
        name = p[0] if isinstance(p, (tuple, list)) else p
        if name not in ("CPUExecutionProvider", "InferBoosterExecutionProvider"):
            return False
    return True


def _ort_error_classes():
    """onnxruntime's exception classes by name, so code that catches them keeps working
    with InferBooster's sessions; {} when they cannot be found."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except Exception:
        return {}
    return {name: getattr(state, name) for name in
            ("Fail", "InvalidArgument", "NoSuchFile", "InvalidGraph", "InvalidProtobuf",
             "NotImplemented", "RuntimeException")
            if isinstance(getattr(state, name, None), type)}


def _make_ort_factory(original):
    from .session import InferBoosterError
    from .session import InferenceSession as BaseSession

    ort_errors = _ort_error_classes()

    def translated(e):
        cls = ort_errors.get(type(e).__name__)
        return cls(str(e)) if cls is not None else e

    class IBSession(BaseSession):
        """InferBooster's session raising onnxruntime's exception types."""

        def run(self, output_names, input_feed, run_options=None):
            try:
                return BaseSession.run(self, output_names, input_feed, run_options)
            except InferBoosterError as e:
                raise translated(e) from e

    IBSession.__name__ = IBSession.__qualname__ = "InferenceSession"

    class InferenceSession(metaclass=_SessionFactoryMeta):
        """onnxruntime.InferenceSession, interposed: InferBooster runs the models it
        supports on CPU; other models and other providers get ONNX Runtime."""

        _original = original

        def __new__(cls, path_or_bytes, sess_options=None, providers=None,
                    provider_options=None, **kwargs):
            if _ort_wants_cpu(providers):
                try:
                    if _server is not None:
                        return BaseSession(path_or_bytes, sess_options, providers,
                                           server=_server)
                    return IBSession(path_or_bytes, sess_options, providers)
                except (InferBoosterError, OSError) as e:
                    warnings.warn("inferbooster: onnxruntime runs this model: %s" % e,
                                  stacklevel=2)
            return original(path_or_bytes, sess_options, providers, provider_options,
                            **kwargs)

    InferenceSession.__name__ = InferenceSession.__qualname__ = "InferenceSession"
    InferenceSession.__module__ = getattr(original, "__module__", "onnxruntime")
    return InferenceSession


def _patch_onnxruntime(ort):
    original = getattr(ort, "InferenceSession", None)
    if original is None or isinstance(original, _SessionFactoryMeta):
        return
    ort.InferenceSession = _make_ort_factory(original)


def _unpatch_onnxruntime():
    ort = sys.modules.get("onnxruntime")
    if ort is None:
        return
    current = getattr(ort, "InferenceSession", None)
    if isinstance(current, _SessionFactoryMeta):
        ort.InferenceSession = current._original


_PATCHERS = {"torch": _patch_torch, "onnxruntime": _patch_onnxruntime}


# ---- Patching frameworks imported later ------------------------------------------------
class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Lets the normal finders load torch / onnxruntime, then patches them."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _wanted or _installed.get(fullname):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(loader, fullname)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, name):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _apply(self._name, module)

    def __getattr__(self, attr):
        return getattr(self._loader, attr)


_finder = _PostImportFinder()


def _apply(name, module):
    with _lock:
        if _installed.get(name):
            return
        try:
            _PATCHERS[name](module)
            _installed[name] = True
        except Exception as e:  # never break the user's import
            warnings.warn("inferbooster: cannot interpose %s: %s" % (name, e))


def install(torch=True, onnxruntime=True, server=None):
    """Interposes the selected frameworks (now if imported, else when imported); with
    server="http://host:port" their models run on that InferBooster server. Returns the
    names interposed so far."""
    global _server
    _server = server
    engine = sys.modules.get("inferbooster.torch")
    if engine is not None:
        engine.SERVER = server
    for name, on in (("torch", torch), ("onnxruntime", onnxruntime)):
        if not on:
            continue
        _wanted.add(name)
        if name in sys.modules:
            _apply(name, sys.modules[name])
    with _lock:
        if any(not _installed[n] for n in _wanted) and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    return sorted(n for n, done in _installed.items() if done)


def uninstall():
    """Restores the original torch.nn.Module.__call__ and onnxruntime.InferenceSession."""
    global _server
    with _lock:
        _unpatch_torch()
        _unpatch_onnxruntime()
        _wanted.clear()
        for n in _installed:
            _installed[n] = False
        _server = None
        mod = sys.modules.get("inferbooster.torch")
        if mod is not None:
            mod.SERVER = None
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
