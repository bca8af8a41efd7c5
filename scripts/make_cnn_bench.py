#!/usr/bin/env python3
"""Benchmark models for the 2-D CNN figures in the README (made at benchmark time, not
committed): torchvision resnet18 and mobilenet_v3_small at 224x224 (random weights, exported
with torch.onnx.export(dynamo=False), input named `input` as ../shared/peers/inproc expects),
and single same-padded 3x3 convolutions + ReLU with resnet18's shapes, cC_HW.onnx.

    python3 scripts/make_cnn_bench.py OUTDIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def single_convs(out):
    rng = np.random.default_rng(0)
    for c, hw in [(64, 56), (128, 28), (256, 14), (512, 7)]:
        w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        nodes = [
            helper.make_node("Conv", ["input", "W", "B"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["y"], ["out"]),
        ]
        g = helper.make_graph(
            nodes,
            "conv",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", c, hw, hw])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(m, os.path.join(out, f"c{c}_{hw}.onnx"))


def torchvision_models(out):
    import torch
    import torchvision

    torch.manual_seed(0)
    for name in ["resnet18", "mobilenet_v3_small"]:
        m = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        torch.onnx.export(
            m,
            x,
            os.path.join(out, f"{name}.onnx"),
            dynamo=False,
            input_names=["input"],
            output_names=["y"],
            dynamic_axes={"input": {0: "n"}, "y": {0: "n"}},
            opset_version=17,
        )


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    single_convs(out)
    torchvision_models(out)
    print("wrote", sorted(os.listdir(out)))
