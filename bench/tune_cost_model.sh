#!/bin/bash
# Cost model vs random + greedy search: tunes one task of MODEL from an empty database
# with the XGBoost cost model and with --no-cost-model, the same trial count, alternating
# over seeds so that load on a shared machine hits both alike (the measured children run
# at nice -20 as root: the tuner's own priority). Prints, per mode, the median over seeds
# of the best latency reached after each batch (relative to the defaults timed next to
# it), and the cost model's rank correlation on held-out measurements: the mean over its
# batches (scored before measuring) and the 5-fold cross-validated one over the task's
# records (the tune table's "cv corr"). With --transfer FROM.jsonl the cost-model runs
# start from a copy of that database (records of other workloads: transfer) instead of
# an empty one.
#
# usage: bench/tune_cost_model.sh CLI MODEL [--task K] [--trials N] [--seeds S]
#                                 [--transfer DB.jsonl]
set -u
if [ $# -lt 2 ]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
CLI=$1 MODEL=$2
shift 2
TASK=0 TRIALS=128 SEEDS=3 TRANSFER=
while [ $# -gt 0 ]; do
    case $1 in
        --task) TASK=$2; shift 2 ;;
        --trials) TRIALS=$2; shift 2 ;;
        --seeds) SEEDS=$2; shift 2 ;;
        --transfer) TRANSFER=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
WORK=$(mktemp -d /tmp/ib_tune_cm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for s in $(seq 1 "$SEEDS"); do
    for mode in cm nocm; do
        db=$WORK/$mode-$s.jsonl
        flag=
        if [ $mode = nocm ]; then flag=--no-cost-model
        elif [ -n "$TRANSFER" ]; then cp "$TRANSFER" "$db"; fi
        before=0
        [ -f "$db" ] && before=$(wc -l < "$db")
        "$CLI" tune "$MODEL" --task "$TASK" --trials "$TRIALS" --seed "$s" --db "$db" --no-model-check $flag \
            > "$WORK/$mode-$s.log" 2>&1 || { cat "$WORK/$mode-$s.log" >&2; exit 1; }
        echo "$before" > "$WORK/$mode-$s.before"
        tail -n 3 "$WORK/$mode-$s.log" | head -n 1 | sed "s/^/$mode seed $s: /"
    done
done
/usr/bin/python3 - "$WORK" "$SEEDS" <<'EOF'
import json, re, statistics, sys, glob, os
work, seeds = sys.argv[1], int(sys.argv[2])
for mode in ("cm", "nocm"):
    curves, rhos, cvs = [], [], []
    for s in range(1, seeds + 1):
        before = int(open(f"{work}/{mode}-{s}.before").read())
        recs = [json.loads(l) for l in open(f"{work}/{mode}-{s}.jsonl")][before:]
        best, curve = None, []
        for i, r in enumerate(recs):
            # relative to the defaults timed in the same batch: the VM's speed drifts
            q = r["ms"] / r["ref_ms"] if r["ok"] and r.get("ref_ms") else None
            if q is not None and (best is None or q < best):
                best = q
            if (i + 1) % 16 == 0 or i + 1 == len(recs):
                curve.append(best)
        curves.append(curve)
        log = open(f"{work}/{mode}-{s}.log").read()
        m = re.findall(r"mean of \d+: (-?[0-9.]+)", log)
        if m:
            rhos.append(float(m[-1]))
        # the summary table's last column: 5-fold cross-validated over the task's records
        row = [l for l in log.splitlines() if re.match(r"\d+ +\S+ ", l) and " -> " in l]
        if row and row[-1].split()[-1] != "-":
            cvs.append(float(row[-1].split()[-1]))
    n = min(len(c) for c in curves)
    med = [statistics.median(c[i] for c in curves) for i in range(n)]
    print("%-5s best time / the defaults' after each batch of 16 (median of %d seeds): %s" %
          (mode, seeds, " ".join("%.4f" % v for v in med)))
    if rhos:
        print("%-5s held-out rank correlation, mean over batches (per seed): %s" %
              (mode, " ".join("%.2f" % r for r in rhos)))
    if cvs:
        print("%-5s rank correlation, 5-fold cross-validated over the task's records (per seed): "
              "%s (median %.2f)" % (mode, " ".join("%.2f" % r for r in cvs), statistics.median(cvs)))
EOF
