#!/bin/bash
# Installs ONNX Runtime for Node (onnxruntime-node, pinned in bench/package.json and
# package-lock.json) into bench/node_modules when it is missing. The npm package already
# holds the native CPU library; its postinstall would fetch GPU binaries, which
# ONNXRUNTIME_NODE_INSTALL=skip turns off. Nothing else is downloaded, here or at run time.
set -eu
BENCH=$(cd "$(dirname "$0")" && pwd)
VERSION=$(sed -n 's/.*"onnxruntime-node": *"\([^"]*\)".*/\1/p' "$BENCH/package.json" | head -n 1)
if [ -z "$VERSION" ]; then
    echo "setup_ort: no onnxruntime-node version pinned in $BENCH/package.json" >&2
    exit 1
fi
installed() {
    (cd "$BENCH" && node -e "
        const v = require('./node_modules/onnxruntime-node/package.json').version;
        if (v !== process.argv[1]) process.exit(1);
        require('./node_modules/onnxruntime-node');" "$VERSION") >/dev/null 2>&1
}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup_ort: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
if installed; then
    exit 0
fi
echo "setup_ort: installing onnxruntime-node@$VERSION into $BENCH/node_modules" >&2
cd "$BENCH"
# The lock file pins the whole tree; fall back to a plain install if it is out of step.
if ! ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund >&2; then
    ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --save-exact "onnxruntime-node@$VERSION" >&2
fi
if ! installed; then
    echo "setup_ort: onnxruntime-node@$VERSION did not load after installing" >&2
    exit 1
fi
