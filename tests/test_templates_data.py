#!/usr/bin/python3
"""Data-movement kernel templates (strided_copy for Transpose and Slice, gather, cast, concat)
against the reference executor.

Each round (one per ISA level: host, x86-64-v3, generic) builds one ONNX model holding many independent Transpose, Slice, Gather, Cast and Concat
nodes on randomised shapes, permutations, slice bounds and steps, axes, index values (negative
ones too) and dtypes,
compiles it with `inferbooster compile`, checks that every node got a generated kernel
(only float->integer casts stay reference fallbacks), runs the artifact and the reference
executor on the same inputs and requires identical outputs. A Gather with an index out of
range must fail the run with exit code 2 and a message naming the step.

usage: test_templates_data.py INFERBOOSTER_CLI [--aarch64 RUNNER]
  --aarch64: compile with --target aarch64 and run the artifacts under qemu-aarch64 with
  RUNNER (the cross-built inferbooster-run); the float->integer casts are left out, as a
  plan with reference-op steps cannot be compiled for a cross target.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

CLI = sys.argv[1] if len(sys.argv) > 1 else "build/inferbooster"
RUNNER = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--aarch64" else None
QEMU = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]
passed = failed = 0

DTYPES = [  # numpy dtype, ONNX elem type
    (np.float32, TensorProto.FLOAT), (np.int64, TensorProto.INT64), (np.uint8, TensorProto.UINT8),
    (np.float16, TensorProto.FLOAT16), (np.bool_, TensorProto.BOOL), (np.float64, TensorProto.DOUBLE),
]
CASTS = [  # (from, to) pairs the cast template takes, then float -> integer (a fallback)
    (TensorProto.INT64, TensorProto.FLOAT), (TensorProto.INT32, TensorProto.FLOAT),
    (TensorProto.UINT8, TensorProto.FLOAT), (TensorProto.BOOL, TensorProto.FLOAT),
    (TensorProto.FLOAT, TensorProto.DOUBLE), (TensorProto.DOUBLE, TensorProto.FLOAT),
    (TensorProto.INT64, TensorProto.INT32), (TensorProto.INT32, TensorProto.INT64),
    (TensorProto.FLOAT, TensorProto.BOOL), (TensorProto.INT64, TensorProto.BOOL),
    (TensorProto.INT8, TensorProto.INT64), (TensorProto.UINT64, TensorProto.FLOAT),
]
FALLBACK_CASTS = [] if RUNNER else [(TensorProto.FLOAT, TensorProto.INT64)]
NP_OF = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.INT64: np.int64,
         TensorProto.INT32: np.int32, TensorProto.UINT8: np.uint8, TensorProto.BOOL: np.bool_,
         TensorProto.INT8: np.int8, TensorProto.UINT64: np.uint64, TensorProto.FLOAT16: np.float16}


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", what, flush=True)


def random_data(rng, shape, np_type):
    if np_type == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(np_type, np.floating):
        x = rng.standard_normal(shape) * 100
        return x.astype(np_type)
    info = np.iinfo(np_type)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(np_type)


def build_round(rng, n_each):
    nodes, inputs, outputs, feeds, fallbacks = [], [], [], {}, 0

    def add_input(name, data, elem):
        inputs.append(helper.make_tensor_value_info(name, elem, list(data.shape)))
        feeds[name] = data

    for i in range(n_each):  # Transpose: rank 1-6, dims 1-7, any permutation
        rank = int(rng.integers(1, 7))
        shape = [int(d) for d in rng.integers(1, 8, size=rank)]
        if rng.random() < 0.3:  # a larger one, parallel over rows
            shape[-1] = int(rng.integers(64, 300))
        np_type, elem = DTYPES[int(rng.integers(len(DTYPES)))]
        perm = [int(p) for p in rng.permutation(rank)]
        x = f"t{i}_x"
        add_input(x, random_data(rng, shape, np_type), elem)
        attrs = {} if rng.random() < 0.15 else {"perm": perm}
        nodes.append(helper.make_node("Transpose", [x], [f"t{i}_y"], name=f"transpose_{i}", **attrs))
        outputs.append(helper.make_tensor_value_info(f"t{i}_y", elem, None))
    for i in range(n_each):  # Gather: data rank 1-4, any axis (negative too), 0-2-d indices
        rank = int(rng.integers(1, 5))
        shape = [int(d) for d in rng.integers(1, 9, size=rank)]
        axis = int(rng.integers(-rank, rank))
        n = shape[axis]
        np_type, elem = DTYPES[int(rng.integers(len(DTYPES)))]
        idx_shape = [int(d) for d in rng.integers(1, 5, size=int(rng.integers(0, 3)))]
        idx_type, idx_elem = (np.int64, TensorProto.INT64) if rng.random() < 0.6 else (np.int32, TensorProto.INT32)
        idx = rng.integers(-n, n, size=idx_shape).astype(idx_type)
        x, ix = f"g{i}_x", f"g{i}_i"
        add_input(x, random_data(rng, shape, np_type), elem)
        if rng.random() < 0.5:  # constant indices (an initializer), as exporters write them
            nodes.append(helper.make_node("Constant", [], [ix], value=helper.make_tensor(
                ix, idx_elem, idx_shape, idx.flatten().tolist())))
        else:
            add_input(ix, idx, idx_elem)
        nodes.append(helper.make_node("Gather", [x, ix], [f"g{i}_y"], name=f"gather_{i}", axis=axis))
        outputs.append(helper.make_tensor_value_info(f"g{i}_y", elem, None))
    for i in range(n_each):  # Slice: constant bounds, any axes subset, steps of either sign
        rank = int(rng.integers(1, 5))
        shape = [int(d) for d in rng.integers(1, 10, size=rank)]
        if rng.random() < 0.3:
            shape[-1] = int(rng.integers(100, 400))
        axes = [int(a) for a in rng.permutation(rank)[:int(rng.integers(1, rank + 1))]]
        starts, ends, steps = [], [], []
        for a in axes:
            n = shape[a]
            step = int(rng.choice([1, 1, 2, 3, -1, -2]))
            s, e = int(rng.integers(-n - 2, n + 2)), int(rng.integers(-n - 2, n + 2))
            if rng.random() < 0.2:  # open ends, as exporters write them
                e = 2**63 - 1 if step > 0 else -2**63
            starts.append(s), ends.append(e), steps.append(step)
        np_type, elem = DTYPES[int(rng.integers(len(DTYPES)))]
        x = f"s{i}_x"
        add_input(x, random_data(rng, shape, np_type), elem)
        names = []
        for what, vals in (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps)):
            nm = f"s{i}_{what}"
            nodes.append(helper.make_node("Constant", [], [nm], value=helper.make_tensor(
                nm, TensorProto.INT64, [len(vals)], vals)))
            names.append(nm)
        if all(st == 1 for st in steps) and rng.random() < 0.5:
            names = names[:3]  # steps omitted
        nodes.append(helper.make_node("Slice", [x] + names, [f"s{i}_y"], name=f"slice_{i}"))
        outputs.append(helper.make_tensor_value_info(f"s{i}_y", elem, None))
    for i in range(n_each // 2):  # Concat: 1-4 inputs along any axis
        rank = int(rng.integers(1, 5))
        shape = [int(d) for d in rng.integers(1, 7, size=rank)]
        axis = int(rng.integers(-rank, rank))
        np_type, elem = DTYPES[int(rng.integers(len(DTYPES)))]
        ins = []
        for j in range(int(rng.integers(1, 5))):
            sh = list(shape)
            sh[axis] = int(rng.integers(1, 6))
            nm = f"k{i}_{j}"
            add_input(nm, random_data(rng, sh, np_type), elem)
            ins.append(nm)
        nodes.append(helper.make_node("Concat", ins, [f"k{i}_y"], name=f"concat_{i}", axis=axis))
        outputs.append(helper.make_tensor_value_info(f"k{i}_y", elem, None))
    for i, (src, dst) in enumerate(CASTS + FALLBACK_CASTS):
        shape = [int(d) for d in rng.integers(1, 40, size=int(rng.integers(1, 4)))]
        x = f"c{i}_x"
        add_input(x, random_data(rng, shape, NP_OF[src]), src)
        nodes.append(helper.make_node("Cast", [x], [f"c{i}_y"], name=f"cast_{i}", to=dst))
        outputs.append(helper.make_tensor_value_info(f"c{i}_y", dst, None))
    fallbacks = len(FALLBACK_CASTS)
    graph = helper.make_graph(nodes, "data_movement", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model, feeds, fallbacks


CACHE_DIR = None  # set in main(): the test never writes into the user's cache


def run(args):
    env = dict(os.environ, INFERBOOSTER_CACHE_DIR=CACHE_DIR)
    return subprocess.run([CLI] + args, capture_output=True, text=True, timeout=600, env=env)


def compile_args():
    return ["--target", "aarch64"] if RUNNER else []


def run_artifact(args):
    """`inferbooster run ARTIFACT ...`, or the runner under qemu for --aarch64."""
    if not RUNNER:
        return run(["run"] + args)
    return subprocess.run(QEMU + [RUNNER] + args, capture_output=True, text=True, timeout=600)


def input_args(d, feeds):
    args = []
    for name, data in feeds.items():
        path = os.path.join(d, name + ".npy")
        np.save(path, data)
        args += ["--input", f"{name}={path}"]
    return args


def one_round(seed, target, d):
    target = "aarch64" if RUNNER else target
    rng = np.random.default_rng(seed)
    model, feeds, fallbacks = build_round(rng, 14)
    path = os.path.join(d, "model.onnx")
    onnx.save(model, path)
    art = os.path.join(d, "artifact")
    r = run(["compile", path, "-o", art, "--target", target])
    check(r.returncode == 0, f"seed {seed} {target}: compile: {r.stderr.strip()}")
    if r.returncode != 0:
        return
    meta = json.load(open(os.path.join(art, "meta.json")))
    by_template = {}
    for k in meta["kernels"]:
        by_template.setdefault(k["template"], []).append(k["nodes"][0] if k["nodes"] else "-")
    got_fallbacks = by_template.get(None, [])
    check(len(got_fallbacks) == fallbacks,
          f"seed {seed}: {len(got_fallbacks)} fallback steps, expected {fallbacks}: {got_fallbacks}")
    args = input_args(d, feeds)
    out_c, out_r = os.path.join(d, "compiled"), os.path.join(d, "reference")
    rc = run_artifact([art, "--output-dir", out_c] + args)
    rr = run(["run", path, "--reference", "--output-dir", out_r] + args)
    check(rc.returncode == 0 and rr.returncode == 0,
          f"seed {seed}: run: {rc.stderr.strip()} {rr.stderr.strip()}")
    if rc.returncode or rr.returncode:
        return
    for o in model.graph.output:
        a = np.load(os.path.join(out_c, o.name + ".npy"))
        b = np.load(os.path.join(out_r, o.name + ".npy"))
        same = a.dtype == b.dtype and a.shape == b.shape and \
            a.tobytes() == b.tobytes()
        check(same, f"seed {seed}: output {o.name}: compiled {a.dtype}{a.shape} differs from "
                    f"reference {b.dtype}{b.shape}")


def out_of_range(d):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 300])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Gather", ["x", "i"], ["y"], name="lookup")],
                          "oob", [x, i], [y])
    path = os.path.join(d, "oob.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    art = os.path.join(d, "oob")
    r = run(["compile", path, "-o", art] + compile_args())
    check(r.returncode == 0, f"out of range: compile: {r.stderr.strip()}")
    feeds = {"x": np.ones((4, 300), np.float32), "i": np.array([0, -4, 3], np.int64)}
    ok = run_artifact([art, "--output-dir", os.path.join(d, "ok")] + input_args(d, feeds))
    check(ok.returncode == 0, f"in-range gather: {ok.stderr.strip()}")
    for bad in (4, -5):
        feeds["i"] = np.array([0, bad, 1], np.int64)
        r = run_artifact([art, "--output-dir", os.path.join(d, "bad")] + input_args(d, feeds))
        check(r.returncode == 2 and "out of range" in r.stderr and "lookup" in r.stderr,
              f"index {bad}: rc {r.returncode}, stderr {r.stderr.strip()!r}")


def main():
    global CACHE_DIR
    with tempfile.TemporaryDirectory() as d:
        CACHE_DIR = os.path.join(d, "cache")
        # every ISA level this machine runs (the host is AVX-512 or AVX2 here)
        for seed, target in ((1, "host"), (2, "host"), (3, "x86-64-v3"), (4, "generic")):
            sub = os.path.join(d, f"round{seed}")
            os.mkdir(sub)
            one_round(seed, target, sub)
        out_of_range(d)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
