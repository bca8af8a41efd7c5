#!/usr/bin/env python3
"""1-D window attributes the ONNX backend node tests only exercise in 2-D/3-D: explicit and
asymmetric `pads`, `auto_pad` SAME_UPPER / SAME_LOWER with strides, `dilations` on Conv,
`ceil_mode` and `count_include_pad` on pools; and 2-D ops the selected node tests do not
cover: `Pad`, `Resize` (nearest and linear, each coordinate mode), grouped
`Conv`. Checked against ONNX Runtime. Writes
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

# 2-D cases on [N, C2, H, W]: name, op, attrs, constant inputs (name -> array, in input
# order after x; "" for an omitted optional input), sinter must pass, opset.
C2, H, W2, M2 = 4, 5, 6, 6
F = np.float32
CASES_2D = [
    ("pad_hw", "Pad", {}, {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}, True, 22),
    ("pad_reflect", "Pad", dict(mode="reflect"),
     {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, False, 22),
    ("pad_channels", "Pad", {}, {"pads": np.array([0, 1, 0, 0, 0, 0, 0, 0], np.int64)}, False, 22),
    ("resize_nearest_asym_floor", "Resize",
     dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
     {"roi": "", "scales": np.array([1, 1, 2, 3], F)}, True, 22),
    ("resize_nearest_default", "Resize", {}, {"roi": "", "scales": np.array([1, 1, 2, 2], F)},
     True, 22),
    ("resize_nearest_half_pixel_floor", "Resize", dict(nearest_mode="floor"),
     {"roi": "", "scales": np.array([1, 1, 3, 3], F)}, False, 22),
    ("resize_linear_half_pixel", "Resize", dict(mode="linear"),
     {"roi": "", "scales": np.array([1, 1, 2, 3], F)}, True, 22),
    ("resize_linear_pytorch", "Resize",
     dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
     {"roi": "", "scales": np.array([1, 1, 3, 2], F)}, True, 22),
    ("resize_linear_align_corners_sizes", "Resize",
     dict(mode="linear", coordinate_transformation_mode="align_corners"),
     {"roi": "", "scales": "", "sizes": np.array([N, C2, 2 * H, 2 * W2], np.int64)}, True, 22),
    ("resize_linear_asymmetric", "Resize",
     dict(mode="linear", coordinate_transformation_mode="asymmetric"),
     {"roi": "", "scales": np.array([1, 1, 2, 2], F)}, True, 22),
    ("resize_cubic", "Resize", dict(mode="cubic"),
     {"roi": "", "scales": np.array([1, 1, 2, 2], F)}, False, 22),
    ("resize_fraction", "Resize", dict(mode="linear"),
     {"roi": "", "scales": np.array([1, 1, 1.5, 1.5], F)}, False, 22),
    ("conv_group2", "Conv", dict(kernel_shape=[3, 3], pads=[1, 0, 1, 2], group=2),
     {"w": None, "b": None}, True, 22),
]


def model_2d(name, op, attrs, consts, opset):
    inits, ins = [], ["x"]
    for k, v in consts.items():
        if k == "w":
            v = (rng("w:" + name).standard_normal((M2, C2 // attrs["group"], 3, 3)) * 0.5).astype(F)
        if k == "b":
            v = rng("b:" + name).standard_normal(M2).astype(F)
        if isinstance(v, str):
            ins.append("")
            continue
        inits.append(numpy_helper.from_array(v, k))
        ins.append(k)
    node = helper.make_node(op, ins, ["y"], **attrs)
    g = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, C2, H, W2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N, None, None, None])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


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
    for name, op, attrs, consts, must, opset in CASES_2D:
        m = model_2d(name, op, attrs, consts, opset)
        onnx.checker.check_model(m)
        onnx.save(m, OUT / f"{name}.onnx")
        x = (rng("x:" + name).standard_normal((N, C2, H, W2)) * 2).astype(np.float32)
        np.save(OUT / f"{name}.in0.npy", x)
        shape = None
        try:
            sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            y = sess.run(None, {"x": x})[0]
            np.save(OUT / f"{name}.out0.npy", y.astype(np.float32))
            shape = list(y.shape)
        except Exception as e:  # refused cases need no output
            assert not must, (name, e)
        # The refusal must name an attribute or a constant input.
        named = {**{k: v for k, v in attrs.items()}, **{k: "input" for k in consts}}
        cases.append({"name": name, "op": op, "attrs": named, "must_pass": must,
                      "output_shape": shape})
    (OUT / "manifest.json").write_text(json.dumps({
        "generated_by": "scripts/make_onnx_attr_fixtures.py", "onnx": onnx.__version__,
        "onnxruntime": ort.__version__, "cases": cases}, indent=1) + "\n")
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
