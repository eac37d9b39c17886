#!/bin/bash
# Transfer across models: tunes TO (default resnet18) from an empty database and from a copy
# of the database that tuning FROM (default resnet50) left, the same trials per task, and
# prints how many of the from-scratch run's trials the second run needs to reach the
# from-scratch run's final latency. The latency after each trial is the tuner's estimate of
# the model: the sum over TO's tasks of occurrences x the best time measured so far, each
# taken relative to the defaults timed in the same batch (the VM's speed drifts) times
# the defaults' median time (a task not yet measured counts at its defaults). The
# from-scratch trials include the defaults' measurements, as the runs do. Both runs skip
# the in-model check (it times whole models, not trials). Takes minutes: not in `make test`.
#
# usage: bench/tune_transfer.sh CLI [--from MODEL.onnx] [--to MODEL.onnx] [--trials N]
#                               [--chunks K] [--from-db DB.jsonl] [--keep DIR] [--tolerance F]
#   --from-db: start from this database instead of tuning FROM (it is copied, not changed)
#   --tolerance: "reached" means within this fraction of the final latency (default 0.01)
#   --chunks: the two TO runs alternate in K steps of the trial count (default 4)
set -u
if [ $# -lt 1 ]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
SRC=$(cd "$(dirname "$0")/.." && pwd)
CLI=$1
shift
FROM=$SRC/bench/models/resnet50/model.onnx TO=$SRC/bench/models/resnet18/model.onnx
TRIALS=64 CHUNKS=4 FROM_DB= KEEP= TOL=0.01
while [ $# -gt 0 ]; do
    case $1 in
        --from) FROM=$2; shift 2 ;;
        --to) TO=$2; shift 2 ;;
        --trials) TRIALS=$2; shift 2 ;;
        --chunks) CHUNKS=$2; shift 2 ;;
        --from-db) FROM_DB=$2; shift 2 ;;
        --keep) KEEP=$2; shift 2 ;;
        --tolerance) TOL=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for m in "$FROM" "$TO"; do
    [ -f "$m" ] || { echo "no model at $m (bench/compare.sh exports them)" >&2; exit 2; }
done
if [ -n "$KEEP" ]; then
    WORK=$KEEP
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/ib_tune_transfer.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi
tune() { # MODEL DB LOG [TRIALS]
    echo "tune $(basename "$(dirname "$1")") -> $(basename "$2") (${4:-$TRIALS} trials per task)" >&2
    "$CLI" tune "$1" --trials "${4:-$TRIALS}" --no-model-check --db "$2" >> "$3" 2>&1 ||
        { tail -n 20 "$3" >&2; exit 1; }
    tail -n 1 "$3" >&2
}
if [ -n "$FROM_DB" ]; then
    cp "$FROM_DB" "$WORK/from.jsonl" || exit 1
else
    rm -f "$WORK/from.jsonl" "$WORK/from.log"
    tune "$FROM" "$WORK/from.jsonl" "$WORK/from.log"
fi
rm -f "$WORK/scratch.jsonl" "$WORK/scratch.log" "$WORK/transfer.log"
cp "$WORK/from.jsonl" "$WORK/transfer.jsonl"
wc -l < "$WORK/transfer.jsonl" > "$WORK/transfer.before"
# the two runs alternate in CHUNKS steps of the trial count (the tuner continues from its
# database), so that a slow spell of the shared machine hits both, not one: measured 3
# minutes apart on this VM the same kernel with the same knobs once read 0.40 and 0.56 ms
for c in $(seq 1 "$CHUNKS"); do
    n=$((TRIALS * c / CHUNKS))
    tune "$TO" "$WORK/scratch.jsonl" "$WORK/scratch.log" "$n"
    tune "$TO" "$WORK/transfer.jsonl" "$WORK/transfer.log" "$n"
done
"$CLI" tune "$TO" --list-tasks --json --db "$WORK/scratch.jsonl" > "$WORK/tasks.json" || exit 1

/usr/bin/python3 - "$WORK" "$TOL" <<'EOF'
import json, sys
work, tol = sys.argv[1], float(sys.argv[2])
info = json.load(open(f"{work}/tasks.json"))
target, tasks = info["target"], info["tasks"]
count = {t["key"]: t["count"] for t in tasks}
label = {t["key"]: t["label"] for t in tasks}

def records(path, skip=0):
    out = []
    for i, line in enumerate(open(path)):
        if i < skip:
            continue
        r = json.loads(line)
        if r.get("target") == target and r.get("scope") != "model" and r["key"] in count:
            out.append(r)
    return out

scratch = records(f"{work}/scratch.jsonl")
before = int(open(f"{work}/transfer.before").read())
prior = records(f"{work}/from.jsonl")
transfer = records(f"{work}/transfer.jsonl", before)
# Times relative to the defaults timed next to each (ref_ms, in the same batch): this VM's
# speed drifts by up to 40% over minutes, and absolute times from different runs compare
# the moments more than the knobs. A task's best is its least ratio; the estimate weighs
# each task's ratio by its defaults' time (the median reference over both runs). A task not
# measured yet counts at its defaults (ratio 1).
def rel(r):
    return r["ms"] / r["ref_ms"] if r.get("ref_ms") else None

refs = {}
for r in scratch + transfer + prior:
    if r["ok"] and r.get("ref_ms"):
        refs.setdefault(r["key"], []).append(r["ref_ms"])
missing = [label[k] for k in count if k not in refs]
if missing:
    sys.exit(f"no record with a reference time (ref_ms) for: {', '.join(missing)}")
default = {k: sorted(v)[len(v) // 2] for k, v in refs.items()}

def curve(start, recs):
    best = {}
    def see(r):
        q = rel(r)
        if r["ok"] and q is not None and (r["key"] not in best or q < best[r["key"]]):
            best[r["key"]] = q
    for r in start:
        see(r)
    est = lambda: sum(c * default[k] * best.get(k, 1.0) for k, c in count.items())
    points = [est()]
    for r in recs:
        see(r)
        points.append(est())
    return points, {k: default[k] * q for k, q in best.items()}

sc, sc_best = curve([], scratch)
tr, tr_best = curve(prior, transfer)
final = sc[-1]
reach = next((i for i, v in enumerate(tr) if v <= final * (1 + tol)), None)
shared = sum(1 for k in count if any(r["key"] == k for r in prior))
print(f"tasks of the model: {len(count)}, {shared} with records in the first database")
print(f"from scratch: {len(scratch)} trials, estimate {sc[0]:.3f} ms (defaults) -> {final:.3f} ms")
print(f"transfer:     {len(transfer)} trials, estimate {tr[0]:.3f} ms at trial 0 -> {tr[-1]:.3f} ms")
if reach is None:
    print(f"transfer run never within {tol:.0%} of {final:.3f} ms")
else:
    print(f"transfer run within {tol:.0%} of the from-scratch final after {reach} trials: "
          f"{reach / len(scratch):.1%} of {len(scratch)}")
quarter = len(scratch) // 4
at = tr[min(quarter, len(tr) - 1)]
print(f"estimate after {quarter} trials (25%): transfer {at:.3f} ms = {at / final:.3f}x the final; "
      f"from scratch {sc[min(quarter, len(sc) - 1)]:.3f} ms")
print("per task: best ms (its ratio to the defaults x their median time) from scratch / with "
      "transfer (occurrences)")
for k, c in sorted(count.items(), key=lambda kv: -kv[1] * default[kv[0]]):
    print(f"  {label[k][:58]:58s} {sc_best.get(k, 0):8.4f} {tr_best.get(k, 0):8.4f}  x{c}")
EOF
