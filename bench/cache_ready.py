#!/usr/bin/python3
"""Compiled-model cache: how long ResNet-50 takes to be ready to run on a cache miss (a
cold compile) and on a hit, in the same run, medians of several runs.

Each run is a fresh `inferbooster bench MODEL --runs 1 --warmup 0 --json` process, so
nothing stays warm in the process. The model is ResNet-50 at batch 1 with static shapes
(a copy of bench/models/resnet50/model.onnx with the batch dimension fixed), so the
session compiles - or loads from the cache - inside ib_session_create_from_file:

  session_ms  ib_session_create_from_file: parse + compile on a miss; hash the file
              (remembered by file identity) + lookup + load the artifact on a hit, which
              does not parse the ONNX file (the acceptance: <= 100 ms on a hit)
  first_run_ms  the first inference after it
  process_ms  the whole process: start, session, one run, exit

A miss gets an empty cache directory each time; the hits then reuse the last one. Where
onnxruntime-node is installed (bench/setup_ort.sh), ONNX Runtime's session creation
(load_ms of bench/ort_bench.js) on the same file is the peer.

usage: bench/cache_ready.py [--cold N] [--hits N] [--threads T] [--model PATH]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "build", "inferbooster")
PY = "/usr/bin/python3"
DEFAULT_MODEL = os.path.join(ROOT, "bench", "models", "resnet50", "model.onnx")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def static_copy(src, dst):
    """The model with every symbolic dimension of its inputs and outputs set to 1."""
    code = (
        "import onnx, sys\n"
        "m = onnx.load(sys.argv[1])\n"
        "for v in list(m.graph.input) + list(m.graph.output):\n"
        "    for d in v.type.tensor_type.shape.dim:\n"
        "        if not d.HasField('dim_value'): d.dim_value = 1\n"
        "onnx.save(m, sys.argv[2])\n")
    subprocess.run([PY, "-c", code, src, dst], check=True)


def bench_once(model, cache_dir, threads):
    env = dict(os.environ, INFERBOOSTER_CACHE_DIR=cache_dir)
    env.pop("INFERBOOSTER_NO_CACHE", None)
    t0 = time.monotonic()
    r = subprocess.run([CLI, "bench", model, "--runs", "1", "--warmup", "0", "--json",
                        "--threads", str(threads)], env=env, capture_output=True, text=True)
    wall = (time.monotonic() - t0) * 1e3
    if r.returncode != 0:
        raise SystemExit("inferbooster bench failed:\n" + r.stderr[-2000:])
    d = json.loads(r.stdout)
    if d.get("executor") != "compiled":
        raise SystemExit("ResNet-50 did not run compiled: %s" % r.stdout)
    return {"session_ms": d["session_ms"], "first_run_ms": d["setup_ms"] - d["session_ms"],
            "process_ms": wall}


def ort_session_ms(model, threads, runs):
    script = os.path.join(ROOT, "bench", "ort_bench.js")
    probe = subprocess.run(["node", "-e", "require('onnxruntime-node')"],
                           cwd=os.path.join(ROOT, "bench"), capture_output=True)
    if probe.returncode != 0:
        return None
    out = []
    for _ in range(runs):
        r = subprocess.run(["node", script, model, "--runs", "1", "--warmup", "0",
                            "--threads", str(threads)], cwd=os.path.join(ROOT, "bench"),
                           capture_output=True, text=True)
        if r.returncode != 0:
            return None
        out.append(json.loads(r.stdout)["load_ms"])
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cold", type=int, default=3, help="cold compiles (cache misses)")
    ap.add_argument("--hits", type=int, default=9, help="cache hits")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    a = ap.parse_args()
    if not os.access(CLI, os.X_OK):
        raise SystemExit("build first: %s is missing (make)" % CLI)
    if not os.path.exists(a.model):
        if a.model != DEFAULT_MODEL:
            raise SystemExit("no model at %s" % a.model)
        log("exporting resnet50 into bench/models (tools/make_models.py)")
        subprocess.run([PY, os.path.join(ROOT, "tools", "make_models.py"),
                        os.path.join(ROOT, "bench", "models"), "--only", "resnet50"], check=True)
    tmp = tempfile.mkdtemp(prefix="ib_cache_ready.")
    try:
        model = os.path.join(tmp, "resnet50_b1.onnx")
        static_copy(a.model, model)
        cold, hits = [], []
        cache = None
        for i in range(a.cold):
            cache = os.path.join(tmp, "cache%d" % i)
            cold.append(bench_once(model, cache, a.threads))
            log("miss %d: session %.0f ms" % (i + 1, cold[-1]["session_ms"]))
        for i in range(a.hits):
            hits.append(bench_once(model, cache, a.threads))
            log("hit %d: session %.1f ms" % (i + 1, hits[-1]["session_ms"]))
        ort = ort_session_ms(model, a.threads, 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(rows, k):
        return statistics.median(r[k] for r in rows)

    print("ResNet-50, batch 1, %d threads: ready to run (medians of %d misses, %d hits)"
          % (a.threads, a.cold, a.hits))
    print("%-34s %12s %12s %10s" % ("", "miss (cold)", "cache hit", "ratio"))
    for k, what in (("session_ms", "load + session (ms)"),
                    ("first_run_ms", "first run (ms)"),
                    ("process_ms", "whole process, one run (ms)")):
        m, h = med(cold, k), med(hits, k)
        print("%-34s %12.1f %12.1f %9.1fx" % (what, m, h, m / h if h > 0 else float("inf")))
    if ort is not None:
        print("%-34s %12.1f   (ONNX Runtime session creation, same file)" %
              ("onnxruntime-node InferenceSession", ort))
        print("%-34s %12.2f" % ("hit / ONNX Runtime session", med(hits, "session_ms") / ort))
    else:
        print("ONNX Runtime: not installed (bench/setup_ort.sh), no peer row")
    hit = med(hits, "session_ms")
    print("target: a hit makes the session ready in <= 100 ms: %s (%.1f ms)"
          % ("met" if hit <= 100 else "MISSED", hit))
    return 0 if hit <= 100 else 1


if __name__ == "__main__":
    sys.exit(main())
