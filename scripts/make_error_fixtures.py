#!/usr/bin/env python3
"""Models sinter must refuse, for tests/golden.rs `unsupported_models_are_refused_with_context`.

Needs only the `onnx`, `numpy` and `h5py` packages (no TensorFlow): each file is an edit of a
committed fixture or a hand-built ONNX graph.

  unsupported_lstm.keras     flatten.keras whose Dropout layer is replaced by an LSTM layer
                             (class, name and config in config.json; the next layer reads it)
  unsupported_einsum.onnx    x[N,4] -> Einsum("ij,jk->ik", x, W) -> y[N,3], opset 13
  unsupported_lstm.onnx      x[N,5,4] -> LSTM(hidden 3, layout=1) -> Squeeze -> y, opset 14
  unsupported_gru.h5         legacy/conv.tfk.h5 (tf_keras whole-model HDF5) whose MaxPooling1D
                             is replaced by a GRU layer in the root model_config attribute

Each becomes a case of tests/fixtures/manifest.json with an "error" key: a substring the
error must contain, naming where (layer or node) and what (class or operator). The test also
checks the message names the file. Running this script replaces the manifest's "error"
cases and keeps the others; scripts/make_fixtures.py calls `error_cases()` too, so a full
regeneration keeps them.

Run (from the repo root; deterministic for the same onnx/h5py versions):
    python3 scripts/make_error_fixtures.py
"""

import io
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures"


def rename_history(obj, old, new):
    """Points every reference to layer `old` at `new`: Keras 3's keras_history [name, i, j]
    and tf_keras's inbound_nodes entries [name, i, j, kwargs]."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "keras_history" and isinstance(v, list) and v and v[0] == old:
                v[0] = new
            else:
                rename_history(v, old, new)
    elif isinstance(obj, list):
        if len(obj) >= 3 and obj[0] == old and isinstance(obj[1], int):
            obj[0] = new
        for v in obj:
            rename_history(v, old, new)


def replace_layer(layers, old_class, new_class, new_name, new_config):
    [layer] = [lay for lay in layers if lay["class_name"] == old_class]
    old_name = layer["config"]["name"]
    layer["class_name"] = new_class
    layer["config"] = {"name": new_name, **new_config}
    if "name" in layer:
        layer["name"] = new_name
    return old_name


# -------------------------------------------------------------------------------- .keras
def keras_lstm():
    src, dst = OUT / "flatten.keras", OUT / "unsupported_lstm.keras"
    with zipfile.ZipFile(src) as z:
        members = [(i, z.read(i)) for i in z.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as w:
        for info, data in members:
            if info.filename == "config.json":
                cfg = json.loads(data)
                layers = cfg["config"]["layers"]
                old = replace_layer(layers, "Dropout", "LSTM", "lstm", {
                    "trainable": True, "units": 10, "activation": "tanh",
                    "recurrent_activation": "sigmoid", "use_bias": True,
                    "return_sequences": False, "return_state": False,
                })
                rename_history(cfg, old, "lstm")
                data = json.dumps(cfg).encode()
            w.writestr(info, data)  # same name, date and compression as the source member
    dst.write_bytes(out.getvalue())
    return {"name": "unsupported-lstm-keras", "model": dst.name, "format": "keras",
            "error": 'layer "lstm" (LSTM): weights: no group: no weights found',
            "note": ("flatten.keras with its Dropout replaced by LSTM(10) in config.json: the "
                     "weights file has none for it")}


# ---------------------------------------------------------------------------------- ONNX
def onnx_save(name, nodes, inits, x_shape, y_shape, opset, doc):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, name, [x], [y], initializer=inits, doc_string=doc)
    opsets = [helper.make_opsetid("", opset)]
    m = helper.make_model(g, opset_imports=opsets,
                          ir_version=helper.find_min_ir_version_for(opsets),
                          producer_name="sinter/scripts/make_error_fixtures.py")
    onnx.checker.check_model(m, full_check=True)
    onnx.save_model(m, str(OUT / f"{name}.onnx"))


def onnx_einsum():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    onnx_save("unsupported_einsum",
              [helper.make_node("Einsum", ["x", "W"], ["y"], name="einsum_0",
                                equation="ij,jk->ik")],
              {"W": w}, ["N", 4], ["N", 3], 13, "Einsum: an op sinter does not have")
    return {"name": "unsupported-einsum-onnx", "model": "unsupported_einsum.onnx",
            "format": "onnx", "opset": 13,
            "error": 'node "einsum_0" (Einsum, opset 13): operator Einsum is not supported',
            "note": "x[N,4] -> Einsum(ij,jk->ik) with a 4x3 initializer"}


def onnx_lstm():
    rng = np.random.default_rng(2)
    hidden, feat = 3, 4
    inits = {
        "W": rng.standard_normal((1, 4 * hidden, feat)).astype(np.float32),
        "R": rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32),
        "B": np.zeros((1, 8 * hidden), np.float32),
        "axes": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "", "c"], name="lstm_0",
                         hidden_size=hidden, layout=1, input_forget=1),
        helper.make_node("Squeeze", ["c", "axes"], ["y"], name="squeeze_0"),
    ]
    onnx_save("unsupported_lstm", nodes, inits, ["N", 5, feat], ["N", hidden], 14,
              "LSTM (batch-first, input_forget=1): an option sinter does not compute")
    return {"name": "unsupported-lstm-onnx", "model": "unsupported_lstm.onnx",
            "format": "onnx", "opset": 14,
            "error": 'node "lstm_0" (LSTM, opset 14): input_forget=1 is not supported',
            "note": "x[N,5,4] -> LSTM(hidden_size=3, layout=1, input_forget=1) -> Y_c -> "
                    "Squeeze(1)"}


# ------------------------------------------------------------------------------ HDF5
def h5_gru():
    src, dst = OUT / "legacy" / "conv.tfk.h5", OUT / "unsupported_gru.h5"
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        raw = f.attrs["model_config"]
        cfg = json.loads(raw)
        old = replace_layer(cfg["config"]["layers"], "MaxPooling1D", "GRU", "gru", {
            "trainable": True, "dtype": "float32", "units": 8, "activation": "tanh",
            "recurrent_activation": "sigmoid", "use_bias": True,
            "return_sequences": True, "return_state": False, "reset_after": True,
        })
        rename_history(cfg, old, "gru")
        text = json.dumps(cfg)
        # Same HDF5 type as tf_keras writes (bytes, or str if that is what is there).
        f.attrs["model_config"] = text.encode() if isinstance(raw, bytes) else text
    return {"name": "unsupported-gru-h5", "model": dst.name, "format": "h5",
            "error": 'layer "gru" (GRU): weights: model_weights/gru: no weights found',
            "note": "legacy/conv.tfk.h5 with its MaxPooling1D replaced by GRU(8) in "
                    "model_config: no weights for it"}


def error_cases():
    """Writes every file; returns their manifest entries."""
    return [keras_lstm(), onnx_einsum(), onnx_lstm(), h5_gru()]


def main():
    path = OUT / "manifest.json"
    manifest = json.loads(path.read_text())
    keep = [c for c in manifest["cases"] if "error" not in c]
    manifest["cases"] = keep + error_cases()
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    for c in manifest["cases"]:
        if "error" in c:
            print(f"{c['model']:<28} {c['error']}")


if __name__ == "__main__":
    main()
