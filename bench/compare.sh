#!/bin/bash
# InferBooster against ONNX Runtime in the same run: builds, installs ONNX Runtime for Node if
# missing, compiles the FMA peak probe, exports the models into bench/models, then runs both
# runtimes alternately and prints one table (bench/compare.py has the details). Not part of
# `make test`: it takes minutes and wants a quiet machine.
#
# usage: bench/compare.sh [--models resnet18,resnet50,mobilenet_v2,bert] [--batch 1,8]
#                         [--runs N] [--repeats K] [--warmup W] [--threads T] [--json]
#                         [--no-roofline] [--no-accuracy] [--ib-run] [--ib-reference] [--no-build]
#                         [--priority]  (root: measured processes at autogroup nice -20)
#   IB_BUILD: the build directory to use (default build); the CLI is $IB_BUILD/inferbooster.
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
"$SRC/bench/setup_ort.sh"
mkdir -p "$BUILD/bench"
# Rebuilt every time: -march=native must describe the machine the numbers come from.
cc -O2 -march=native -pthread -o "$BUILD/bench/peak_flops" "$SRC/bench/peak_flops.c"
exec /usr/bin/python3 "$SRC/bench/compare.py" --cli "$BUILD/inferbooster" \
    --peak-flops "$BUILD/bench/peak_flops" "${args[@]+"${args[@]}"}"
