#!/usr/bin/env python3
"""Fixtures for the ONNX layout tests (tests/onnx_layout.rs): small hand-built ONNX graphs in
which a tensor sinter tracks in a non-native layout (channels-first `[N, C, W]` after a
`Transpose(0, 2, 1)`, or `[N, C, 1]` after a global pooling) reaches a graph output, or is read
in ONNX's axis order (Flatten, Reshape, MatMul, Softmax, a Concat or Add of mixed layouts), and
ONNX Runtime's outputs for them.

What it makes (all in tests/fixtures/layout/; nothing else is touched):
  NAME.onnx          opset 17, input `x` batch-first, weights N(0, 1/sqrt(fan_in)) seeded by
                     crc32(NAME)
  NAME.input.npy     float32, 2 * N(0, 1)
  NAME.ort.out.npy   ONNX Runtime (default CPU provider) output, float32, with its full shape
  manifest.json      cases: name, model, input, expected, output_shape, layout, note

Run (from the repo root; deterministic):
    /tmp/venv/bin/python scripts/make_layout_fixtures.py
Needs onnx, onnxruntime, numpy (PyPI).
"""

import json
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "layout"
OPSET = 17
BATCH = 2


class Graph:
    """A graph under construction: nodes, initializers and fresh tensor names."""

    def __init__(self, name):
        self.name = name
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.nodes = []
        self.inits = []
        self.n = 0

    def fresh(self, base):
        self.n += 1
        return f"{base}{self.n}"

    def op(self, op_type, inputs, **attrs):
        out = self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def const(self, array, base="w"):
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weights(self, shape, fan_in):
        return self.rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32)

    def t(self, x):
        return self.op("Transpose", [x], perm=[0, 2, 1])

    def conv(self, x, cin, cout, k, pads):
        w = self.const(self.weights([cout, cin, k], cin * k))
        b = self.const(self.rng.normal(0, 0.1, [cout]).astype(np.float32), "b")
        return self.op("Conv", [x, w, b], kernel_shape=[k], pads=pads)

    def model(self, x_shape, y):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])
        # The output's declared shape comes from ONNX's own shape inference.
        g = helper.make_graph(self.nodes, self.name, [x], [], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        (info,) = [v for v in inferred.graph.value_info if v.name == y] or [
            v for v in inferred.graph.input if v.name == y
        ]
        m.graph.output.append(info)
        onnx.checker.check_model(m, full_check=True)
        return m


def cases():
    """(name, input shape without batch, layout reaching the output, note, builder)."""

    def only_transpose(g):
        return g.t("x")

    def transpose_relu(g):
        return g.op("Relu", [g.t("x")])

    def transpose_identity(g):
        return g.op("Identity", [g.t("x")])

    def transpose_dropout(g):
        return g.op("Dropout", [g.t("x")])

    def transpose_conv(g):
        return g.conv(g.t("x"), 3, 6, 3, [1, 1])

    def transpose_maxpool(g):
        return g.op("MaxPool", [g.t("x")], kernel_shape=[2], strides=[2])

    def transpose_avgpool(g):
        return g.op("AveragePool", [g.t("x")], kernel_shape=[3], strides=[1])

    def transpose_globalmaxpool(g):
        return g.op("GlobalMaxPool", [g.conv(g.t("x"), 3, 4, 3, [0, 0])])

    def transpose_globalavgpool(g):
        return g.op("GlobalAveragePool", [g.t("x")])

    def globalpool_relu(g):
        return g.op("Relu", [g.op("GlobalMaxPool", [g.t("x")])])

    def globalpool_transpose(g):
        return g.t(g.op("GlobalAveragePool", [g.t("x")]))

    def globalpool_flatten(g):
        return g.op("Flatten", [g.op("GlobalMaxPool", [g.t("x")])])

    def conv_concat(g):
        x = g.t("x")
        return g.op("Concat", [g.conv(x, 3, 4, 3, [1, 1]), g.conv(x, 3, 2, 5, [2, 2])], axis=1)

    def conv_concat_steps(g):
        x = g.t("x")
        return g.op("Concat", [g.conv(x, 3, 4, 3, [1, 1]), g.conv(x, 3, 4, 1, [0, 0])], axis=2)

    def conv_add(g):
        x = g.t("x")
        return g.op("Add", [g.conv(x, 3, 4, 3, [1, 1]), g.conv(x, 3, 4, 1, [0, 0])])

    def conv_flatten_gemm(g):
        y = g.op("Flatten", [g.op("Relu", [g.conv(g.t("x"), 3, 4, 3, [1, 1])])])
        w = g.const(g.weights([4 * 7, 5], 4 * 7))
        return g.op("Gemm", [y, w, g.const(np.zeros(5, np.float32), "b")])

    def conv_reshape(g):
        shape = g.const(np.array([0, -1], np.int64), "shape")
        return g.op("Reshape", [g.conv(g.t("x"), 3, 4, 3, [1, 1]), shape])

    def reshape_same(g):
        shape = g.const(np.array([0, 3, 7], np.int64), "shape")
        return g.op("Reshape", [g.t("x"), shape])

    def transpose_softmax(g):
        return g.op("Softmax", [g.t("x")], axis=-1)

    def transpose_matmul(g):
        return g.op("MatMul", [g.t("x"), g.const(g.weights([3, 5], 3))])

    def mixed_add(g):
        return g.op("Add", ["x", g.t("x")])

    def mixed_concat(g):
        return g.op("Concat", ["x", g.t("x")], axis=1)

    def transpose_back(g):
        return g.op("Relu", [g.t(g.conv(g.t("x"), 3, 6, 3, [1, 1]))])

    def permute_rank4(g):
        return g.op("Relu", [g.op("Transpose", ["x"], perm=[0, 3, 1, 2])])

    def image_conv(g):
        # An RGB image's first convolution: the padding step reads it channels-first.
        w = g.const(g.weights([16, 3, 3, 3], 27))
        b = g.const(g.rng.normal(0, 0.1, [16]).astype(np.float32), "b")
        y = g.op("Conv", ["x", w, b], kernel_shape=[3, 3], pads=[1, 2, 1, 0], strides=[1, 2])
        return g.op("Relu", [y])

    def permute_keeps_order(g):
        return g.op("Transpose", ["x"], perm=[0, 1, 3, 2])

    ncw = "channels-first [N, C, W]"
    nc1 = "global pooling [N, C, 1]"
    nat = "native"
    return [
        ("transpose", [3, 4], ncw, "Transpose(0,2,1) as the only node", only_transpose),
        ("transpose_relu", [3, 4], ncw, "Transpose -> Relu", transpose_relu),
        ("transpose_identity", [3, 4], ncw, "Transpose -> Identity", transpose_identity),
        ("transpose_dropout", [3, 4], ncw, "Transpose -> Dropout", transpose_dropout),
        ("transpose_conv", [7, 3], ncw, "Transpose -> Conv", transpose_conv),
        ("transpose_maxpool", [7, 3], ncw, "Transpose -> MaxPool", transpose_maxpool),
        ("transpose_avgpool", [7, 3], ncw, "Transpose -> AveragePool", transpose_avgpool),
        ("transpose_globalmaxpool", [7, 3], nc1, "Transpose -> Conv -> GlobalMaxPool", transpose_globalmaxpool),
        ("transpose_globalavgpool", [7, 3], nc1, "Transpose -> GlobalAveragePool", transpose_globalavgpool),
        ("globalpool_relu", [7, 3], nc1, "Transpose -> GlobalMaxPool -> Relu", globalpool_relu),
        ("globalpool_transpose", [7, 3], nat, "GlobalAveragePool -> Transpose: [N, 1, C]", globalpool_transpose),
        ("globalpool_flatten", [7, 3], nat, "GlobalMaxPool -> Flatten", globalpool_flatten),
        ("conv_concat", [7, 3], ncw, "two Convs -> Concat(axis=1), channels", conv_concat),
        ("conv_concat_steps", [7, 3], ncw, "two Convs -> Concat(axis=2), steps", conv_concat_steps),
        ("conv_add", [7, 3], ncw, "two Convs -> Add", conv_add),
        ("conv_flatten_gemm", [7, 3], nat, "Conv -> Relu -> channel-major Flatten -> Gemm", conv_flatten_gemm),
        ("conv_reshape", [7, 3], nat, "Conv -> Reshape([0, -1]), channel-major", conv_reshape),
        ("reshape_same", [7, 3], nat, "Transpose -> Reshape to the same [N, C, W]", reshape_same),
        ("transpose_softmax", [7, 3], nat, "Transpose -> Softmax over W", transpose_softmax),
        ("transpose_matmul", [3, 3], nat, "Transpose -> MatMul (W == C: a misread would pass shape checks)", transpose_matmul),
        ("mixed_add", [3, 3], nat, "Add(x, Transpose(x)): mixed layouts", mixed_add),
        ("mixed_concat", [3, 3], nat, "Concat(x, Transpose(x), axis=1): mixed layouts", mixed_concat),
        ("transpose_back", [7, 3], nat, "Transpose -> Conv -> Transpose -> Relu (control)", transpose_back),
        ("permute_rank4", [2, 3, 4], nat, "Transpose(0,3,1,2) of a rank-4 tensor -> Relu", permute_rank4),
        ("permute_rank4_last", [2, 3, 4], nat, "Transpose(0,1,3,2) of a rank-4 tensor", permute_keeps_order),
        ("image_conv", [3, 5, 50], "channels-first image [N, C, H, W]", "RGB Conv 3x3 with pads -> Relu", image_conv),
    ]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generated_by": "scripts/make_layout_fixtures.py",
        "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
        "opset": OPSET,
        "cases": [],
    }
    for name, shape, layout, note, build in cases():
        g = Graph(name)
        y = build(g)
        model = g.model(shape, y)
        path = OUT / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        x = (2 * np.random.default_rng(zlib.crc32(b"input:" + name.encode())).normal(size=[BATCH, *shape])).astype(np.float32)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = sess.run(None, {"x": x})
        np.save(OUT / f"{name}.input.npy", x)
        np.save(OUT / f"{name}.ort.out.npy", out.astype(np.float32))
        manifest["cases"].append(
            {
                "name": name,
                "model": f"{name}.onnx",
                "input": f"{name}.input.npy",
                "expected": f"{name}.ort.out.npy",
                "output_shape": list(out.shape),
                "layout": layout,
                "note": note,
            }
        )
        print(f"{name:26} {str(list(x.shape)):14} -> {str(list(out.shape)):14} {note}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
