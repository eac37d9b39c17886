#!/bin/bash
# Soak: a real `inferbooster serve` under N keep-alive clients for a fixed time, its RSS
# (VmRSS from /proc) sampled at an interval and printed as a table, then start (first
# sample after the warm-up), end, min, max and drift in percent of start. Exits 1 when the
# load had errors or the end or max RSS is more than --tolerance % above the start (the
# acceptance: flat within +-5% over 10 minutes). Not part of `make test`.
#
# usage: bench/soak.sh [--secs 600] [--clients 4] [--model mlp] [--repo DIR]
#                      [--interval 10] [--warmup 30] [--tolerance 5] [--binary] [--nice N]
#   --repo      model repository (default examples/model_repository)
#   --warmup    seconds of load before the start sample (allocator and caches settle)
#   --nice N    run the server and the clients at nice N (19 on a shared machine)
#   IB_BUILD: the build directory to use (default build); it must already be built.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${IB_BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
secs=600 clients=4 model=mlp repo=$SRC/examples/model_repository interval=10 warmup=30 tol=5
binary=() nice_n=0
while [ $# -gt 0 ]; do
    case $1 in
    --secs) secs=$2; shift ;;
    --clients) clients=$2; shift ;;
    --model) model=$2; shift ;;
    --repo) repo=$2; shift ;;
    --interval) interval=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --tolerance) tol=$2; shift ;;
    --binary) binary=(--binary) ;;
    --nice) nice_n=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for x in "$secs" "$clients" "$interval" "$warmup" "$tol"; do
    case $x in ''|*[!0-9]*) echo "soak.sh: '$x' is not a whole number" >&2; exit 2 ;; esac
done
[ "$interval" -ge 1 ] || { echo "soak.sh: --interval must be >= 1" >&2; exit 2; }
for b in inferbooster inferbooster-loadgen; do
    [ -x "$BUILD/$b" ] || { echo "soak.sh: $BUILD/$b is missing (build first)" >&2; exit 2; }
done

tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

nice -n "$nice_n" "$BUILD/inferbooster" serve --model-repository "$repo" --http-port 0 \
    --compile-before-ready >"$tmp/server.log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 600); do
    port=$(sed -n 's|.*listening on http://[^:]*:\([0-9]*\).*|\1|p' "$tmp/server.log")
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.5
done
[ -n "$port" ] || { echo "soak.sh: the server did not start:" >&2; tail -20 "$tmp/server.log" >&2; exit 1; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0; }

total=$((warmup + secs))
nice -n "$nice_n" "$BUILD/inferbooster-loadgen" --url "http://127.0.0.1:$port" --model "$model" \
    --concurrency "$clients" --duration "$total" --warmup 0 "${binary[@]+"${binary[@]}"}" \
    >"$tmp/load.txt" 2>&1 &
load_pid=$!

echo "soak: model $model, $clients clients, ${secs} s after ${warmup} s warm-up, RSS every ${interval} s (server pid $server_pid)"
sleep "$warmup"
start=$(rss_kb)
samples=("$start")
printf "  %6s s  %9s KB\n" 0 "$start"
t=0
while [ $t -lt "$secs" ]; do
    step=$interval
    [ $((t + step)) -gt "$secs" ] && step=$((secs - t))
    sleep "$step"
    t=$((t + step))
    kb=$(rss_kb)
    samples+=("$kb")
    printf "  %6s s  %9s KB\n" "$t" "$kb"
done
load_rc=0
wait "$load_pid" || load_rc=$?
end=${samples[-1]}
max=$start min=$start
for kb in "${samples[@]}"; do
    [ "$kb" -gt "$max" ] && max=$kb
    [ "$kb" -lt "$min" ] && min=$kb
done
echo "load:"
sed 's/^/  /' "$tmp/load.txt"
awk -v s="$start" -v e="$end" -v mx="$max" -v mn="$min" -v n="${#samples[@]}" -v tol="$tol" 'BEGIN {
    printf "RSS: start %.1f MB, end %.1f MB, min %.1f MB, max %.1f MB (%d samples)\n", s/1024, e/1024, mn/1024, mx/1024, n
    printf "drift: end %+.2f%%, max %+.2f%% of start (tolerance %d%%)\n", (e-s)*100/s, (mx-s)*100/s, tol
}'
ok=1
[ "$load_rc" -eq 0 ] || { echo "FAIL: the load generator reported errors (exit $load_rc)"; ok=0; }
awk -v s="$start" -v e="$end" -v mx="$max" -v tol="$tol" 'BEGIN { exit !((e-s)*100 <= tol*s && (mx-s)*100 <= tol*s) }' ||
    { echo "FAIL: RSS grew more than ${tol}% over the soak"; ok=0; }
kill -TERM "$server_pid"
src=0
wait "$server_pid" || src=$?
server_pid=
[ "$src" -eq 0 ] || { echo "FAIL: the server exited $src on SIGTERM"; ok=0; }
[ $ok = 1 ] && echo "PASS"
[ $ok = 1 ]
