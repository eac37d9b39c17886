#!/bin/bash
# The inference server's acceptance benchmarks (bench/serve_bench.py has the details):
# 64 clients x 60 s with zero errors, resnet50 dynamic batching vs batch-1 serving at 16
# clients, 1-client binary p50 vs `inferbooster bench`, and RSS over a soak. Builds first,
# exports resnet50 into bench/models once. Not part of `make test`: it takes minutes (the
# default 600 s soak alone ten) and wants a quiet machine.
#
# usage: bench/serve_bench.sh [--phases stress,batching,overhead,soak] [--soak-secs 600]
#                             [--stress-secs 60] [--batch-secs 30] [--latency-secs 20]
#                             [--json] [--no-build]
#   IB_BUILD: the build directory to use (default build).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${IB_BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
build=1
args=()
for a in "$@"; do
    if [ "$a" = "--no-build" ]; then build=0; else args+=("$a"); fi
done
if [ $build = 1 ]; then
    make -C "$SRC" --no-print-directory build BUILD="$BUILD" >&2
fi
exec /usr/bin/python3 "$SRC/bench/serve_bench.py" --cli "$BUILD/inferbooster" \
    --loadgen "$BUILD/inferbooster-loadgen" "${args[@]+"${args[@]}"}"
