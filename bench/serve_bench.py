#!/usr/bin/python3
"""The inference server's acceptance benchmarks, against a real `inferbooster serve` driven
by bench/loadgen.c (inferbooster-loadgen) over loopback HTTP:

  stress    64 keep-alive clients for 60 s on the example MLP (JSON tensors): zero errors
  batching  resnet50 at 16 clients (binary tensors), dynamic batching vs batch-1 serving:
            throughput ratio, target >= 1.5
  overhead  resnet50 at 1 client (binary tensors): server p50 / `inferbooster bench` median
            of the same model and batch in the same run, target <= 1.05
  soak      16 clients on the MLP for --soak-secs (acceptance: 600): the server's RSS,
            sampled every few seconds after the first tenth, stays within +-5% of its median

Models are compiled and warmed for every batch size the scheduler uses before the server
reports ready (--compile-before-ready), so no phase measures a compile. resnet50 comes from
tools/make_models.py (exported into bench/models once, as bench/compare.sh does).

usage: serve_bench.py --cli build/inferbooster --loadgen build/inferbooster-loadgen
                      [--phases stress,batching,overhead,soak] [--stress-clients 64]
                      [--stress-secs 60] [--batch-secs 30] [--latency-secs 20]
                      [--soak-secs 600] [--json]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import compare  # noqa: E402  (ensure_models, log)

ROOT = os.path.dirname(BENCH)
log = compare.log

DYN_CONFIG = """name: "resnet50_dyn"
max_batch_size: 16
dynamic_batching { preferred_batch_size: [ 4, 8, 16 ] max_queue_delay_microseconds: 20000 }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
B1_CONFIG = """name: "resnet50_b1"
max_batch_size: 1
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
# Not a verdict: batch-1 serving with two instances, which run requests side by side (one
# on the session's thread pool, the other on its own thread) -- on 2 cores that gained
# more than batching, whose per-image saving in the compiled model is small.
B1X2_CONFIG = """name: "resnet50_b1x2"
max_batch_size: 1
instance_group [ { count: 2 kind: KIND_CPU } ]
"""


def make_repository(tmp, resnet):
    repo = os.path.join(tmp, "repo")
    shutil.copytree(os.path.join(ROOT, "examples", "model_repository", "mlp"), os.path.join(repo, "mlp"))
    if resnet:
        for name, cfg in (("resnet50_b1", B1_CONFIG), ("resnet50_dyn", DYN_CONFIG), ("resnet50_b1x2", B1X2_CONFIG)):
            os.makedirs(os.path.join(repo, name, "1"))
            os.symlink(resnet, os.path.join(repo, name, "1", "model.onnx"))
            with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
                f.write(cfg)
    return repo


class Server:
    def __init__(self, cli, repo, log_path):
        self.log_path = log_path
        self.logf = open(log_path, "w")
        self.proc = subprocess.Popen([cli, "serve", "--model-repository", repo, "--http-port", "0",
                                      "--compile-before-ready", "--http-threads", "8"],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.port = None
        deadline = time.time() + 1800  # resnet50 compiles for four batch sizes first
        while time.time() < deadline and self.proc.poll() is None:
            with open(log_path) as f:
                for line in f:
                    if "listening on http://" in line:
                        self.port = int(line.split("http://")[1].split(":")[1].split()[0])
            if self.port:
                break
            time.sleep(0.5)
        if not self.port:
            raise SystemExit("the server did not start:\n" + open(log_path).read()[-2000:])

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def rss_mb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def metadata(self, model):
        with urllib.request.urlopen(self.url() + "/v2/models/" + model, timeout=30) as r:
            return json.loads(r.read())

    def counters(self, model):
        """The model's version-1 counters from /metrics (name -> value)."""
        with urllib.request.urlopen(self.url() + "/metrics", timeout=30) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or '{model="%s",version="1"}' % model not in line:
                continue
            name, value = line.split("{")[0], line.rsplit(" ", 1)[1]
            out[name] = float(value)
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = -9
        self.logf.close()
        return rc


def loadgen(args, server, model, clients, secs, binary, warmup=2):
    cmd = [args.loadgen, "--url", server.url(), "--model", model, "--concurrency", str(clients),
           "--duration", str(secs), "--warmup", str(warmup), "--json"] + (["--binary"] if binary else [])
    before, t0 = server.counters(model), time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + warmup + 120)
    after, wall = server.counters(model), time.time() - t0
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SystemExit("loadgen failed (%d): %s %s" % (r.returncode, r.stdout, r.stderr))
    out["stderr"] = r.stderr.strip()
    # What the scheduler formed, from the server's own counters over the run (warm-up
    # included): items per execution, padding, how busy the instances were and their
    # busy time per item -- the per-image compute cost the batching phase compares.
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    items, execs = d.get("nv_inference_count", 0), d.get("nv_inference_exec_count", 0)
    rows, busy_us = d.get("ib_inference_exec_rows_total", 0), d.get("ib_inference_exec_duration_us", 0)
    if items and execs:
        out["sched"] = {"items_per_exec": items / execs, "padding": (rows - items) / rows if rows else 0,
                        "busy": busy_us / 1e6 / wall, "busy_ms_per_item": busy_us / 1e3 / items,
                        "queue_ms": d.get("nv_inference_queue_duration_us", 0) / 1e3 / items}
    log("  %-13s %3d clients %-6s %8.1f req/s %8.1f inf/s  p50 %8.3f  p90 %8.3f  p99 %8.3f ms  errors %d" % (
        model, clients, "binary" if binary else "JSON", out["requests_per_s"], out["inferences_per_s"],
        out["p50_ms"], out["p90_ms"], out["p99_ms"], out["errors"]))
    if "sched" in out:
        log("  %-13s %5.2f items/exec, padding %4.1f%%, instances busy %5.1f%%, %6.2f ms busy per item, "
            "queue %6.1f ms" % ("", out["sched"]["items_per_exec"], out["sched"]["padding"] * 100,
                                 out["sched"]["busy"] * 100, out["sched"]["busy_ms_per_item"], out["sched"]["queue_ms"]))
    return out


def cli_bench_median(args, model_path, runs, batch=1):
    r = subprocess.run([args.cli, "bench", model_path, "--batch", str(batch), "--runs", str(runs), "--warmup", "5",
                        "--json"], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit("inferbooster bench failed: " + r.stderr)
    return json.loads(r.stdout)["median_ms"]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--phases", default="stress,batching,overhead,soak")
    ap.add_argument("--stress-clients", type=int, default=64)
    ap.add_argument("--stress-secs", type=float, default=60)
    ap.add_argument("--batch-clients", type=int, default=16)
    ap.add_argument("--batch-secs", type=float, default=30)
    ap.add_argument("--latency-secs", type=float, default=20)
    ap.add_argument("--soak-secs", type=float, default=600)
    ap.add_argument("--soak-clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv[1:])
    phases = set(a.phases.split(","))
    resnet = None
    if phases & {"batching", "overhead"}:
        mdir = os.path.join(BENCH, "models")
        compare.ensure_models(["resnet50"], mdir)
        resnet = os.path.join(mdir, "resnet50", "model.onnx")
    results, verdicts = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repository(tmp, resnet)
        log("starting the server (compiling and warming every model first)")
        t0 = time.time()
        srv = Server(a.cli, repo, os.path.join(tmp, "server.log"))
        results["startup_s"] = round(time.time() - t0, 1)
        log("ready after %.1f s, RSS %.0f MB" % (results["startup_s"], srv.rss_mb()))
        try:
            if "stress" in phases:
                s = loadgen(a, srv, "mlp", a.stress_clients, a.stress_secs, False)
                results["stress"] = s
                verdicts.append(("%d clients x %g s, zero errors" % (a.stress_clients, a.stress_secs),
                                 "%d errors in %d requests" % (s["errors"], s["requests"]), s["errors"] == 0))
            # Shared machines drift: the two sides of each ratio alternate in --rounds short
            # runs, and the ratio is that of their medians.
            if "batching" in phases:
                b1s, dyns, x2s = [], [], []
                for _ in range(a.rounds):
                    b1s.append(loadgen(a, srv, "resnet50_b1", a.batch_clients, a.batch_secs / a.rounds, True, warmup=3))
                    dyns.append(loadgen(a, srv, "resnet50_dyn", a.batch_clients, a.batch_secs / a.rounds, True, warmup=3))
                    x2s.append(loadgen(a, srv, "resnet50_b1x2", a.batch_clients, a.batch_secs / a.rounds, True, warmup=3))
                b1 = statistics.median(r["inferences_per_s"] for r in b1s)
                dyn = statistics.median(r["inferences_per_s"] for r in dyns)
                errors = sum(r["errors"] for r in b1s + dyns)
                ratio = dyn / b1 if b1 else 0
                # The ceiling: what batching saves per image in the compiled model itself
                # (`inferbooster bench` at batch 1 and at the max batch, same model).
                per_image = {}
                for b in (1, 16):
                    per_image[b] = cli_bench_median(a, resnet, 10, batch=b) / b
                    log("  inferbooster bench --batch %d: %.2f ms per image" % (b, per_image[b]))
                ceiling = per_image[1] / per_image[16] if per_image[16] else 0
                log("  batching ceiling (per-image cost batch 1 / batch 16): %.2fx" % ceiling)
                x2 = statistics.median(r["inferences_per_s"] for r in x2s)
                log("  for comparison, batch 1 on 2 instances / 1 instance: %.2fx" % (x2 / b1 if b1 else 0))
                results["batching"] = {"batch1": b1s, "dynamic": dyns, "batch1_2instances": x2s, "ratio": ratio,
                                       "per_image_ms": per_image, "ceiling": ceiling}
                verdicts.append(("resnet50 dynamic batching / batch-1 at %d clients >= 1.5" % a.batch_clients,
                                 "%.2fx (%.1f vs %.1f inf/s, %d errors; ceiling %.2fx)" % (
                                     ratio, dyn, b1, errors, ceiling),
                                 ratio >= 1.5 and errors == 0))
            if "overhead" in phases:
                # Compiled once into an artifact (the same generated code the server runs),
                # so each round's `inferbooster bench` does not compile again.
                artifact = os.path.join(tmp, "resnet50_b1.ibc")
                r = subprocess.run([a.cli, "compile", resnet, "--batch", "1", "-o", artifact],
                                   capture_output=True, text=True, timeout=1800)
                if r.returncode != 0:
                    raise SystemExit("inferbooster compile failed: " + r.stderr)
                ones, medians = [], []
                for _ in range(a.rounds):
                    ones.append(loadgen(a, srv, "resnet50_b1", 1, a.latency_secs / a.rounds, True, warmup=1))
                    runs = max(10, int(a.latency_secs / a.rounds * 1000 / max(ones[-1]["p50_ms"], 1)))
                    medians.append(cli_bench_median(a, artifact, runs))
                    log("  inferbooster bench --batch 1: median %.3f ms (%d runs)" % (medians[-1], runs))
                p50 = statistics.median(r["p50_ms"] for r in ones)
                median = statistics.median(medians)
                ratio = p50 / median if median else 0
                results["overhead"] = {"server": ones, "bench_median_ms": medians, "ratio": ratio}
                verdicts.append(("resnet50 1 client binary: server p50 / bench median <= 1.05",
                                 "%.3fx (%.2f vs %.2f ms)" % (ratio, p50, median), ratio <= 1.05))
            if "soak" in phases:
                samples = []
                done = threading.Event()

                def sample():
                    while not done.wait(min(5.0, max(a.soak_secs / 40, 0.5))):
                        samples.append((time.time(), srv.rss_mb()))
                th = threading.Thread(target=sample)
                th.start()
                s = loadgen(a, srv, "mlp", a.soak_clients, a.soak_secs, False, warmup=0)
                done.set()
                th.join()
                steady = [mb for _, mb in samples[len(samples) // 10:]] or [srv.rss_mb()]
                med = statistics.median(steady)
                lo, hi = min(steady), max(steady)
                flat = s["errors"] == 0 and lo >= med * 0.95 and hi <= med * 1.05
                results["soak"] = {"load": s, "rss_mb": steady, "median_mb": med, "min_mb": lo, "max_mb": hi}
                verdicts.append(("RSS flat +-5%% over a %g s soak (%d clients)" % (a.soak_secs, a.soak_clients),
                                 "%.1f..%.1f MB around %.1f, %d errors" % (lo, hi, med, s["errors"]), flat))
        finally:
            rc = srv.stop()
        results["shutdown_rc"] = rc
    results["verdicts"] = [{"target": t, "measured": m, "pass": p} for t, m, p in verdicts]
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        print("%-64s %-40s %s" % ("target", "measured", "verdict"))
        for t, m, p in verdicts:
            print("%-64s %-40s %s" % (t, m, "PASS" if p else "FAIL"))
        print("server startup (compile + warm-up) %.1f s; SIGTERM exit status %d" % (results["startup_s"], rc))
    return 0 if all(p for _, _, p in verdicts) and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
