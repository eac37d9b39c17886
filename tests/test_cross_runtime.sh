#!/bin/bash
# Builds the deployable runtime for 64-bit ARM as `make cross` does (the fixture of the
# other cross tests, which run its inferbooster-run under qemu-aarch64) and checks the
# runner is aarch64 code that needs nothing beyond libc, libm, libpthread and libdl.
#
# usage: test_cross_runtime.sh BUILDDIR   (the runner ends up at BUILDDIR/inferbooster-run)
set -u
if [ $# -ne 1 ]; then
    echo "usage: $0 BUILDDIR" >&2
    exit 2
fi
SRC=$(cd "$(dirname "$0")/.." && pwd)
RT=$1
SYSROOT=/usr/aarch64-linux-gnu
passed=0
failed=0
pass() { echo "pass $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ $failed -eq 0 ]; exit $?; }

missing=""
command -v aarch64-linux-gnu-gcc >/dev/null || missing="$missing gcc-aarch64-linux-gnu"
command -v qemu-aarch64 >/dev/null || missing="$missing qemu-user"
[ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] || missing="$missing libc6-dev-arm64-cross"
if [ -n "$missing" ]; then
    echo "the aarch64 tests need the Debian packages:$missing (make deps installs them)" >&2
    fail "toolchain"
    finish
fi
mkdir -p "$RT"
if cmake -S "$SRC" -B "$RT" -DCMAKE_TOOLCHAIN_FILE="$SRC/cmake/aarch64-linux-gnu.cmake" \
        -DCMAKE_BUILD_TYPE=Release -DIB_WERROR=ON > "$RT/build.log" 2>&1 &&
    cmake --build "$RT" -j2 >> "$RT/build.log" 2>&1; then
    pass "cross build of inferbooster-run"
else
    tail -n 30 "$RT/build.log" | sed 's/^/    /'
    fail "cross build of inferbooster-run"
    finish
fi
RUNNER=$RT/inferbooster-run
needed=$(readelf -d "$RUNNER" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
extra=$(for l in $needed; do
    case $l in libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|ld-linux-aarch64.so.*) ;; *) echo "$l" ;; esac
done)
if readelf -h "$RUNNER" | grep -q AArch64 && [ -z "$extra" ]; then
    pass "runner is aarch64 code and needs only: $needed"
else
    fail "runner needs more than libc/libm/libpthread/libdl: $needed"
fi
out=$(qemu-aarch64 -L "$SYSROOT" "$RUNNER" --help 2>&1); rc=$?
if [ $rc -eq 0 ] && echo "$out" | grep -q "usage: inferbooster-run"; then
    pass "runner starts under qemu-aarch64"
else
    fail "runner under qemu-aarch64: rc=$rc $out"
fi
out=$(qemu-aarch64 -L "$SYSROOT" "$RUNNER" /nonexistent 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q "not a directory"; then
    pass "missing artifact refused"
else
    fail "missing artifact: rc=$rc $out"
fi
finish
