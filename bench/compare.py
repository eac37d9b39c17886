#!/usr/bin/python3
"""InferBooster against ONNX Runtime in the same run (the driver behind bench/compare.sh).

For each model and batch it alternates ONNX Runtime (bench/ort_bench.js: CPU EP, all graph
optimisations) and InferBooster K times, takes the median of the per-process medians, and
prints one table with the peak RSS of both, the FMA peak of this CPU, the accuracy of
InferBooster against ONNX Runtime, and the fraction of the FMA peak that ResNet-50's 3x3
convolutions reach. compare.sh builds, installs ONNX Runtime and compiles the FMA probe first.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import onnx

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PY = "/usr/bin/python3"
MAKE_MODELS = os.path.join(ROOT, "tools", "make_models.py")
MAKE_CONVS = os.path.join(BENCH, "make_conv_models.py")
ORT_BENCH = os.path.join(BENCH, "ort_bench.js")
KNOWN_MODELS = ["resnet18", "resnet50", "mobilenet_v2", "bert"]
# The accuracy check's bound on |IB - ORT|, relative to the largest |ORT output| (both float32,
# different summation orders; the test suite's bound against PyTorch is 1e-3 absolute).
ACCURACY_REL = 1e-4
# A single convolution is timed at steady state, both runtimes alike: on this VM a new
# process runs its first ~0.3 s with a fraction of the memory bandwidth it later gets (a
# 9.4 MB-weight conv: 2.1 ms for 30 runs after 3 warm-ups, 0.58 ms after 500), and 10
# runs of a sub-millisecond kernel would time only that.
CONV_RUNS, CONV_WARMUP = 200, 500


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------------------

class Result:
    def __init__(self, rc, out, err, maxrss_mb, seconds):
        self.rc, self.out, self.err, self.maxrss_mb, self.seconds = rc, out, err, maxrss_mb, seconds


CURRENT = None  # the child being waited for, killed when the run is interrupted


def interrupt(signum, frame):
    if CURRENT is not None:
        try:
            os.killpg(CURRENT.pid, signal.SIGKILL)
        except OSError:
            pass
    raise KeyboardInterrupt


PRIORITY = False  # --priority: children run in their own autogroup at nice -20


def raise_priority():
    """In the child, after setsid: a new session is a new scheduler autogroup, whose nice
    value (not the process's alone) decides its share against other sessions' work."""
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write("-20")
    except OSError:
        pass
    try:
        os.nice(-20)
    except OSError:
        pass


def run(cmd, timeout, cwd=None, env=None):
    """Runs cmd with its output in temporary files; waits with wait4 so the child's own peak
    RSS comes back (the same measure for ONNX Runtime's and InferBooster's processes)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        global CURRENT
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, start_new_session=True,
                                env=dict(os.environ, **env) if env else None,
                                preexec_fn=raise_priority if PRIORITY else None)
        CURRENT = proc
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            CURRENT = None
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Result(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                      usage.ru_maxrss / 1024.0, seconds)


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def tail(text, n=8):
    return "\n".join("    " + line for line in text.strip().splitlines()[-n:])


# ---- models and inputs -----------------------------------------------------------------

def file_hash(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_stamp(d):
    try:
        with open(os.path.join(d, ".stamp")) as f:
            return f.read().strip()
    except OSError:
        return None


def ensure_models(names, mdir):
    """Exports each model with tools/make_models.py unless its export is current (the stamp
    is the generator's hash)."""
    want = file_hash(MAKE_MODELS)
    for name in names:
        d = os.path.join(mdir, name)
        if read_stamp(d) == want and os.path.exists(os.path.join(d, "manifest.json")):
            continue
        shutil.rmtree(d, ignore_errors=True)
        log("exporting %s to %s" % (name, d))
        r = run([PY, MAKE_MODELS, mdir, "--only", name], timeout=1800)
        if r.rc != 0:
            raise SystemExit("exporting %s failed:\n%s" % (name, tail(r.out + r.err, 20)))
        with open(os.path.join(d, ".stamp"), "w") as f:
            f.write(want + "\n")


def ensure_convs(cdir):
    want = file_hash(MAKE_CONVS)
    listing = os.path.join(cdir, "convs.json")
    if not (os.path.exists(listing) and read_stamp(cdir) == want):
        r = run([PY, MAKE_CONVS, cdir], timeout=300)
        if r.rc != 0:
            raise SystemExit("making the conv models failed:\n%s" % tail(r.out + r.err, 20))
        with open(os.path.join(cdir, ".stamp"), "w") as f:
            f.write(want + "\n")
    with open(listing) as f:
        return json.load(f)


def inputs_for_batch(mdir, batch):
    """The model's exported batch-1 inputs, repeated along the batch axis: the same values
    for ONNX Runtime and InferBooster, so their outputs can be compared too."""
    src = os.path.join(mdir, "inputs")
    if batch == 1:
        return src
    dst = os.path.join(mdir, "bench_inputs", "b%d" % batch)
    os.makedirs(dst, exist_ok=True)
    for f in sorted(os.listdir(src)):
        if f.endswith(".npy"):
            a = np.load(os.path.join(src, f))
            np.save(os.path.join(dst, f), np.repeat(a, batch, axis=0))
    return dst


def input_args(inputs_dir):
    args = []
    for f in sorted(os.listdir(inputs_dir)):
        if f.endswith(".npy"):
            args += ["--input", "%s=%s" % (f[:-4], os.path.join(inputs_dir, f))]
    return args


# ---- the two runtimes ------------------------------------------------------------------

class Ib:
    """InferBooster's CLI: `bench` (and a compiled artifact from `compile`) when the CLI has
    them, else `run --repeat`, whose median is parsed from its last line."""

    def __init__(self, cli, threads, runs, warmup, timeout, artifact_dir, force_run, reference=False, env=None):
        self.cli, self.threads, self.runs, self.warmup, self.timeout = cli, threads, runs, warmup, timeout
        self.env = env  # extra environment of every compile and timed process
        r = run([cli, "--help"], timeout=30)
        commands = set(re.findall(r"^  ([a-z]+)\s", r.out + r.err, re.M))
        self.has_bench = "bench" in commands and not force_run
        self.has_compile = "compile" in commands and not force_run and not reference
        self.reference = reference
        self.artifact_dir = artifact_dir
        self.artifacts = {}
        self.compile_s = {}
        self.compile_report = {}
        self.version = run([cli, "--version"], timeout=30).out.strip() or "?"

    def mode(self):
        if self.has_bench and self.reference:
            return "inferbooster bench --reference (the reference executor)"
        if self.has_bench:
            return "inferbooster bench" + (" (compiled artifact)" if self.has_compile else "")
        return "inferbooster run --repeat (no bench subcommand yet; median includes %d warm-up runs)" % self.warmup

    def prepare(self, key, model, batch):
        """Compiles the model once per batch when the CLI can, so each timed process does not
        pay for compilation; records the compile time."""
        if not (self.has_bench and self.has_compile) or key in self.artifacts:
            return
        out = os.path.join(self.artifact_dir, key)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(self.artifact_dir, exist_ok=True)
        r = run([self.cli, "compile", model, "--batch", str(batch), "-o", out, "--json"], timeout=self.timeout,
                env=self.env)
        if r.rc == 0 and os.path.exists(out):
            self.artifacts[key] = out
            self.compile_s[key] = round(r.seconds, 2)
            self.compile_report[key] = last_json(r.out)
        else:
            log("inferbooster compile %s failed (rc %d); timing `bench MODEL` instead:\n%s" % (
                model, r.rc, tail(r.out + r.err)))
            self.artifacts[key] = None

    def time(self, key, model, batch, inputs_dir, runs=None, warmup=None):
        runs = self.runs if runs is None else runs
        warmup = self.warmup if warmup is None else warmup
        if self.has_bench:
            target = self.artifacts.get(key) or model
            cmd = [self.cli, "bench", target, "--threads", str(self.threads), "--batch", str(batch),
                   "--runs", str(runs), "--warmup", str(warmup), "--json"]
            if self.reference:
                cmd.append("--reference")
            elif target == model:
                cmd.append("--compile")  # the single-conv models are small enough to be left to the reference
            r = run(cmd, timeout=self.timeout, env=self.env)
            j = last_json(r.out)
            if r.rc != 0 or j is None or "median_ms" not in j:
                return None, "rc %d: %s\n%s" % (r.rc, " ".join(cmd), tail(r.out + r.err))
            return {"median_ms": float(j["median_ms"]), "p90_ms": j.get("p90_ms"), "executor": j.get("executor"),
                    "peak_rss_mb": r.maxrss_mb, "self_peak_rss_mb": j.get("peak_rss_mb"), "raw": j}, None
        cmd = [self.cli, "run", model, "--threads", str(self.threads),
               "--repeat", str(runs + warmup)] + input_args(inputs_dir)
        r = run(cmd, timeout=self.timeout)
        m = re.findall(r"^median: ([0-9.]+) ms", r.out, re.M)
        if r.rc != 0 or not m:
            return None, "rc %d: %s\n%s" % (r.rc, " ".join(cmd), tail(r.out + r.err))
        return {"median_ms": float(m[-1]), "p90_ms": None, "peak_rss_mb": r.maxrss_mb}, None

    def outputs(self, model, inputs_dir, out_dir, reference=False):
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = [self.cli, "run", model, "--threads", str(self.threads), "--output-dir", out_dir] + input_args(inputs_dir)
        if reference or self.reference:
            cmd.append("--reference")
        r = run(cmd, timeout=self.timeout)
        return None if r.rc == 0 else "rc %d: %s\n%s" % (r.rc, " ".join(cmd), tail(r.out + r.err))


class Ort:
    def __init__(self, node, threads, runs, warmup, timeout):
        self.node, self.threads, self.runs, self.warmup, self.timeout = node, threads, runs, warmup, timeout
        self.version = "?"

    def _cmd(self, model, batch, inputs_dir, runs, warmup):
        cmd = [self.node, ORT_BENCH, model, "--threads", str(self.threads), "--batch", str(batch),
               "--runs", str(runs), "--warmup", str(warmup)]
        if inputs_dir:
            cmd += ["--inputs", inputs_dir]
        return cmd

    def time(self, model, batch, inputs_dir, runs=None, warmup=None):
        cmd = self._cmd(model, batch, inputs_dir, self.runs if runs is None else runs,
                        self.warmup if warmup is None else warmup)
        r = run(cmd, timeout=self.timeout)
        j = last_json(r.out)
        if r.rc != 0 or j is None:
            return None, "rc %d: %s\n%s" % (r.rc, " ".join(cmd), tail(r.out + r.err))
        self.version = j.get("runtime", self.version)
        return {"median_ms": j["median_ms"], "p90_ms": j["p90_ms"], "peak_rss_mb": r.maxrss_mb,
                "node_baseline_rss_mb": j.get("baseline_rss_mb"), "raw": j}, None

    def outputs(self, model, inputs_dir, out_dir):
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = self._cmd(model, 1, inputs_dir, 1, 0) + ["--dump-outputs", out_dir]
        r = run(cmd, timeout=self.timeout)
        return None if r.rc == 0 else "rc %d: %s\n%s" % (r.rc, " ".join(cmd), tail(r.out + r.err))


def compare_outputs(model_path, ort_dir, ib_dir):
    names = [o.name for o in onnx.load(model_path, load_external_data=False).graph.output]
    worst_abs, worst_rel, detail = 0.0, 0.0, []
    for n in names:
        a = np.load(os.path.join(ort_dir, n + ".npy"))
        b = np.load(os.path.join(ib_dir, n + ".npy"))
        if a.shape != b.shape:
            return None, "output %s: shape %s (ORT) vs %s (IB)" % (n, a.shape, b.shape)
        d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        rel = d / max(scale, 1e-30)
        worst_abs, worst_rel = max(worst_abs, d), max(worst_rel, rel)
        detail.append({"output": n, "max_abs_diff": d, "max_abs_ort": scale, "rel": rel})
    return {"max_abs_diff": worst_abs, "rel": worst_rel, "outputs": detail}, None


# ---- main ------------------------------------------------------------------------------

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,bert")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per process")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up runs per process (ORT; IB's `run` adds them to --repeat)")
    ap.add_argument("--repeats", type=int, default=5, help="alternating ORT/IB processes per model and batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "inferbooster"))
    ap.add_argument("--peak-flops", default=None, help="the compiled bench/peak_flops.c")
    ap.add_argument("--model-dir", default=os.path.join(BENCH, "models"))
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per process")
    ap.add_argument("--no-roofline", action="store_true", help="skip the single-convolution roofline")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--ib-run", action="store_true", help="time `inferbooster run --repeat` even if `bench` exists")
    ap.add_argument("--ib-reference", action="store_true",
                    help="time InferBooster's reference executor (`bench --reference`), no compilation")
    ap.add_argument("--json", action="store_true", help="print the results as JSON (the table goes to stderr)")
    ap.add_argument("--priority", action="store_true",
                    help="run every measured process (both runtimes alike) in its own scheduler "
                         "autogroup at nice -20 (root): other work on a shared machine then "
                         "barely skews the numbers")
    o = ap.parse_args()
    global PRIORITY
    PRIORITY = o.priority

    models = [m for m in o.models.split(",") if m]
    for m in models:
        if m not in KNOWN_MODELS:
            ap.error("unknown model %r (known: %s)" % (m, ",".join(KNOWN_MODELS)))
    try:
        batches = [int(b) for b in o.batch.split(",") if b]
    except ValueError:
        ap.error("--batch takes a comma-separated list of integers")
    if not batches or min(batches) < 1 or o.runs < 1 or o.repeats < 1 or o.threads < 1 or o.warmup < 0:
        ap.error("--batch, --runs, --repeats and --threads must be >= 1, --warmup >= 0")
    if not os.access(o.cli, os.X_OK):
        raise SystemExit("not executable: %s (build first)" % o.cli)

    report = {"host": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}, "threads": o.threads,
              "runs": o.runs, "warmup": o.warmup, "repeats": o.repeats}
    peak = None
    if o.peak_flops:
        r = run([o.peak_flops, "--threads", str(o.threads), "--json"], timeout=120)
        peak = last_json(r.out) if r.rc == 0 else None
        if peak is None:
            log("peak_flops failed:\n" + tail(r.out + r.err))
    report["fma_peak_gflops"] = peak

    os.makedirs(o.model_dir, exist_ok=True)
    ensure_models(models, o.model_dir)
    ib = Ib(o.cli, o.threads, o.runs, o.warmup, o.timeout, os.path.join(o.model_dir, "artifacts"), o.ib_run,
            o.ib_reference)
    ort = Ort(o.node, o.threads, o.runs, o.warmup, o.timeout)
    report["ib_mode"] = ib.mode()
    report["ib_version"] = ib.version
    log("InferBooster timed with: " + ib.mode())

    rows, accuracy, roofline, failures = [], [], [], []
    report.update(results=rows, accuracy=accuracy, conv_roofline=roofline, failures=failures)
    # SIGTERM or ^C ends the run early but still prints what was measured.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        for m in models:
            mdir = os.path.join(o.model_dir, m)
            model = os.path.join(mdir, "model.onnx")
            for b in batches:
                inputs = inputs_for_batch(mdir, b)
                key = "%s_b%d" % (m, b)
                ib.prepare(key, model, b)
                ort_runs, ib_runs, loads = [], [], []
                for k in range(o.repeats):
                    log("%s batch %d: repeat %d/%d" % (m, b, k + 1, o.repeats))
                    loads.append(os.getloadavg()[0])
                    res, err = ort.time(model, b, inputs)
                    if err:
                        failures.append("ORT %s batch %d: %s" % (m, b, err))
                        log(failures[-1])
                    else:
                        ort_runs.append(res)
                    res, err = ib.time(key, model, b, inputs)
                    if err:
                        failures.append("IB %s batch %d: %s" % (m, b, err))
                        log(failures[-1])
                    else:
                        ib_runs.append(res)
                row = {"model": m, "batch": b, "load": statistics.mean(loads)}
                for name, runs in (("ort", ort_runs), ("ib", ib_runs)):
                    mm = med([r["median_ms"] for r in runs])
                    row[name] = {
                        "median_ms": mm,
                        "p90_ms": med([r.get("p90_ms") for r in runs]),
                        "throughput": None if not mm else b * 1000.0 / mm,
                        "peak_rss_mb": max([r["peak_rss_mb"] for r in runs], default=None),
                        "medians_ms": [r["median_ms"] for r in runs],
                    }
                if "node_baseline_rss_mb" in (ort_runs[0] if ort_runs else {}):
                    row["ort"]["node_baseline_rss_mb"] = ort_runs[0]["node_baseline_rss_mb"]
                if key in ib.compile_s:
                    row["ib"]["compile_s"] = ib.compile_s[key]
                    row["ib"]["compile_report"] = ib.compile_report.get(key)
                row["ib"]["executor"] = ",".join(sorted({r.get("executor") for r in ib_runs if r.get("executor")})) or None
                row["ratio"] = (row["ib"]["median_ms"] / row["ort"]["median_ms"]
                                if row["ib"]["median_ms"] and row["ort"]["median_ms"] else None)
                rows.append(row)

        if not o.no_accuracy:
            for m in models:
                mdir = os.path.join(o.model_dir, m)
                model = os.path.join(mdir, "model.onnx")
                inputs = os.path.join(mdir, "inputs")
                od, idir, rdir = (os.path.join(mdir, d) for d in ("out_ort", "out_ib", "out_ib_reference"))
                # The batch-1 artifact when the timing compiled one: what was timed is what is checked.
                err = (ort.outputs(model, inputs, od) or ib.outputs(ib.artifacts.get("%s_b1" % m) or model, inputs, idir)
                       or ib.outputs(model, inputs, rdir, reference=True))
                res = err2 = None
                if not err:
                    res, err = compare_outputs(model, od, idir)
                if not err:
                    ref, err2 = compare_outputs(model, rdir, idir)
                    res["vs_reference"] = ref if not err2 else {"error": err2}
                if err or err2:
                    failures.append("accuracy %s: %s" % (m, err or err2))
                if err:
                    accuracy.append({"model": m, "error": err})
                    continue
                res["model"] = m
                res["ok"] = res["rel"] <= ACCURACY_REL and (not err2 and res["vs_reference"]["rel"] <= ACCURACY_REL)
                accuracy.append(res)

        if not o.no_roofline:
            convs = ensure_convs(os.path.join(o.model_dir, "conv"))
            peak_nt = (peak or {}).get("peak_%dt" % o.threads) or (peak or {}).get("peak_1t")
            # InferBooster's default (Winograd where it wins: GFLOP/s are then "effective", the
            # direct convolution's count over the time) and its direct kernel, whose share of
            # the peak is the kernel-efficiency figure.
            ib_direct = Ib(o.cli, o.threads, o.runs, o.warmup, o.timeout, os.path.join(o.model_dir, "artifacts"),
                           o.ib_run, o.ib_reference, env={"INFERBOOSTER_WINOGRAD": "0"})
            for c in convs:
                ib.prepare("conv_" + c["name"], c["path"], 1)
                ib_direct.prepare("conv_direct_" + c["name"], c["path"], 1)
                ort_ms, ib_ms, direct_ms = [], [], []
                for _ in range(o.repeats):
                    for who, key, out in ((ort, None, ort_ms), (ib, "conv_", ib_ms), (ib_direct, "conv_direct_", direct_ms)):
                        if key is None:
                            res, err = who.time(c["path"], 1, None, CONV_RUNS, CONV_WARMUP)
                        else:
                            res, err = who.time(key + c["name"], c["path"], 1, None, CONV_RUNS, CONV_WARMUP)
                        if err:
                            failures.append("%s %s: %s" % (key or "ORT", c["name"], err))
                        else:
                            out.append(res["median_ms"])
                row = {"name": c["name"], "shape": c["shape"], "flops": c["flops"], "acceptance": c["acceptance"],
                       "peak_gflops": peak_nt}
                for name, ms in (("ort", ort_ms), ("ib", ib_ms), ("ib_direct", direct_ms)):
                    mm = med(ms)
                    g = c["flops"] / (mm * 1e6) if mm else None
                    row[name] = {"median_ms": mm, "gflops": g,
                                 "pct_peak": 100.0 * g / peak_nt if g and peak_nt else None, "medians_ms": ms}
                roofline.append(row)
    except KeyboardInterrupt:
        failures.append("interrupted: the table holds what was measured before")
    report["host"]["loadavg_end"] = os.getloadavg()
    report["ort_version"] = ort.version

    print_table(report, sys.stderr if o.json else sys.stdout)
    if o.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 1 if failures else 0


def print_table(rep, f):
    p = lambda s="": print(s, file=f)
    p()
    p("InferBooster vs ONNX Runtime (%s), %d threads, %d timed runs per process, median of %d alternating processes"
      % (rep.get("ort_version", "?"), rep["threads"], rep["runs"], rep["repeats"]))
    p("IB timed with: %s" % rep["ib_mode"])
    p()
    p("%-13s %5s %10s %10s %8s %11s %11s %8s %8s %6s  %s" % ("model", "batch", "ORT ms", "IB ms", "IB/ORT",
                                                          "ORT inf/s", "IB inf/s", "ORT MB", "IB MB", "load", "IB executor"))
    for r in rep["results"]:
        extra = r["ib"].get("executor") or "-"
        if r["ib"].get("compile_s") is not None:
            cr = r["ib"].get("compile_report") or {}
            extra += ", compiled in %.1f s" % r["ib"]["compile_s"]
            if cr.get("fallback"):
                extra += ", %s of %s kernels fall back" % (cr.get("fallback"), cr.get("kernels"))
        p("%-13s %5d %10s %10s %8s %11s %11s %8s %8s %6s  %s" % (
            r["model"], r["batch"], fmt(r["ort"]["median_ms"], ".2f"), fmt(r["ib"]["median_ms"], ".2f"),
            fmt(r["ratio"], ".2f"), fmt(r["ort"]["throughput"], ".1f"), fmt(r["ib"]["throughput"], ".1f"),
            fmt(r["ort"]["peak_rss_mb"], ".0f"), fmt(r["ib"]["peak_rss_mb"], ".0f"), fmt(r.get("load"), ".1f"), extra))
    base = [r["ort"].get("node_baseline_rss_mb") for r in rep["results"] if r["ort"].get("node_baseline_rss_mb")]
    p("IB/ORT < 1 means InferBooster is faster. load = 1-minute load average while measuring (%d CPUs)."
      % rep["host"]["cpus"])
    p("MB = peak RSS of the whole process"
      + (" (Node alone is ~%.0f MB of ORT's)" % med(base) if base else "") + ".")
    spreads = ["%s/b%d ORT %s IB %s" % (r["model"], r["batch"],
                                         "..".join(fmt(v, ".1f") for v in (min(r["ort"]["medians_ms"], default=None),
                                                                           max(r["ort"]["medians_ms"], default=None))),
                                         "..".join(fmt(v, ".1f") for v in (min(r["ib"]["medians_ms"], default=None),
                                                                           max(r["ib"]["medians_ms"], default=None))))
               for r in rep["results"]]
    p("spread of per-process medians (ms): " + "; ".join(spreads))
    pk = rep.get("fma_peak_gflops")
    if pk:
        widths = ", ".join("%s %s" % (k, fmt(v, ".1f")) for k, v in pk.items() if k.startswith("fma"))
        p("FMA peak: %s GFLOP/s on 1 thread, %s on %d threads (%s)" % (
            fmt(pk.get("peak_1t"), ".1f"), fmt(pk.get("peak_%dt" % rep["threads"]), ".1f"), rep["threads"], widths))
    else:
        p("FMA peak: not measured")
    if rep["accuracy"]:
        p()
        p("accuracy at batch 1 (same inputs; relative = max abs diff / max |output|; `run` default path vs ORT and vs --reference):")
        for a in rep["accuracy"]:
            if "error" in a:
                p("  %-13s ERROR %s" % (a["model"], a["error"].splitlines()[0]))
            else:
                vr = a.get("vs_reference") or {}
                p("  %-13s max|IB-ORT| %.3g (relative %.3g)   max|IB-IB reference| %s (relative %s)   %s" % (
                    a["model"], a["max_abs_diff"], a["rel"], fmt(vr.get("max_abs_diff"), ".3g"), fmt(vr.get("rel"), ".3g"),
                    "ok" if a["ok"] else "OVER %.0e" % ACCURACY_REL))
    if rep["conv_roofline"]:
        p()
        p("single 3x3 convolutions (ResNet-50 shapes), batch 1; %% of the %d-thread FMA peak (%s GFLOP/s):" % (
            rep["threads"], fmt(rep["conv_roofline"][0]["peak_gflops"], ".1f")))
        p("  IB: the default compile (Winograd F(2x2) or F(4x4) where it wins; its GF/s and % count the direct")
        p("  convolution's FLOPs, \"effective\"); IB direct: INFERBOOSTER_WINOGRAD=0, the direct kernel's efficiency.")
        p("  %d runs after %d warm-ups per process, median of the processes' medians." % (CONV_RUNS, CONV_WARMUP))
        p("  %-20s %-18s %6s %8s %6s %8s %8s %6s %8s %8s %6s" % (
            "conv", "shape", "GFLOP", "ORT ms", "ORT %", "IB ms", "IB GF/s", "IB %", "direct", "GF/s", "dir %"))
        for c in rep["conv_roofline"]:
            d = c.get("ib_direct") or {}
            p("  %-20s %-18s %6.3f %8s %6s %8s %8s %6s %8s %8s %6s%s" % (
                c["name"], c["shape"], c["flops"] / 1e9, fmt(c["ort"]["median_ms"], ".3f"),
                fmt(c["ort"]["pct_peak"], ".0f"), fmt(c["ib"]["median_ms"], ".3f"), fmt(c["ib"]["gflops"], ".1f"),
                fmt(c["ib"]["pct_peak"], ".0f"), fmt(d.get("median_ms"), ".3f"), fmt(d.get("gflops"), ".1f"),
                fmt(d.get("pct_peak"), ".0f"), "  <- target >= 60%" if c["acceptance"] else ""))
    la, lb = rep["host"]["loadavg_start"], rep["host"]["loadavg_end"]
    p()
    if PRIORITY:
        p("measured processes ran in their own scheduler autogroup at nice -20 (--priority)")
    p("host: %s CPUs, load average %.2f at start, %.2f at end (other work on the machine skews both runtimes)" % (
        rep["host"]["cpus"], la[0], lb[0]))
    if rep["failures"]:
        p("%d failure(s):" % len(rep["failures"]))
        for x in rep["failures"]:
            p("  " + x.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
