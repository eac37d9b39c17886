#!/usr/bin/python3
"""Writes the bundled example model for `make serve`: a small seeded-random MLP classifier.

Usage: make_example_model.py [OUTDIR]   (default: examples/models/mlp next to this script)

  input "input" float32 [batch,16] -> Gemm 16x32 -> Relu -> Gemm 32x4 -> Softmax
  -> output "probabilities" float32 [batch,4]

Also writes input.npy (one batch of 2 rows) and expected_probabilities.npy computed with
numpy, so a run can be checked by hand. Built with onnx.helper alone (no torch), so the
file is small and the same on every machine.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IN_FEATURES, HIDDEN, CLASSES = 16, 32, 4


def build(rng):
    w1 = (rng.standard_normal((HIDDEN, IN_FEATURES)) / np.sqrt(IN_FEATURES)).astype(np.float32)
    b1 = rng.uniform(-0.1, 0.1, HIDDEN).astype(np.float32)
    w2 = (rng.standard_normal((CLASSES, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32)
    b2 = rng.uniform(-0.1, 0.1, CLASSES).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "fc1.weight"), (b1, "fc1.bias"), (w2, "fc2.weight"), (b2, "fc2.bias"))]
    nodes = [
        # transB=1: weights stored [out, in], as PyTorch's Linear exports them.
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["hidden"], name="fc1", transB=1),
        helper.make_node("Relu", ["hidden"], ["hidden_relu"], name="relu"),
        helper.make_node("Gemm", ["hidden_relu", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp_example",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", IN_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="inferbooster-make_example_model",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, (w1, b1, w2, b2)


def forward(x, params):
    w1, b1, w2, b2 = params
    h = np.maximum(x @ w1.T + b1, 0.0)
    logits = h @ w2.T + b2
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def main(argv):
    outdir = argv[1] if len(argv) > 1 else os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "examples", "models", "mlp"))
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(16324)
    model, params = build(rng)
    x = rng.standard_normal((2, IN_FEATURES)).astype(np.float32)
    onnx.save(model, os.path.join(outdir, "model.onnx"))
    np.save(os.path.join(outdir, "input.npy"), x)
    np.save(os.path.join(outdir, "expected_probabilities.npy"), forward(x, params))
    print("wrote %s (%d bytes)" % (os.path.join(outdir, "model.onnx"),
                                   os.path.getsize(os.path.join(outdir, "model.onnx"))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
