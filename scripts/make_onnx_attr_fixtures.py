#!/usr/bin/env python3
"""1-D window attributes the ONNX backend node tests only exercise in 2-D/3-D: explicit and
asymmetric `pads`, `auto_pad` SAME_UPPER / SAME_LOWER with strides, `dilations` on Conv,
`ceil_mode` and `count_include_pad` on pools, checked against ONNX Runtime. Writes
tests/fixtures/onnx_attrs/NAME.onnx, NAME.in0.npy, NAME.out0.npy (ONNX Runtime's output,
or no file where sinter must refuse) and manifest.json, for tests/onnx_node.rs.

Run from the repo root:  /tmp/venv/bin/python scripts/make_onnx_attr_fixtures.py
"""
import json
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx_attrs"
C, W, M, N = 3, 11, 4, 2


def rng(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def model(name, op, attrs, weights=None):
    inits = []
    ins = ["x"]
    out_c = C
    if op == "Conv":
        k = attrs["kernel_shape"][0]
        w = (rng("w:" + name).standard_normal((M, C, k)) * 0.5).astype(np.float32)
        inits = [numpy_helper.from_array(w, "w")]
        ins = ["x", "w"]
        out_c = M
    node = helper.make_node(op, ins, ["y"], **attrs)
    g = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", C, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", None, None])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 22)])


CASES = [
    # name, op, attrs, sinter must pass
    ("conv_pads_asym", "Conv", dict(kernel_shape=[3], pads=[2, 1]), True),
    ("conv_pads_even_kernel", "Conv", dict(kernel_shape=[4], pads=[2, 2]), True),
    ("conv_same_upper_s2", "Conv", dict(kernel_shape=[4], strides=[2], auto_pad="SAME_UPPER"), True),
    ("conv_same_lower_s2", "Conv", dict(kernel_shape=[4], strides=[2], auto_pad="SAME_LOWER"), True),
    ("conv_dilated_pads", "Conv", dict(kernel_shape=[3], dilations=[2], pads=[2, 2]), True),
    ("maxpool_ceil", "MaxPool", dict(kernel_shape=[3], strides=[2], ceil_mode=1), True),
    ("maxpool_pads_ceil", "MaxPool", dict(kernel_shape=[3], strides=[3], pads=[1, 1], ceil_mode=1), True),
    ("maxpool_same_lower", "MaxPool", dict(kernel_shape=[2], strides=[2], auto_pad="SAME_LOWER"), True),
    ("avgpool_pads_exclude", "AveragePool", dict(kernel_shape=[3], pads=[1, 1]), True),
    ("avgpool_ceil_exclude", "AveragePool", dict(kernel_shape=[3], strides=[2], ceil_mode=1), True),
    ("avgpool_pads_include", "AveragePool", dict(kernel_shape=[3], pads=[1, 1], count_include_pad=1), False),
    ("maxpool_dilated", "MaxPool", dict(kernel_shape=[2], dilations=[2]), False),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.iterdir():
        p.unlink()
    cases = []
    for name, op, attrs, must in CASES:
        m = model(name, op, attrs)
        onnx.checker.check_model(m)
        onnx.save(m, OUT / f"{name}.onnx")
        x = (rng("x:" + name).standard_normal((N, C, W)) * 2).astype(np.float32)
        np.save(OUT / f"{name}.in0.npy", x)
        y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.save(OUT / f"{name}.out0.npy", y.astype(np.float32))
        cases.append({"name": name, "op": op, "attrs": {k: v for k, v in attrs.items()},
                      "must_pass": must, "output_shape": list(y.shape)})
    (OUT / "manifest.json").write_text(json.dumps({
        "generated_by": "scripts/make_onnx_attr_fixtures.py", "onnx": onnx.__version__,
        "onnxruntime": ort.__version__, "cases": cases}, indent=1) + "\n")
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
