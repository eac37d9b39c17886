#!/usr/bin/python3
"""Writes single-convolution ONNX models shaped like ResNet-50's 3x3 convolutions (batch 1, pad 1,
stride 1, bias as after BatchNorm folding, seeded random weights) for bench/conv_roofline, plus
convs.json listing each model with its FLOP count.

Usage: make_conv_models.py OUTDIR
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# name, input channels, height/width, output channels; stage 3 and 4 are the acceptance targets.
CONVS = [
    ("resnet50_stage1_3x3", 64, 56, 64, False),
    ("resnet50_stage2_3x3", 128, 28, 128, False),
    ("resnet50_stage3_3x3", 256, 14, 256, True),
    ("resnet50_stage4_3x3", 512, 7, 512, True),
]


def make_conv(name, cin, hw, cout, seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
    node = helper.make_node("Conv", ["input", "W", "B"], ["output"], name=name, kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1)
    graph = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, cin, hw, hw])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, hw, hw])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="inferbooster-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    listing = []
    for i, (name, cin, hw, cout, target) in enumerate(CONVS):
        path = os.path.join(outdir, name + ".onnx")
        onnx.save(make_conv(name, cin, hw, cout, 1000 + i), path)
        # One multiply-add = 2 FLOPs; the bias add is not counted.
        flops = 2 * cout * hw * hw * cin * 9
        listing.append({"name": name, "path": path, "shape": "1x%dx%dx%d -> %d" % (cin, hw, hw, cout),
                        "flops": flops, "acceptance": target})
    with open(os.path.join(outdir, "convs.json"), "w") as f:
        json.dump(listing, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
