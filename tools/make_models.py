#!/usr/bin/python3
"""Exports the end-to-end test models (ResNet-50, MobileNetV2, a BERT-base encoder and small
variants of each) to ONNX with seeded random weights, plus inputs and PyTorch-computed outputs.
ResNet-18 (for bench/compare.sh) is exported only when named with --only.

Usage: make_models.py OUTDIR [--small] [--only NAME,...] [--time-only [--repeat N]]

For each model it writes OUTDIR/<name>/model.onnx, inputs/<input>.npy, expected/<output>.npy,
the same for a batch of 3 under cases/batch3/, and manifest.json (its "cases" list them). With --time-only it writes nothing and prints, per model, one line
"time NAME SECONDS" (PyTorch's best forward time, for benchmarks run next to ours).
Every parameter and buffer is re-drawn from a seeded generator, so an
executor that drops a bias, a norm shift or a running statistic cannot match by accident.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision

OPSET = 13
TOLERANCE = 1e-3


# ---- weight re-initialisation ------------------------------------------------------------

def _fan_in(weight):
    return int(np.prod(weight.shape[1:]))


def check_all_random(model, name):
    """Refuses a model in which some parameter or buffer kept a constant default (all
    zeros or all ones), which would let an executor that ignores it pass."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for tname, t in tensors:
        if not t.is_floating_point() or t.numel() < 2:
            continue
        if float(t.std()) == 0.0:
            raise SystemExit("%s: %s is constant (%g); it must be randomised" % (name, tname, float(t.flatten()[0])))


def randomize_cnn(model, gen, residual_scale=1.0):
    """Random weights that keep a deep CNN's activations bounded.

    Convolutions get a fan-in scaled normal (He init), so each layer roughly preserves
    variance; BatchNorm gets random scale, shift and running statistics. The last BN of a
    residual branch (found by the caller) is shrunk by residual_scale so a 50-layer sum of
    branches does not grow without bound."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = _fan_in(module.weight)
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
                if module.bias is not None:
                    module.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.uniform_(-0.2, 0.2, generator=gen)
                module.running_mean.uniform_(-0.5, 0.5, generator=gen)
                module.running_var.uniform_(0.5, 1.5, generator=gen)
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0.0, math.sqrt(1.0 / module.in_features), generator=gen)
                if module.bias is not None:
                    module.bias.uniform_(-0.1, 0.1, generator=gen)


def randomize_resnet(model, gen):
    randomize_cnn(model, gen)
    with torch.no_grad():
        # Each bottleneck's output BN feeds a residual add; keep the branch smaller than
        # the identity so the sum over all blocks stays near unit scale.
        for module in model.modules():
            if isinstance(module, torchvision.models.resnet.Bottleneck):
                module.bn3.weight.mul_(0.2)
                module.bn3.bias.mul_(0.2)
            elif isinstance(module, torchvision.models.resnet.BasicBlock):
                module.bn2.weight.mul_(0.2)
                module.bn2.bias.mul_(0.2)


def randomize_mobilenet(model, gen):
    randomize_cnn(model, gen)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torchvision.models.mobilenetv2.InvertedResidual) and module.use_res_connect:
                last_bn = [m for m in module.conv.modules() if isinstance(m, nn.BatchNorm2d)][-1]
                last_bn.weight.mul_(0.3)
                last_bn.bias.mul_(0.3)


def randomize_transformer(model, gen):
    """normal(0, ~0.02) for BERT-base matrices (scaled by fan-in so the small variant's
    attention scores are not all near zero), random LayerNorm scale and shift, random biases."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 0.6 / math.sqrt(module.in_features), generator=gen)
                module.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 0.5, generator=gen)
            elif isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.uniform_(-0.2, 0.2, generator=gen)
        for name, param in model.named_parameters():
            if not any(param is p for m in model.modules()
                       if isinstance(m, (nn.Linear, nn.Embedding, nn.LayerNorm)) for p in m.parameters(recurse=False)):
                raise SystemExit("parameter %s has no random initialiser" % name)


# ---- BERT-style encoder --------------------------------------------------------------

class SelfAttention(nn.Module):
    def __init__(self, hidden, heads, seq):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.seq = seq
        self.hidden = hidden
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.output = nn.Linear(hidden, hidden)

    def _split(self, x):
        # Batch stays -1 so the exported Reshape targets are constants and batch is free.
        return x.reshape(-1, self.seq, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, mask_bias):
        q = self._split(self.query(x))
        k = self._split(self.key(x))
        v = self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores + mask_bias
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(-1, self.seq, self.hidden)
        return self.output(ctx)


class EncoderLayer(nn.Module):
    def __init__(self, hidden, heads, ffn, seq):
        super().__init__()
        self.attention = SelfAttention(hidden, heads, seq)
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.gelu = nn.GELU()  # erf form
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, mask_bias):
        x = self.attn_norm(x + self.attention(x, mask_bias))
        return self.ffn_norm(x + self.ffn_out(self.gelu(self.ffn_in(x))))


class BertEncoder(nn.Module):
    def __init__(self, vocab, hidden, layers, heads, ffn, seq, type_vocab=2):
        super().__init__()
        self.seq = seq
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(seq, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.embed_norm = nn.LayerNorm(hidden, eps=1e-12)
        # Built one by one: nn.TransformerEncoder deep-copies a single layer, and the
        # exporter would then share identical initial weights between layers.
        self.layers = nn.ModuleList([EncoderLayer(hidden, heads, ffn, seq) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(self.seq, dtype=torch.int64, device=input_ids.device)
        token_types = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions).unsqueeze(0)
             + self.token_type_embeddings(token_types))
        x = self.embed_norm(x)
        mask = attention_mask.to(torch.float32).unsqueeze(1).unsqueeze(2)
        mask_bias = (1.0 - mask) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return x, pooled


# ---- model table ---------------------------------------------------------------------

def build_resnet50(small):
    if small:
        model = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1],
                                                 num_classes=100)
        return model, 64
    return torchvision.models.resnet50(weights=None), 224


def build_resnet18(small):
    if small:
        model = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1],
                                                 num_classes=100)
        return model, 64
    return torchvision.models.resnet18(weights=None), 224


def build_mobilenet_v2(small):
    if small:
        return torchvision.models.mobilenet_v2(weights=None, width_mult=0.35, num_classes=100), 64
    return torchvision.models.mobilenet_v2(weights=None), 224


def make_cnn(name, small, seed):
    gen = torch.Generator().manual_seed(seed)
    if name.startswith("resnet50"):
        model, size = build_resnet50(small)
        randomize_resnet(model, gen)
    elif name.startswith("resnet18"):
        model, size = build_resnet18(small)
        randomize_resnet(model, gen)
    else:
        model, size = build_mobilenet_v2(small)
        randomize_mobilenet(model, gen)
    check_all_random(model, name)
    model.eval()
    x = torch.randn(1, 3, size, size, generator=gen)
    inputs = {"input": x}

    def batch(n):
        return {"input": torch.randn(n, 3, size, size, generator=gen)}
    spec = dict(
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return model, inputs, spec, batch


def make_bert(small, seed):
    gen = torch.Generator().manual_seed(seed)
    if small:
        cfg = dict(vocab=1000, hidden=64, layers=2, heads=4, ffn=256, seq=16)
    else:
        cfg = dict(vocab=30522, hidden=768, layers=12, heads=12, ffn=3072, seq=128)
    model = BertEncoder(**cfg)
    randomize_transformer(model, gen)
    check_all_random(model, "bert")
    model.eval()
    seq = cfg["seq"]
    ids = torch.randint(0, cfg["vocab"], (1, seq), generator=gen, dtype=torch.int64)
    mask = torch.ones(1, seq, dtype=torch.int64)
    mask[:, seq - seq // 4:] = 0  # padded tail, so the mask path matters
    inputs = {"input_ids": ids, "attention_mask": mask}

    def batch(n):
        ids_n = torch.randint(0, cfg["vocab"], (n, seq), generator=gen, dtype=torch.int64)
        mask_n = torch.ones(n, seq, dtype=torch.int64)
        for row in range(n):  # a different padded length per row
            mask_n[row, seq - (row * seq) // (2 * n):] = 0
        return {"input_ids": ids_n, "attention_mask": mask_n}
    spec = dict(
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"},
                      "last_hidden_state": {0: "batch"}, "pooler_output": {0: "batch"}},
    )
    return model, inputs, spec, batch


MODELS = {
    "resnet50": lambda small: make_cnn("resnet50", small, 50),
    "mobilenet_v2": lambda small: make_cnn("mobilenet_v2", small, 2),
    "bert": lambda small: make_bert(small, 12),
    "resnet18": lambda small: make_cnn("resnet18", small, 18),
}
# What an empty --only exports (the test suite's set); the others only when named.
DEFAULT_MODELS = ["resnet50", "mobilenet_v2", "bert"]


def _timed(model, args):
    start = time.perf_counter()
    model(*args)
    return time.perf_counter() - start


def write_case(mdir, case_dir, full_name, inputs, outputs, spec, manifest):
    """Saves one input/expected-output set under mdir/case_dir; describes it in manifest
    (the first case only) and returns a summary of the outputs' scale."""
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    base = os.path.join(mdir, case_dir)
    os.makedirs(os.path.join(base, "inputs"), exist_ok=True)
    os.makedirs(os.path.join(base, "expected"), exist_ok=True)
    for n in spec["input_names"]:
        arr = inputs[n].numpy()
        np.save(os.path.join(base, "inputs", n + ".npy"), arr)
        if manifest is not None:
            manifest["inputs"].append({"name": n, "shape": list(arr.shape), "dtype": str(arr.dtype)})
    stats = []
    for n, out in zip(spec["output_names"], outputs):
        arr = out.numpy()
        if not np.all(np.isfinite(arr)):
            raise SystemExit("%s: output %s is not finite" % (full_name, n))
        np.save(os.path.join(base, "expected", n + ".npy"), arr)
        if manifest is not None:
            manifest["outputs"].append({"name": n, "shape": list(arr.shape), "dtype": str(arr.dtype)})
        stats.append("%s std=%.4g max_abs=%.4g" % (n, float(arr.std()), float(np.abs(arr).max())))
    return stats


def export(name, small, outdir):
    t0 = time.time()
    model, inputs, spec, batch = MODELS[name](small)
    full_name = name + ("_small" if small else "")
    mdir = os.path.join(outdir, full_name)
    os.makedirs(mdir, exist_ok=True)
    args = tuple(inputs[n] for n in spec["input_names"])
    with torch.no_grad():
        outputs = model(*args)
        # The peer's time for the same forward pass (best of 3, after the warm-up above),
        # so benchmarks can report a ratio.
        torch_seconds = min(_timed(model, args) for _ in range(3))

    onnx_path = os.path.join(mdir, "model.onnx")
    tmp_path = onnx_path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(model, args, tmp_path, opset_version=OPSET, do_constant_folding=True,
                          **spec)
    os.replace(tmp_path, onnx_path)

    manifest = {"name": full_name, "opset": OPSET, "tolerance": TOLERANCE,
                "torch_threads": torch.get_num_threads(), "torch_forward_s": round(torch_seconds, 6),
                "inputs": [], "outputs": [], "cases": []}
    stats = write_case(mdir, ".", full_name, inputs, outputs, spec, manifest)
    manifest["cases"].append({"name": "batch1", "dir": "."})
    # A second case at batch 3 exercises the symbolic batch dimension.
    inputs3 = batch(3)
    with torch.no_grad():
        outputs3 = model(*(inputs3[n] for n in spec["input_names"]))
    write_case(mdir, os.path.join("cases", "batch3"), full_name, inputs3, outputs3, spec, None)
    manifest["cases"].append({"name": "batch3", "dir": "cases/batch3"})
    with open(os.path.join(mdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    size_mb = os.path.getsize(onnx_path) / 1e6
    print("%s: %.1f MB, torch forward %.3fs, total %.1fs; %s" % (
        full_name, size_mb, torch_seconds, time.time() - t0, "; ".join(stats)), flush=True)


def time_only(name, small, repeat):
    model, inputs, spec, _ = MODELS[name](small)
    args = tuple(inputs[n] for n in spec["input_names"])
    with torch.no_grad():
        model(*args)
        best = min(_timed(model, args) for _ in range(repeat))
    print("time %s %.6f" % (name + ("_small" if small else ""), best), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--small", action="store_true", help="export the small variants")
    parser.add_argument("--only", default="", help="comma-separated base names (%s)" % ",".join(MODELS))
    parser.add_argument("--time-only", action="store_true",
                        help="only time PyTorch's forward pass (writes nothing)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs for --time-only")
    opts = parser.parse_args()
    torch.set_num_threads(2)
    names = [n for n in opts.only.split(",") if n] or list(DEFAULT_MODELS)
    for n in names:
        base = n[:-6] if n.endswith("_small") else n
        if base not in MODELS:
            parser.error("unknown model %r (known: %s)" % (n, ", ".join(MODELS)))
    for n in names:
        base = n[:-6] if n.endswith("_small") else n
        if opts.time_only:
            time_only(base, opts.small or n.endswith("_small"), max(1, opts.repeat))
        else:
            export(base, opts.small or n.endswith("_small"), opts.outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
