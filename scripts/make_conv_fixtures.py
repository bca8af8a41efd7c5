#!/usr/bin/env python3
"""Golden-test fixtures for sinter's 1-D convolution layers: Keras (.keras) models with Conv1D,
Max/AveragePooling1D, GlobalMax/AveragePooling1D, Concatenate, Add, Reshape, two hand-built
ONNX twins, inputs, and reference outputs from Keras, ONNX Runtime and a float64 NumPy
reference. Same conventions as scripts/make_fixtures.py (whose pure helpers it imports).

What it makes (all in tests/fixtures/conv/; nothing else is touched):
  NAME.keras                 Keras 3 zip (config.json, metadata.json, model.weights.h5)
  NAME.onnx                  hand-built ONNX graphs (onnx.helper, opset 17), same weights as
                             the Keras twin; input `x` is NWC ['N', steps, channels] like Keras,
                             transposed to NCW inside the graph and back before Flatten
  NAME.input.npy             float32 input, batch of 16, batch-first, C order, 2 * N(0, 1)
  NAME.keras.out.npy         Keras output: model.predict(x, verbose=0), float32
  NAME.onnx.out.npy          ONNX Runtime output (default CPU provider), float32
  NAME.f64.out.npy           float64 NumPy reference computed here from the float32 weights
                             (conv1d / pooling / concat / add written out in NumPy below)
  manifest.json              same schema as tests/fixtures/manifest.json; paths relative to
                             tests/fixtures/conv/

Weights are not Keras's default init: every Conv1D kernel [k, cin, cout] and Dense kernel
[fan_in, units] is N(0, 1/sqrt(fan_in)) with fan_in = k * cin for Conv1D, every bias
N(0, 0.1), drawn in model.layers order from a NumPy generator seeded by crc32("weights:NAME").

Keras semantics reproduced by the f64 reference (channels_last, NWC):
  Conv1D padding 'valid' (no pad), 'same' (TF: out = ceil(L / s), pad_total =
  max((out - 1) s + (k - 1) d + 1 - L, 0), pad_left = pad_total // 2), 'causal' (left pad
  (k - 1) d); strides; dilation_rate. Pooling 'valid' / 'same' with the same TF padding rule;
  MaxPooling ignores padded cells, AveragePooling 'same' averages only the valid (non-padded)
  cells (ONNX: AveragePool count_include_pad=0).

Run (from the repo root; regenerates everything, deterministic):
    /tmp/venv/bin/python scripts/make_conv_fixtures.py
Reruns are byte-identical; an existing .keras is kept when a fresh model.save() differs only
in metadata.json's date_saved, config.json's shared_object_id numbers and zip timestamps.
TF_ENABLE_ONEDNN_OPTS=0 is set so the Keras/TensorFlow reference does not depend on oneDNN.

Besides writing the fixtures it prints a table of cases with max |peer - f64|, one config.json
entry (class_name + config) per conv-related layer class, and the HDF5 tree of
conv1d_builtin.keras's model.weights.h5.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["KERAS_BACKEND"] = "tensorflow"

import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from onnx import helper  # noqa: E402

# Pure helpers shared with the dense fixtures (maths, seeds, .keras comparison, h5 dump).
from make_fixtures import (  # noqa: E402
    KERAS_ACT,
    fresh,
    h5_tree,
    dense64,
    keras_predict,
    maxabs,
    onnx_model,
    ort_run,
    save_keras,
    save_onnx,
    save_outputs,
    seed_of,
    sigmoid,
    softmax,
    tool_versions,
)

tf.get_logger().setLevel("ERROR")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "conv"
BATCH = 16
INPUT_SCALE = 2.0
OPSET = 17

CASES = []  # manifest entries, in order
L = keras.layers


# ----------------------------------------------------------------------------- helpers
def make_input(name, shape):
    rng = np.random.default_rng(seed_of("input:" + name))
    x = (rng.standard_normal((BATCH, *shape)) * INPUT_SCALE).astype(np.float32)
    x = np.ascontiguousarray(x)
    np.save(OUT / f"{name}.input.npy", x)
    return x


def randomize(model, name):
    """Conv1D / Dense kernels ~ N(0, 1/sqrt(fan_in)), biases ~ N(0, 0.1), float32, drawn in
    model.layers order. Returns {layer name: (W, b|None)} with W in Keras layout."""
    rng = np.random.default_rng(seed_of("weights:" + name))
    out = {}
    for layer in model.layers:
        if not isinstance(layer, (L.Dense, L.Conv1D)):
            continue
        shape = tuple(layer.kernel.shape)
        fan_in = int(np.prod(shape[:-1]))
        w = (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
        if layer.use_bias:
            b = (rng.standard_normal(shape[-1]) * 0.1).astype(np.float32)
            layer.set_weights([w, b])
        else:
            b = None
            layer.set_weights([w])
        out[layer.name] = (w, b)
    return out




def check_roundtrip(fname, x, y):
    """The saved .keras must reload in Keras and reproduce y exactly."""
    y2 = keras_predict(keras.models.load_model(OUT / fname), x)
    assert maxabs(y2, y) == 0.0, f"Keras round trip of {fname} differs"




def record(name, model_file, fmt, input_name, expected, f64_name, y_peer, activations,
           **extra):
    y_ref = np.load(OUT / f64_name)
    assert np.all(np.isfinite(y_peer)), name
    entry = {
        "name": name,
        "model": model_file,
        "format": fmt,
        "input": input_name,
        "expected": expected,
        "f64": f64_name,
        "activations": activations,
        "max_abs_peer_vs_f64": maxabs(y_peer, y_ref),
    }
    entry.update(extra)
    x = np.load(OUT / input_name)
    entry["input_scale"] = INPUT_SCALE
    entry["input_shape"] = list(x.shape)
    entry["output_shape"] = list(y_peer.shape)
    CASES.append(entry)


def keras_case(name, model, x, y, y64, acts, note):
    """Saves a Keras case's outputs and .keras file, checks that it reloads to the same y,
    and records it in the manifest."""
    save_outputs(name, y, y64, out=OUT)
    save_keras(model, f"{name}.keras", out=OUT)
    check_roundtrip(f"{name}.keras", x, y)
    record(name, f"{name}.keras", "keras", f"{name}.input.npy", f"{name}.keras.out.npy",
           f"{name}.f64.out.npy", y, acts, note=note)


# ------------------------------------------------------------ float64 reference maths
def same_pads(length, eff_k, stride):
    """TensorFlow 'SAME': (out, pad_left, pad_right)."""
    out = -(-length // stride)
    total = max((out - 1) * stride + eff_k - length, 0)
    return out, total // 2, total - total // 2


def conv1d64(x, w, b, strides=1, padding="valid", dilation=1):
    """Keras Conv1D, NWC, float64. x [N, L, cin], w [k, cin, cout], b [cout] or None."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    k = w.shape[0]
    eff = (k - 1) * dilation + 1
    length = x.shape[1]
    if padding == "valid":
        left = right = 0
    elif padding == "causal":
        left, right = (k - 1) * dilation, 0
    elif padding == "same":
        _, left, right = same_pads(length, eff, strides)
    else:
        raise ValueError(padding)
    xp = np.pad(x, ((0, 0), (left, right), (0, 0)))
    out = (xp.shape[1] - eff) // strides + 1
    y = np.zeros((x.shape[0], out, w.shape[2]))
    for j in range(k):
        s = j * dilation
        y += xp[:, s: s + (out - 1) * strides + 1: strides, :] @ w[j]
    if b is not None:
        y += np.asarray(b, np.float64)
    return y


def pool1d64(x, pool, strides, padding, mode):
    """Keras Max/AveragePooling1D, NWC, float64; padded cells are ignored (max) and not
    counted (average), as TensorFlow does."""
    x = np.asarray(x, np.float64)
    length = x.shape[1]
    if padding == "valid":
        out, left = (length - pool) // strides + 1, 0
    else:
        out, left, _ = same_pads(length, pool, strides)
    cols = []
    for o in range(out):
        lo = max(o * strides - left, 0)
        hi = min(o * strides - left + pool, length)
        win = x[:, lo:hi, :]
        cols.append(win.max(axis=1) if mode == "max" else win.mean(axis=1))
    return np.stack(cols, axis=1)




# ------------------------------------------------------------------------ ONNX helpers
def onnx_conv_w(w):
    """Keras Conv1D kernel [k, cin, cout] -> ONNX Conv weight [cout, cin, k]."""
    return np.ascontiguousarray(np.transpose(w, (2, 1, 0)))


def same_onnx_pads(length, k, stride=1, dilation=1):
    _, left, right = same_pads(length, (k - 1) * dilation + 1, stride)
    return [left, right]


def keras_onnx_pair(name, y, y64, onnx_name, nodes, inits, in_dims, out_feat, x, acts, doc,
                    onnx_ops, note):
    m = onnx_model(onnx_name, nodes, inits, in_dims, out_feat, OPSET, doc,
                   producer="sinter/scripts/make_conv_fixtures.py")
    p = save_onnx(m, f"{onnx_name}.onnx", out=OUT)
    yo = ort_run(p, x)
    np.save(OUT / f"{onnx_name}.onnx.out.npy", yo)
    record(f"{name}-onnx", f"{onnx_name}.onnx", "onnx", f"{name}.input.npy",
           f"{onnx_name}.onnx.out.npy", f"{name}.f64.out.npy", yo, acts, opset=OPSET,
           max_abs_vs_keras=maxabs(yo, y), onnx_ops=onnx_ops, note=note)


# ---------------------------------------------------------------------- conv1d_builtin
def case_conv1d_builtin():
    name = "conv1d_builtin"
    fresh()
    inp = keras.Input((128, 16))
    convs = [L.Conv1D(32, k, padding="same") for k in (3, 5, 7)]
    h = L.Concatenate()([c(inp) for c in convs])
    h = L.Activation("relu")(h)
    h = L.Flatten()(h)
    dense = L.Dense(8, activation="softmax")
    model = keras.Model(inp, dense(h))
    ws = randomize(model, name)
    x = make_input(name, (128, 16))
    y = keras_predict(model, x)
    h64 = np.concatenate([conv1d64(x, *ws[c.name], padding="same") for c in convs], axis=-1)
    h64 = np.maximum(h64, 0.0).reshape(BATCH, -1)
    y64 = softmax(dense64(h64, *ws[dense.name]))
    acts = ["relu", "softmax"]
    keras_case(name, model, x, y, y64, acts,
               note="benchmark model: Conv1D(32, k, padding='same') for k = 3, 5, 7 (no "
                    "activation) -> Concatenate(axis=-1) -> Activation(relu) -> Flatten -> "
                    "Dense(8, softmax); the Dense has fan_in 128 * 96 = 12288")

    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1])]
    inits = {}
    for i, c in enumerate(convs):
        w, b = ws[c.name]
        k = w.shape[0]
        inits[f"W{i}"], inits[f"B{i}"] = onnx_conv_w(w), b
        nodes.append(helper.make_node("Conv", ["xt", f"W{i}", f"B{i}"], [f"c{i}"],
                                      kernel_shape=[k], strides=[1], dilations=[1],
                                      pads=same_onnx_pads(128, k)))
    wd, bd = ws[dense.name]
    inits["Wd_t"], inits["bd"] = np.ascontiguousarray(wd.T), bd
    nodes += [
        helper.make_node("Concat", ["c0", "c1", "c2"], ["cat"], axis=1),
        helper.make_node("Relu", ["cat"], ["r"]),
        helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 1]),
        helper.make_node("Flatten", ["rt"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "Wd_t", "bd"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["y"], axis=-1),
    ]
    keras_onnx_pair(name, y, y64, name, nodes, inits, [128, 16], 8, x, acts,
                    "conv1d_builtin: NWC input, Transpose to NCW, 3 x Conv (same pads), "
                    "Concat(channels), Relu, Transpose back, Flatten, Gemm, Softmax",
                    ["Transpose", "Conv", "Concat", "Relu", "Flatten", "Gemm", "Softmax"],
                    "Conv pads [1,1], [2,2], [3,3]; Conv weight = Keras kernel transposed "
                    "(2,1,0) to [cout, cin, k]; Gemm B = Dense kernel transposed, transB=1")


# ------------------------------------------------------------------ conv_valid_strided
def case_conv_valid_strided():
    name = "conv_valid_strided"
    fresh()
    inp = keras.Input((40, 6))
    c1 = L.Conv1D(8, 4, strides=2, padding="valid", activation="tanh")
    c2 = L.Conv1D(5, 3, dilation_rate=2, padding="causal", activation="gelu")
    dense = L.Dense(3)
    out = dense(L.GlobalAveragePooling1D()(c2(c1(inp))))
    model = keras.Model(inp, out)
    ws = randomize(model, name)
    x = make_input(name, (40, 6))
    y = keras_predict(model, x)
    h = np.tanh(conv1d64(x, *ws[c1.name], strides=2, padding="valid"))
    h = KERAS_ACT["gelu"](conv1d64(h, *ws[c2.name], padding="causal", dilation=2))
    y64 = dense64(h.mean(axis=1), *ws[dense.name])
    keras_case(name, model, x, y, y64, ["tanh", "gelu"],
               note="Conv1D(8, 4, strides=2, valid, tanh): 40 -> 19 steps; Conv1D(5, 3, "
                    "dilation_rate=2, causal, gelu (exact erf)): left pad 4, 19 -> 19; "
                    "GlobalAveragePooling1D; Dense(3) linear")


# -------------------------------------------------------------------------- conv_pool
def case_conv_pool():
    name = "conv_pool"
    fresh()
    inp = keras.Input((33, 4))
    c1 = L.Conv1D(12, 3, padding="same", activation="relu", use_bias=False)
    c2 = L.Conv1D(12, 3, padding="same")
    dense = L.Dense(4, activation="sigmoid")
    h = L.MaxPooling1D(pool_size=2)(c1(inp))
    h = L.AveragePooling1D(pool_size=3, strides=2, padding="same")(c2(h))
    model = keras.Model(inp, dense(L.Flatten()(h)))
    ws = randomize(model, name)
    x = make_input(name, (33, 4))
    y = keras_predict(model, x)
    h = np.maximum(conv1d64(x, *ws[c1.name], padding="same"), 0.0)
    h = pool1d64(h, 2, 2, "valid", "max")  # 33 -> 16 (last step dropped)
    h = conv1d64(h, *ws[c2.name], padding="same")
    h = pool1d64(h, 3, 2, "same", "avg")  # 16 -> 8, pads [0, 1], last window has 2 cells
    y64 = sigmoid(dense64(h.reshape(BATCH, -1), *ws[dense.name]))
    acts = ["relu", "sigmoid"]
    keras_case(name, model, x, y, y64, acts,
               note="Conv1D(12, 3, same, relu, use_bias=False): 33 steps; MaxPooling1D(2) valid: "
                    "33 -> 16; Conv1D(12, 3, same) linear; AveragePooling1D(3, strides=2, same): "
                    "16 -> 8 with pad_left 0, pad_right 1, the last window averages 2 valid cells "
                    "(padding not counted); Flatten 96 -> Dense(4, sigmoid)")

    w1, _ = ws[c1.name]
    w2, b2 = ws[c2.name]
    wd, bd = ws[dense.name]
    inits = {"W1": onnx_conv_w(w1), "W2": onnx_conv_w(w2), "B2": b2,
             "Wd_t": np.ascontiguousarray(wd.T), "bd": bd}
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("Conv", ["xt", "W1"], ["c1"], kernel_shape=[3], strides=[1],
                         pads=same_onnx_pads(33, 3)),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2], strides=[2],
                         pads=[0, 0]),
        helper.make_node("Conv", ["p1", "W2", "B2"], ["c2"], kernel_shape=[3], strides=[1],
                         pads=same_onnx_pads(16, 3)),
        helper.make_node("AveragePool", ["c2"], ["p2"], kernel_shape=[3], strides=[2],
                         pads=same_onnx_pads(16, 3, 2), count_include_pad=0),
        helper.make_node("Transpose", ["p2"], ["pt"], perm=[0, 2, 1]),
        helper.make_node("Flatten", ["pt"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "Wd_t", "bd"], ["z"], transB=1),
        helper.make_node("Sigmoid", ["z"], ["y"]),
    ]
    keras_onnx_pair(name, y, y64, name, nodes, inits, [33, 4], 4, x, acts,
                    "conv_pool: NWC input, Transpose, Conv (no bias), Relu, MaxPool, Conv, "
                    "AveragePool count_include_pad=0, Transpose back, Flatten, Gemm, Sigmoid",
                    ["Transpose", "Conv", "Relu", "MaxPool", "AveragePool", "Flatten", "Gemm",
                     "Sigmoid"],
                    "Conv pads [1,1] (2 inputs: no bias); MaxPool kernel 2 stride 2 no pads; "
                    "AveragePool kernel 3 stride 2 pads [0,1] count_include_pad=0")


# -------------------------------------------------------------------- conv_add_concat
def case_conv_add_concat():
    name = "conv_add_concat"
    fresh()
    inp = keras.Input((20, 8))
    ca = L.Conv1D(8, 3, padding="same", activation="silu")
    cb = L.Conv1D(8, 1)
    s = L.Add()([ca(inp), cb(inp), inp])
    c = L.Concatenate(axis=1)([s, inp])
    dense = L.Dense(6, activation="softmax")
    model = keras.Model(inp, dense(L.GlobalMaxPooling1D()(c)))
    ws = randomize(model, name)
    x = make_input(name, (20, 8))
    y = keras_predict(model, x)
    a = conv1d64(x, *ws[ca.name], padding="same")
    a = a * sigmoid(a)
    b = conv1d64(x, *ws[cb.name])
    s64 = a + b + x.astype(np.float64)
    c64 = np.concatenate([s64, x.astype(np.float64)], axis=1)  # (16, 40, 8)
    y64 = softmax(dense64(c64.max(axis=1), *ws[dense.name]))
    keras_case(name, model, x, y, y64, ["silu", "softmax"],
               note="a = Conv1D(8, 3, same, silu)(x), b = Conv1D(8, 1)(x) (valid, k=1); "
                    "Add()([a, b, x]) (3 inputs); Concatenate(axis=1)([sum, x]) along TIME: "
                    "20 + 20 = 40 steps; GlobalMaxPooling1D; Dense(6, softmax)")


# ----------------------------------------------------------------------- reshape_conv
def case_reshape_conv():
    name = "reshape_conv"
    fresh()
    inp = keras.Input((48,))
    conv = L.Conv1D(6, 3, activation="elu")
    dense = L.Dense(5)
    h = conv(L.Reshape((12, 4))(inp))
    h = L.MaxPooling1D(2, strides=1, padding="same")(h)
    model = keras.Model(inp, dense(L.Reshape((-1,))(h)))
    ws = randomize(model, name)
    x = make_input(name, (48,))
    y = keras_predict(model, x)
    h = KERAS_ACT["elu"](conv1d64(x.reshape(BATCH, 12, 4), *ws[conv.name]))  # 12 -> 10
    h = pool1d64(h, 2, 1, "same", "max")  # 10 -> 10, pads [0, 1]
    y64 = dense64(h.reshape(BATCH, -1), *ws[dense.name])
    keras_case(name, model, x, y, y64, ["elu"],
               note="Reshape((12, 4)) (row-major) -> Conv1D(6, 3, valid, elu): 12 -> 10 -> "
                    "MaxPooling1D(2, strides=1, same): 10 -> 10, pad right 1 (last window is one "
                    "cell) -> Reshape((-1,)) to 60 -> Dense(5) linear")


# ------------------------------------------------------------------------ reporting
SHOW_CLASSES = ["Conv1D", "Concatenate", "Add", "MaxPooling1D", "AveragePooling1D",
                "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Reshape"]


def dump_layer_configs(fnames):
    seen = {}
    for fname in fnames:
        with zipfile.ZipFile(OUT / fname) as z:
            cfg = json.loads(z.read("config.json"))
        for layer in cfg["config"]["layers"]:
            cls = layer["class_name"]
            if cls in SHOW_CLASSES and cls not in seen:
                seen[cls] = (fname, layer)
    print("\n===== config.json layer entries (first of each class) =====")
    for cls in SHOW_CLASSES:
        if cls in seen:
            fname, layer = seen[cls]
            print(f"\n--- {cls} (from {fname}) ---")
            print(json.dumps(layer, indent=1))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    case_conv1d_builtin()
    case_conv_valid_strided()
    case_conv_pool()
    case_conv_add_concat()
    case_reshape_conv()

    versions = tool_versions()
    manifest = {
        "generated_by": "scripts/make_conv_fixtures.py",
        "versions": versions,
        "env": {"TF_ENABLE_ONEDNN_OPTS": "0", "KERAS_BACKEND": "tensorflow"},
        "batch": BATCH,
        "notes": [
            "paths are relative to tests/fixtures/conv/",
            "inputs float32, batch-first, C order, 2 * N(0, 1); *.keras.out.npy / "
            "*.onnx.out.npy float32; *.f64.out.npy float64 computed with NumPy from the "
            "float32 weights",
            "Conv1D kernels [k, cin, cout] and Dense kernels N(0, 1/sqrt(fan_in)) with "
            "fan_in = k * cin for Conv1D; biases N(0, 0.1) (not Keras default init)",
            "ONNX twins take NWC input ['N', steps, channels] (as Keras) and Transpose to NCW "
            "for Conv/MaxPool/AveragePool, back to NWC before Flatten",
            "max_abs_peer_vs_f64 = max |expected - f64| over the batch",
        ],
        "cases": CASES,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    print("\n===== versions =====")
    print(json.dumps(versions))
    print("\n===== cases: max |peer - f64| =====")
    print(f"{'case':<26} {'format':<7} {'in shape':<14} {'out':<8} "
          f"{'max_abs_peer_vs_f64':>20} {'vs keras':>9} {'model bytes':>12}")
    for c in CASES:
        vk = c.get("max_abs_vs_keras")
        size = (OUT / c["model"]).stat().st_size
        print(f"{c['name']:<26} {c['format']:<7} {str(tuple(c['input_shape'])):<14} "
              f"{str(tuple(c['output_shape'])):<8} {c['max_abs_peer_vs_f64']:>20.3e} "
              f"{'' if vk is None else f'{vk:.1e}':>9} {size:>12}")

    dump_layer_configs(sorted({c["model"] for c in CASES if c["format"] == "keras"}))
    with zipfile.ZipFile(OUT / "conv1d_builtin.keras") as z:
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            print("\n----- conv1d_builtin.keras / model.weights.h5 tree -----")
            print(h5_tree(f))
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"\nfixture files (tests/fixtures/conv): {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
