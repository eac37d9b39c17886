#!/usr/bin/python3
"""Helper for the model end-to-end checks: lists a model's CLI input arguments from its
manifest, and compares the CLI's output .npy files with PyTorch's expected ones.

  model_outputs.py cases MODELDIR                  one line per test case: NAME DIR
  model_outputs.py args MODELDIR [DIR]             one CLI argument per line: --input, NAME=PATH, ...
  model_outputs.py compare MODELDIR OUTDIR [DIR]   prints "max_abs_err=E" (problems on stderr);
                                                   exits 0 if every output is within the
                                                   manifest's tolerance, 1 otherwise
DIR is a case's folder relative to MODELDIR (default ".": inputs/ and expected/ there).
"""
import json
import math
import os
import re
import sys

import numpy as np


def load_manifest(model_dir):
    with open(os.path.join(model_dir, "manifest.json")) as f:
        return json.load(f)


def safe_name(name):
    # The CLI writes each output under a sanitised file name; accept either spelling.
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def cmd_cases(model_dir):
    for case in load_manifest(model_dir).get("cases", [{"name": "batch1", "dir": "."}]):
        print("%s %s" % (case["name"], case["dir"]))
    return 0


def cmd_args(model_dir, case_dir="."):
    for inp in load_manifest(model_dir)["inputs"]:
        print("--input")
        print("%s=%s" % (inp["name"], os.path.join(model_dir, case_dir, "inputs", inp["name"] + ".npy")))
    return 0


def cmd_compare(model_dir, out_dir, case_dir="."):
    manifest = load_manifest(model_dir)
    # IB_COMPARE_TOLERANCE: a looser bound for reduced precision (TF32/FP16 GPU runs)
    tol = float(os.environ.get("IB_COMPARE_TOLERANCE") or manifest.get("tolerance", 1e-3))
    worst = 0.0
    ok = True
    for out in manifest["outputs"]:
        name = out["name"]
        expected = np.load(os.path.join(model_dir, case_dir, "expected", name + ".npy"))
        path = os.path.join(out_dir, name + ".npy")
        if not os.path.exists(path):
            path = os.path.join(out_dir, safe_name(name) + ".npy")
        if not os.path.exists(path):
            print("output %s: no file %s.npy in %s" % (name, safe_name(name), out_dir), file=sys.stderr)
            ok = False
            worst = math.inf
            continue
        got = np.load(path, allow_pickle=False)
        if got.shape != expected.shape:
            print("output %s: shape %s, expected %s" % (name, got.shape, expected.shape), file=sys.stderr)
            ok = False
            worst = math.inf
            continue
        if got.dtype != expected.dtype:
            print("output %s: dtype %s, expected %s" % (name, got.dtype, expected.dtype), file=sys.stderr)
            ok = False
        diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        err = float(diff.max()) if diff.size else 0.0
        if not np.all(np.isfinite(got)):
            err = math.inf
        if err > tol:
            idx = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf))), diff.shape)
            print("output %s: max_abs_err=%.3g > %g at %s (got %r, expected %r)" % (
                name, err, tol, tuple(int(i) for i in idx), float(got[idx]), float(expected[idx])),
                file=sys.stderr)
            ok = False
        worst = max(worst, err)
    print("max_abs_err=%.3g" % worst)
    return 0 if ok else 1


def main(argv):
    if len(argv) == 3 and argv[1] == "cases":
        return cmd_cases(argv[2])
    if len(argv) in (3, 4) and argv[1] == "args":
        return cmd_args(*argv[2:])
    if len(argv) in (4, 5) and argv[1] == "compare":
        return cmd_compare(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
