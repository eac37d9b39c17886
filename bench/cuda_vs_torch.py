#!/usr/bin/python3
"""ResNet-50 on an NVIDIA GPU: InferBooster's CUDA target against PyTorch eager (and
torch.compile when it works), same precision, in one run. Prepared for a machine with a
GPU (the device image has PyTorch with CUDA); not run where there is none.

  bench/cuda_vs_torch.py [--cli build/inferbooster] [--models DIR] [--target cuda-sm90]
                         [--precision fp32|tf32] [--runs 200] [--no-compile]

Measures batch-1 latency (median of --runs synchronised calls, ms) and batch-32
throughput (images/s from the median batch time). InferBooster's time is `inferbooster
run ARTIFACT --repeat N`, the median of whole session runs: pinned-buffer copies of the
input and output included, the model replayed as one CUDA graph; PyTorch's is the
forward pass on a tensor already on the GPU, so the comparison slightly favours PyTorch.
Prints a table and the ratios the acceptance asks for (batch-1 latency <= 1.0x eager,
batch-32 throughput >= 0.8x eager), and writes them as JSON with --json FILE.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_times(batch, runs, precision, use_compile):
    import torch
    import torchvision

    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.benchmark = True
    model = torchvision.models.resnet50().eval().cuda()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    results = {}
    variants = [("eager", model)]
    if use_compile:
        try:
            variants.append(("torch.compile", torch.compile(model)))
        except Exception as e:  # noqa: BLE001 - report and go on
            print("torch.compile unavailable: %s" % e, file=sys.stderr)
    for name, m in variants:
        try:
            with torch.inference_mode():
                for _ in range(20):
                    m(x)
                torch.cuda.synchronize()
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    m(x)
                    torch.cuda.synchronize()
                    times.append((time.perf_counter() - t0) * 1e3)
            results[name] = statistics.median(times)
        except Exception as e:  # noqa: BLE001
            print("%s failed: %s" % (name, e), file=sys.stderr)
    return results


def ib_time(cli, model, target, batch, runs, workdir):
    art = os.path.join(workdir, "resnet50.%s.b%d.ibc" % (target, batch))
    subprocess.run([cli, "compile", model, "--target", target, "--batch", str(batch), "-o", art],
                   check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([cli, "run", art, "--repeat", str(runs)], check=True,
                         capture_output=True, text=True).stdout
    m = re.search(r"median ([0-9.]+) ms", out)
    if not m:
        raise RuntimeError("no median in: " + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "inferbooster"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "bench_models"))
    ap.add_argument("--target", default="cuda-sm90")
    ap.add_argument("--precision", choices=["fp32", "tf32"], default="fp32")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--json")
    a = ap.parse_args()
    model = os.path.join(a.models, "resnet50", "model.onnx")
    if not os.path.exists(model):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_models.py"), a.models,
                        "--only", "resnet50"], check=True)
    target = a.target + ("-tf32" if a.precision == "tf32" else "")
    workdir = os.path.join(a.models, "cuda_artifacts")
    os.makedirs(workdir, exist_ok=True)
    rows = {}
    for batch in (1, 32):
        runs = a.runs if batch == 1 else max(20, a.runs // 8)
        t = torch_times(batch, runs, a.precision, not a.no_compile)
        t["inferbooster"] = ib_time(a.cli, model, target, batch, runs, workdir)
        rows[batch] = t
    print("resnet50 on the GPU, %s (%s), median times" % (a.precision, target))
    print("%-16s %14s %18s" % ("", "batch 1 (ms)", "batch 32 (img/s)"))
    for name in ("inferbooster", "eager", "torch.compile"):
        if name in rows[1] and name in rows[32]:
            print("%-16s %14.3f %18.1f" % (name, rows[1][name], 32e3 / rows[32][name]))
    res = {"precision": a.precision, "target": target, "times_ms": rows}
    if "eager" in rows[1]:
        res["latency_ratio_vs_eager"] = rows[1]["inferbooster"] / rows[1]["eager"]
        res["throughput_ratio_vs_eager"] = rows[32]["eager"] / rows[32]["inferbooster"]
        print("batch-1 latency   inferbooster / eager = %.2fx (acceptance: <= 1.0x)" %
              res["latency_ratio_vs_eager"])
        print("batch-32 throughput inferbooster / eager = %.2fx (acceptance: >= 0.8x)" %
              res["throughput_ratio_vs_eager"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
