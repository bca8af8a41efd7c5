#!/usr/bin/env python3
"""torchvision models as the torch exporters write them, small enough to commit:
`squeezenet1_1` (Fire modules: Concat on channels, MaxPool ceil_mode) and
`mobilenet_v3_small` (width_mult 0.25: depthwise convs, hard-swish, squeeze-and-excitation
with HardSigmoid), both with num_classes=10, random weights and randomized BatchNorm
statistics, on a [2, 3, 64, 64] input. Each tensor's weights are rounded to 5 significant
bits (std * 2^k ~ 16), so the files compress in git; the model is as random as before.

Writes tests/fixtures/torchvision/NAME.onnx (+ NAME.onnx.data for the dynamo exporter),
NAME.in0.npy, NAME.out0.npy (torch's forward) and manifest.json (the schema of
tests/fixtures/exporters/manifest.json), for tests/exporters.rs.

Run from the repo root (needs torch and torchvision; deterministic):
    python3 scripts/make_torchvision_fixtures.py
"""
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "torchvision"


def build(name):
    torch.manual_seed(0)
    if name == "tv_squeezenet":
        m = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    else:
        m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10, width_mult=0.25)
    m.eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.3)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.normal_(1.0, 0.2)
                mod.bias.normal_(0, 0.2)
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and mod.bias is not None:
                mod.bias.normal_(0, 0.1)
        for t in list(m.parameters()) + list(m.buffers()):
            if t.dtype == torch.float32 and t.numel() > 1 and t.std() > 0:
                k = float(np.floor(np.log2(16 / float(t.std()))))
                t.copy_(torch.round(t * 2**k) / 2**k)
    return m


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.iterdir():
        p.unlink()
    cases = []
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((2, 3, 64, 64)).astype(np.float32))
    for name, exporters in [("tv_squeezenet", ["ts"]), ("tv_mobilenet", ["ts", "dynamo"])]:
        m = build(name)
        with torch.no_grad():
            y = m(x).numpy()
        assert np.abs(y).max() > 1e-2, (name, np.abs(y).max())
        for e in exporters:
            case = f"{name}.{e}"
            path = OUT / f"{case}.onnx"
            torch.onnx.export(m, (x,), str(path), dynamo=(e == "dynamo"), input_names=["input"],
                              output_names=["logits"])
            model = onnx.load(str(path))
            np.save(OUT / f"{case}.in0.npy", x.numpy())
            np.save(OUT / f"{case}.out0.npy", y)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            diff = float(np.abs(sess.run(None, {"input": x.numpy()})[0] - y).max())
            ops = sorted({n.op_type for n in model.graph.node})
            cases.append({
                "name": case, "model": f"{case}.onnx",
                "exporter": f"torch {torch.__version__} "
                            f"{'dynamo' if e == 'dynamo' else 'TorchScript'} exporter",
                "opset": model.opset_import[0].version, "ops": ops,
                "inputs": [{"name": "input", "file": f"{case}.in0.npy", "shape": list(x.shape)}],
                "outputs": [{"name": "logits", "file": f"{case}.out0.npy", "shape": list(y.shape)}],
                "max_abs_ort_vs_framework": [diff],
            })
            print(f"{case:24} {os.path.getsize(path):>8} bytes  |ort - torch| {diff:.1e}  {ops}")
    (OUT / "manifest.json").write_text(json.dumps({
        "generated_by": "scripts/make_torchvision_fixtures.py",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
