"""PyTorch capture: an nn.Module exported with its actual inputs (torch.onnx.export,
opset 13), checked against PyTorch's own result, then run by InferBooster for later calls
with the same input signature; any failure falls back to PyTorch with one warning.

inferbooster.torch.optimize(module, example_inputs) is the explicit form; the
interposition (inferbooster.interpose) routes Module.__call__ through the same engine.

A capture whose compile would stall the caller (a large exported model, see
BACKGROUND_MIN_BYTES) compiles in a background thread instead: the module keeps running in
PyTorch until the compiled artifact has been checked, then later calls switch to it."""

import ctypes
import io
import os
import sys
import threading
import warnings
import weakref

import numpy as np
import torch

from . import _lib
from .session import InferBoosterError, InferenceSession, SessionOptions, _raise

OPSET = 13
MAX_SIGNATURES = 4  # compiled input signatures per module; further ones run natively
MAX_RECAPTURES = 4  # re-exports after the weights changed, before giving the module up
# A compiled result must match PyTorch's on the capture call, and on a second input of
# other values (tracing freezes value-dependent branches), within np.allclose's
# tolerances.
CHECK_RTOL = 1e-3
CHECK_ATOL = 1e-4
# Bumped (by the interposition) whenever a module gets a tensor or a submodule assigned,
# so replaced weights are noticed without walking every module's parameters per call.
STRUCTURE_EPOCH = [0]
# "http://host:port": captured modules run on that InferBooster server (interpose(server=)).
SERVER = None
# Exported models above either size compile in a background thread while the module runs
# natively. Measured here (`inferbooster compile --no-cache`, 2 busy cores): a 3-node
# 0.3 MB MLP took 1.0 s, a 155-node 54 KB transformer encoder 4.4 s, MobileNetV2 (209
# nodes, 14 MB) 32 s, ResNet-18 (65 nodes, 47 MB) 66 s. Compile time follows the kernels
# generated (nodes) and, for convolutional nets, the weights (each large conv is its own
# kernel), so both count. Below them a compile costs about the C compiler's start and the
# first call may wait for it (the second call is then compiled, deterministically); above
# them the first call would stall for seconds. Waiting costs little in return: PyTorch runs
# meanwhile, and on a cache hit the switch comes after the load (ResNet-50: ~50 ms).
BACKGROUND_MIN_BYTES = 1 << 20
BACKGROUND_MIN_NODES = 64
# INFERBOOSTER_TORCH_BACKGROUND=always|never overrides the sizes (always: tests, which
# then need no large model; never: a first call that returns compiled).
BACKGROUND_ENV = "INFERBOOSTER_TORCH_BACKGROUND"


class FallbackWarning(UserWarning):
    """A module runs natively in PyTorch because InferBooster could not take it."""


class _Unsupported(Exception):
    """Why a module or a call cannot be compiled (the fall-back warning's text)."""


# ---- Output structure: flatten a module's result, rebuild it from a flat list ----
def _flatten(value, out):
    """Appends value's tensors to out; returns a rebuild spec."""
    if isinstance(value, torch.Tensor):
        out.append(value)
        return None
    if isinstance(value, (tuple, list)):
        specs = [_flatten(v, out) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return ("namedtuple", type(value), specs)
        return (type(value), specs)
    if isinstance(value, dict):
        keys = list(value.keys())
        return ("dict", type(value), keys, [_flatten(value[k], out) for k in keys])
    raise _Unsupported("the module returns %s, not tensors" % type(value).__name__)


def _flatten_list(value):
    out = []
    _flatten(value, out)
    return out


def _rebuild(spec, it):
    if spec is None:
        return next(it)
    if spec[0] == "namedtuple":
        return spec[1](*[_rebuild(s, it) for s in spec[2]])
    if spec[0] == "dict":
        return spec[1]((k, _rebuild(s, it)) for k, s in zip(spec[2], spec[3]))
    return spec[0](_rebuild(s, it) for s in spec[1])


# ---- One compiled signature ---------------------------------------------------------
_TORCH_TO_IB = {
    torch.float32: 1, torch.uint8: 2, torch.int8: 3, torch.int16: 5, torch.int32: 6,
    torch.int64: 7, torch.bool: 9, torch.float16: 10, torch.float64: 11,
    torch.complex64: 14, torch.complex128: 15, torch.bfloat16: 16,
}


def _tensor_template(shapes_dtypes):
    """The bytes of an ib_tensor array with dtype, rank, shape and nbytes filled in: a
    signature fixes all of them, so a call only sets the data pointers."""
    arr = (_lib.Tensor * max(len(shapes_dtypes), 1))()
    for t, (shape, dtype) in zip(arr, shapes_dtypes):
        code = _TORCH_TO_IB.get(dtype)
        if code is None or len(shape) > _lib.IB_MAX_RANK:
            raise _Unsupported("tensors of %s%s are not supported" % (dtype, tuple(shape)))
        t.dtype = code
        t.rank = len(shape)
        t.shape[:len(shape)] = list(shape)
        n = 1
        for d in shape:
            n *= d
        t.nbytes = n * torch.empty((), dtype=dtype).element_size()
    return bytes(arr), type(arr)


class _Compiled:
    """A captured signature: runs the session straight on the tensors' memory. Inputs
    are passed by pointer and outputs are written into fresh torch tensors of the
    shapes the capture saw, so the hot path makes no NumPy arrays and no copies."""

    __slots__ = ("sig", "session", "spec", "single", "in_bytes", "in_type", "out_bytes", "out_type",
                 "out_meta", "n_in", "n_out", "handle", "in_names", "out_names")

    def __init__(self, session, spec, args, flat_outputs):
        self.session = session
        self.spec = spec
        self.single = spec is None
        self.in_bytes, self.in_type = _tensor_template([(a.shape, a.dtype) for a in args])
        self.out_meta = [(tuple(o.shape), o.dtype) for o in flat_outputs]
        self.out_bytes, self.out_type = _tensor_template(self.out_meta)
        self.n_in = len(args)
        self.n_out = len(flat_outputs)
        self.handle = session._session
        self.in_names = session._in_names_c
        self.out_names = session._out_names_c

    def __call__(self, args):
        ins = self.in_type.from_buffer_copy(self.in_bytes)
        keep = []
        for t, a in zip(ins, args):
            if not a.is_contiguous():
                a = a.contiguous()
                keep.append(a)
            t.data = a.data_ptr()
        outs = self.out_type.from_buffer_copy(self.out_bytes)
        results = [torch.empty(shape, dtype=dtype) for shape, dtype in self.out_meta]
        for t, r in zip(outs, results):
            t.data = r.data_ptr()
        st = _lib.ib_session_run(self.handle, self.n_in, self.in_names, ins, self.n_out,
                                 self.out_names, outs)
        if st:
            _raise(st)
        for t, r in zip(outs, results):
            # A buffer the library could not use (a shape that depends on values) comes
            # back library-owned: give it back and let PyTorch run this call.
            if t.owns_data or tuple(t.shape[:t.rank]) != r.shape:
                for u in outs:
                    if u.owns_data:
                        _lib.ib_tensor_release(ctypes.byref(u))
                raise _Unsupported("an output's shape depends on the input values")
        if self.single:
            return results[0]
        return _rebuild(self.spec, iter(results))


class _RemoteCompiled:
    """A captured signature run by an InferBooster server (interpose(server=...))."""

    __slots__ = ("sig", "session", "spec")

    def __init__(self, session, spec):
        self.session = session
        self.spec = spec

    def __call__(self, args):
        outs = self.session._run_positional([a.detach().numpy() for a in args])
        return _rebuild(self.spec, iter([torch.from_numpy(o) for o in outs]))


def _signature(args):
    """The input signature a compiled artifact is specific to; None when the inputs are
    not all strided CPU tensors."""
    sig = []
    for a in args:
        if not isinstance(a, torch.Tensor) or a.device.type != "cpu":
            return None
        sig.append((a.dtype, a.shape))
    return tuple(sig)


def _weights_of(module):
    return list(module.parameters()) + list(module.buffers())


def _weights_version(tensors):
    # Every in-place write (load_state_dict, optimizer steps, copy_) bumps _version.
    return sum(t._version for t in tensors)


def _has_hooks(module):
    from torch.nn.modules import module as module_impl

    if (module_impl._global_forward_hooks or module_impl._global_forward_pre_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def _thread_count():
    # Follow the threads PyTorch was told to use (torch.set_num_threads), so both
    # paths compete for the same cores.
    return max(1, torch.get_num_threads())


def _export(module, args):
    """torch.onnx.export of module on args; returns the serialized model."""
    buf = io.BytesIO()
    # Gradients on while tracing: PyTorch's inference fast paths (the fused
    # _transformer_encoder_layer_fwd of nn.TransformerEncoderLayer) have no ONNX export
    # and are only taken with gradients off; the traced ops compute the same function.
    with torch.inference_mode(False), torch.enable_grad(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Inference tensors cannot enter the tracer outside inference mode; copies can.
        ex_args = tuple(a.clone() if a.is_inference() else a for a in args)
        torch.onnx.export(module, ex_args, buf, opset_version=OPSET,
                          input_names=["input_%d" % i for i in range(len(args))],
                          do_constant_folding=True)
    return buf.getvalue()


class _ModuleState:
    """What the engine knows of one module: its compiled signatures (None for a
    signature that failed), and whether it warned already."""

    __slots__ = ("compiled", "warned", "disabled", "weights", "version", "epoch", "recaptures",
                 "lock", "compiled_calls", "native_calls", "captures", "generation",
                 "deferred_warning", "__weakref__")

    def __init__(self, module):
        self.compiled = {}
        self.warned = False
        self.disabled = False
        self.weights = _weights_of(module)
        self.version = _weights_version(self.weights)
        self.epoch = STRUCTURE_EPOCH[0]
        self.recaptures = 0
        self.lock = threading.Lock()
        self.compiled_calls = 0
        self.native_calls = 0
        self.captures = 0
        # Bumped when the compiled signatures are dropped (the weights changed), so a
        # background compile of the old weights is not installed.
        self.generation = 0
        # A background compile's failure, warned by the next call in the user's thread.
        self.deferred_warning = None


_states = weakref.WeakKeyDictionary()


def _warn(module, state, reason):
    if state.warned:
        return
    state.warned = True
    warnings.warn("inferbooster: %s runs in PyTorch: %s"
                  % (type(module).__name__, reason), FallbackWarning,
                  stacklevel=_user_stacklevel())


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def _user_stacklevel():
    """The stacklevel of the first caller outside inferbooster and torch, so the warning
    names the user's line that called the module."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        path = frame.f_code.co_filename
        if not (path.startswith(_PACKAGE_DIR) or path.startswith(_TORCH_DIR)):
            return level
        frame = frame.f_back
        level += 1
    return 1


def _check(got_value, want_flat, where):
    got = _flatten_list(got_value)
    if len(got) != len(want_flat):
        raise _Unsupported("%d outputs instead of %d%s" % (len(got), len(want_flat), where))
    for i, (g, want) in enumerate(zip(got, want_flat)):
        g = g.numpy()
        w = want.detach().numpy()
        if g.shape != w.shape or g.dtype != w.dtype:
            raise _Unsupported("output %d is %s%s, PyTorch gives %s%s%s"
                               % (i, g.dtype, g.shape, w.dtype, w.shape, where))
        if not np.allclose(g, w, rtol=CHECK_RTOL, atol=CHECK_ATOL, equal_nan=True):
            diff = np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))
            raise _Unsupported("output %d differs from PyTorch's (max |diff| %.3g)%s"
                               % (i, diff, where))


def _failure_text(e):
    if isinstance(e, (_Unsupported, InferBoosterError)):
        return str(e)
    # export errors come in many types; all mean "run natively"
    text = str(e).strip()
    return "capture failed: %s: %s" % (type(e).__name__, text.splitlines()[0] if text else "")


def _build(onnx_bytes, spec, args, flat, other, other_want):
    """Loads the exported model and checks it against PyTorch's results: `flat` for args,
    `other_want` (None: not checked) for `other`. Returns the runnable signature; raises
    on anything that means "run natively"."""
    opts = SessionOptions()
    opts.intra_op_num_threads = _thread_count()
    session = InferenceSession(onnx_bytes, opts, server=SERVER)
    if len(session.get_inputs()) != len(args):
        raise _Unsupported("the exported graph has %d inputs for %d arguments"
                           % (len(session.get_inputs()), len(args)))
    if len(session.get_outputs()) != len(flat):
        raise _Unsupported("the exported graph has %d outputs for %d result tensors"
                           % (len(session.get_outputs()), len(flat)))
    if SERVER is None:
        compiled = _Compiled(session, spec, args, flat)
    else:
        compiled = _RemoteCompiled(session, spec)
    _check(compiled(args), flat, "")
    if other_want is not None:
        _check(compiled(other), other_want, " on other input values (value-dependent "
               "control flow?)")
    return compiled


def _node_count(onnx_bytes):
    """Nodes of the exported main graph (ModelProto.graph = 7, GraphProto.node = 1), read
    off the protobuf wire format; -1 if it cannot be read."""

    def fields(buf, lo, hi):
        pos = lo
        while pos < hi:
            key, pos = varint(buf, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = varint(buf, pos)
                yield number, None, None
            elif wire == 2:
                n, pos = varint(buf, pos)
                yield number, pos, pos + n
                pos += n
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                raise ValueError("wire type %d" % wire)

    def varint(buf, pos):
        value = shift = 0
        while True:
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, pos
            shift += 7

    try:
        view = memoryview(onnx_bytes)
        for number, lo, hi in fields(view, 0, len(view)):
            if number == 7 and lo is not None:
                return sum(1 for n, _, _ in fields(view, lo, hi) if n == 1)
    except (IndexError, ValueError):
        pass
    return -1


def _compiles_in_background(onnx_bytes):
    mode = os.environ.get(BACKGROUND_ENV, "").strip().lower()
    if mode == "always":
        return True
    if mode == "never":
        return False
    return (len(onnx_bytes) > BACKGROUND_MIN_BYTES
            or _node_count(onnx_bytes) > BACKGROUND_MIN_NODES)


class _Pending:
    """state.compiled's value for a signature compiling in a background thread: calls run
    natively meanwhile."""

    __slots__ = ()


_PENDING = _Pending()
_background_lock = threading.Lock()
_background_threads = []


def _compile_in_background(state, sig, generation, build_args):
    """The background thread: builds and checks the signature, then installs it (or None,
    with the warning deferred to the user's thread). Nothing escapes it."""
    compiled, reason = None, None
    try:
        compiled = _build(*build_args)
        compiled.sig = sig
    except Exception as e:
        compiled, reason = None, _failure_text(e)
    with state.lock:
        # Weights changed meanwhile (generation moved): these artifacts hold the old ones.
        if state.generation == generation and state.compiled.get(sig) is _PENDING:
            state.compiled[sig] = compiled
            if compiled is None:
                state.deferred_warning = reason
            else:
                state.captures += 1


def _start_background(state, sig, build_args):
    state.compiled[sig] = _PENDING
    t = threading.Thread(target=_compile_in_background, name="inferbooster-compile",
                         args=(state, sig, state.generation, build_args), daemon=True)
    with _background_lock:
        _background_threads[:] = [b for b in _background_threads if b.is_alive()]
        _background_threads.append(t)
    t.start()


def wait_compiles(timeout=None):
    """Waits for the background compiles started so far (all modules); True when none is
    left running, False when `timeout` seconds passed first."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    with _background_lock:
        threads = list(_background_threads)
    for t in threads:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            return False
    return True


def _capture(module, state, sig, args, native):
    """First call of a signature: run natively (the caller gets PyTorch's result), then
    export, load and check the compiled artifact against that result; a large model is
    loaded and checked in a background thread, the module running natively meanwhile."""
    result = native(module, *args)
    if len(state.compiled) >= MAX_SIGNATURES:
        state.compiled[sig] = None
        _warn(module, state, "more than %d input signatures" % MAX_SIGNATURES)
        return result
    try:
        if _has_hooks(module):
            raise _Unsupported("it has forward hooks")
        flat = []
        spec = _flatten(result, flat)
        if not flat:
            raise _Unsupported("it returns no tensors")
        onnx_bytes = _export(module, args)
        # Tracing freezes the branch a value-dependent `if` took: a second input of the
        # same signature with other values (floating inputs negated and reversed) must
        # agree too. Inputs the module refuses natively skip this check. PyTorch's side
        # runs here, in the caller's thread, even when the compile goes to the background.
        other = tuple(-a.flip(-1) if a.is_floating_point() and a.dim() else
                      (-a if a.is_floating_point() else a) for a in args)
        try:
            other_want = _flatten_list(native(module, *other))
        except Exception:
            other_want = None
        if SERVER is None and _compiles_in_background(onnx_bytes):
            # Private copies: the caller may write into its inputs and results.
            build_args = (onnx_bytes, spec, tuple(a.clone() for a in args),
                          [t.detach().clone() for t in flat], other, other_want)
            _start_background(state, sig, build_args)
            return result
        compiled = _build(onnx_bytes, spec, args, flat, other, other_want)
    except Exception as e:
        state.compiled[sig] = None
        _warn(module, state, _failure_text(e))
        return result
    compiled.sig = sig
    state.compiled[sig] = compiled
    state.captures += 1
    return result


def _route(module, args):
    """What a call should run: a _Compiled, None (PyTorch), or (state, sig) to capture."""
    state = _states.get(module)
    if state is None:
        state = _states.setdefault(module, _ModuleState(module))
    if state.disabled:
        return state, None
    sig = _signature(args)
    if sig is None:
        return state, None
    if state.epoch != STRUCTURE_EPOCH[0]:
        # Some module had a parameter, buffer or submodule assigned: see whether this
        # one's weights are still the tensors the capture saw.
        state.epoch = STRUCTURE_EPOCH[0]
        weights = _weights_of(module)
        if len(weights) != len(state.weights) or any(
                a is not b for a, b in zip(weights, state.weights)):
            state.weights = weights
            state.version = -1
    if _weights_version(state.weights) != state.version:
        # The weights changed since the capture: the artifacts hold the old ones.
        with state.lock:
            state.compiled.clear()
            state.generation += 1
            state.version = _weights_version(state.weights)
            state.recaptures += 1
            if state.recaptures > MAX_RECAPTURES:
                state.disabled = True
                _warn(module, state, "its weights keep changing")
                return state, None
    compiled = state.compiled.get(sig, False)
    if compiled is False:
        return state, sig
    return state, compiled


def call(module, args, native):
    """Runs module(*args): compiled when this signature was captured, capturing it now
    when it is new, natively (native(module, *args)) otherwise. Never raises on
    InferBooster's behalf: PyTorch's own errors are the only ones the caller sees."""
    try:
        state, compiled = _route(module, args)
    except Exception:  # an unhashable module, an odd argument: leave it to PyTorch
        return native(module, *args)
    if compiled is None:
        if state.deferred_warning is not None:
            _warn_deferred(module, state)
        state.native_calls += 1
        return native(module, *args)
    if type(compiled) is not _Compiled and type(compiled) is not _RemoteCompiled:
        if compiled is _PENDING:  # compiling in the background: PyTorch meanwhile
            state.native_calls += 1
            return native(module, *args)
        sig = compiled
        with state.lock:
            if sig not in state.compiled:
                return _capture(module, state, sig, args, native)
            compiled = state.compiled[sig]
        if compiled is None or compiled is _PENDING:
            state.native_calls += 1
            return native(module, *args)
    try:
        out = compiled(args)
    except Exception as e:
        state.compiled[compiled.sig] = None
        _warn(module, state, "the compiled run failed: %s" % e)
        state.native_calls += 1
        return native(module, *args)
    state.compiled_calls += 1
    return out


def _warn_deferred(module, state):
    reason, state.deferred_warning = state.deferred_warning, None
    if reason is not None:
        _warn(module, state, reason)


def stats(module):
    """Counters for a module the engine has seen: compiled_calls, native_calls,
    captures, signatures (compiled ones), pending (compiling in the background), warned;
    None if it never saw the module."""
    state = _states.get(module)
    if state is None:
        return None
    return {
        "compiled_calls": state.compiled_calls,
        "native_calls": state.native_calls,
        "captures": state.captures,
        "signatures": sum(1 for c in list(state.compiled.values())
                          if c is not None and c is not _PENDING),
        "pending": sum(1 for c in list(state.compiled.values()) if c is _PENDING),
        "warned": state.warned,
    }


# ---- The explicit form -------------------------------------------------------------------
def _call_module(module, *args):
    return module(*args)


class OptimizedModule(torch.nn.Module):
    """Wraps a module: calls in inference (eval mode, no grad) with a captured signature
    run the compiled artifact; everything else runs the wrapped module. Its own
    __call__ replaces Module's, so interposition never captures the wrapper itself
    (forward hooks registered on the wrapper are therefore not run)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        from .interposition import _tls

        module = self.module
        if _tls.depth or kwargs or not args or module.training or torch.is_grad_enabled():
            return module(*args, **kwargs)
        _tls.depth += 1
        try:
            return call(module, args, _call_module)
        finally:
            _tls.depth -= 1


def optimize(module, example_inputs, strict=False):
    """Compiles `module` for the signature of `example_inputs` (a tensor or a tuple of
    tensors) and returns an OptimizedModule. The module is put in eval mode. On failure
    it warns (or raises RuntimeError when strict) and the wrapper runs PyTorch."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    module.eval()
    wrapper = OptimizedModule(module).eval()
    with torch.no_grad():
        wrapper(*example_inputs)
    wait_compiles()  # the explicit form returns compiled, however large the model
    state = _states.get(module)
    if state is not None and state.deferred_warning is not None:
        _warn_deferred(module, state)
    st = stats(module)
    if strict and (st is None or st["signatures"] == 0):
        raise RuntimeError("inferbooster.torch.optimize: %s could not be compiled"
                           % type(module).__name__)
    return wrapper
