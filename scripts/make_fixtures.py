#!/usr/bin/env python3
"""Golden-test fixtures for sinter: Keras (.keras, JSON + .weights.h5) and ONNX models,
inputs, and reference outputs from Keras, ONNX Runtime and a float64 NumPy reference.

What it makes (all at the top level of tests/fixtures/; tests/fixtures/hdf5/ is not touched):
  NAME.keras                 Keras 3 zip (config.json, metadata.json, model.weights.h5)
  seed.json, seed.weights.h5 the `seed` model as model.to_json() + model.save_weights()
  NAME.onnx                  hand-built ONNX graphs (onnx.helper), same weights as the Keras twin
  seed_ext.onnx(.data)       seed.onnx with all initializers in an external data file
  NAME.input.npy             float32 input, batch of 16, batch-first, C order
  NAME.keras.out.npy         Keras output: model.predict(x, verbose=0), float32
  NAME.onnx.out.npy          ONNX Runtime output (default CPU provider), float32
  NAME.f64.out.npy           float64 NumPy reference computed here from the float32 weights
  manifest.json              list of cases, versions, measured max |peer - f64| per case
  unsupported_*              models sinter must refuse (manifest cases with an "error" key),
                             made by scripts/make_error_fixtures.py (called from here; it also
                             runs alone, without TensorFlow)

Weights are not Keras's default init: every Dense kernel is N(0, 1/sqrt(fan_in)) and every
bias N(0, 0.1), drawn from a NumPy generator seeded per model name. Inputs are
2 * N(0, 1), seeded per input name, except act_exponential (1 * N(0, 1), keeps exp moderate)
and act_relu6 / layers (4 * N(0, 1), so the max_value=6 clip is actually reached); the
scale is recorded per case as input_scale in manifest.json.

Run (from the repo root; regenerates everything, deterministic):
    /tmp/venv/bin/python scripts/make_fixtures.py
Generated with: tensorflow-cpu 2.21.0, keras 3.15.1, onnx 1.23.2, onnxruntime 1.32.0,
numpy 2.4.6, h5py 3.14.0 (the exact versions used are recorded in manifest.json).
Reruns are byte-identical: every .npy/.onnx/.h5/.json is deterministic, and an existing
.keras is kept when a fresh model.save() differs only in metadata.json's date_saved,
config.json's shared_object_id numbers (Python id()s) and zip timestamps.
TF_ENABLE_ONEDNN_OPTS=0 is set so the Keras/TensorFlow reference does not depend on
oneDNN's CPU-specific kernels.

Besides writing the fixtures it prints: a table of cases with max |peer - f64|, the
config.json / metadata.json inside seed.keras and layers.keras, and the HDF5 tree of their
model.weights.h5 (and of seed.weights.h5), for whoever writes the Rust loader.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["KERAS_BACKEND"] = "tensorflow"

import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

tf.get_logger().setLevel("ERROR")  # silence predict() retracing warnings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures"
BATCH = 16

CASES = []  # manifest entries, in order


# ----------------------------------------------------------------------------- helpers
def seed_of(name):
    return zlib.crc32(name.encode())


# Inputs are 2 * N(0, 1) except where the saturating piece of an activation would not be
# reached (relu6 / ReLU(max_value=6) need pre-activations > 6) or exp would get large.
INPUT_SCALE = {"act_exponential": 1.0, "act_relu6": 4.0, "layers": 4.0}


def make_input(name, shape):
    scale = INPUT_SCALE.get(name, 2.0)
    rng = np.random.default_rng(seed_of("input:" + name))
    x = (rng.standard_normal((BATCH, *shape)) * scale).astype(np.float32)
    x = np.ascontiguousarray(x)
    np.save(OUT / f"{name}.input.npy", x)
    return x


def randomize_dense(model, name):
    """Kernel ~ N(0, 1/sqrt(fan_in)), bias ~ N(0, 0.1), float32; returns [(W, b|None)]."""
    rng = np.random.default_rng(seed_of("weights:" + name))
    out = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Dense):
            continue
        fan_in, units = layer.kernel.shape
        w = (rng.standard_normal((fan_in, units)) / math.sqrt(fan_in)).astype(np.float32)
        if layer.use_bias:
            b = (rng.standard_normal(units) * 0.1).astype(np.float32)
            layer.set_weights([w, b])
        else:
            b = None
            layer.set_weights([w])
        out.append((w, b))
    return out


def rand_gemm(rng, fan_in, units):
    w = (rng.standard_normal((fan_in, units)) / math.sqrt(fan_in)).astype(np.float32)
    b = (rng.standard_normal(units) * 0.1).astype(np.float32)
    return w, b


def _keras_zip_key(path):
    """Contents of a .keras zip minus what changes on every save: metadata.json's date_saved,
    config.json's shared_object_id values (Python id()s), zip member timestamps."""
    with zipfile.ZipFile(path) as z:
        out = {}
        for i in z.infolist():
            data = z.read(i)
            if i.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            elif i.filename == "config.json":
                ids = {}
                data = re.sub(rb'"shared_object_id": (\d+)',
                              lambda m: b'"shared_object_id": %d' % ids.setdefault(m[1], len(ids)),
                              data)
            out[i.filename] = (data, i.compress_type)
        return [z.namelist(), out]


def save_keras(model, fname, out=None):
    """model.save() into `out` (default OUT), but keep an existing file if only the volatile
    parts would change, so a rerun does not rewrite every .keras in git. Files are always
    genuine model.save() output."""
    out = out or OUT
    path = out / fname
    tmp = out / f".tmp-{fname}"
    model.save(tmp)
    if path.exists() and _keras_zip_key(path) == _keras_zip_key(tmp):
        tmp.unlink()
    else:
        tmp.replace(path)


def fresh():
    keras.backend.clear_session()  # layer names restart at dense, dense_1, ...
    keras.utils.set_random_seed(0)


def keras_predict(model, x):
    y = model.predict(x, batch_size=BATCH, verbose=0)
    return np.asarray(y, dtype=np.float32)


def maxabs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def f32(v):
    """A float attribute as the float32 the model actually stores, widened to f64."""
    return float(np.float32(v))


# ------------------------------------------------------------ float64 reference maths
_erf = np.vectorize(math.erf, otypes=[np.float64])


def softplus(z):
    return np.logaddexp(0.0, z)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(z))


# tf.nn.selu constants (Keras: alpha=1.67326324, scale=1.05070098)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def hard_sigmoid_keras(z):  # relu6(x + 3) / 6
    return np.clip(z + 3.0, 0.0, 6.0) / 6.0


def gelu_exact(z):
    return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))


def gelu_tanh(z):
    return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))


KERAS_ACT = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "relu6": lambda z: np.clip(z, 0.0, 6.0),
    "leaky_relu": lambda z: np.where(z >= 0, z, f32(0.2) * z),  # default negative_slope=0.2
    "elu": elu,
    "selu": lambda z: SELU_SCALE * elu(z, SELU_ALPHA),
    "gelu": gelu_exact,  # keras.activations.gelu: approximate=False
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid_keras,
    "silu": lambda z: z * sigmoid(z),
    "hard_silu": lambda z: z * hard_sigmoid_keras(z),
    "tanh": np.tanh,
    "softplus": softplus,
    "softsign": lambda z: z / (1.0 + np.abs(z)),
    "exponential": np.exp,
    "mish": lambda z: z * np.tanh(softplus(z)),
    "softmax": softmax,
    "log_softmax": log_softmax,
}


def relu_layer(z, max_value, negative_slope, threshold):
    """keras.layers.ReLU as Keras 3 computes it (note the jump at the threshold)."""
    pos = np.where(z > threshold, z, 0.0)
    if max_value is not None:
        pos = np.clip(pos, 0.0, max_value)
    return pos - negative_slope * np.maximum(threshold - z, 0.0)


def dense64(h, w, b):
    y = np.asarray(h, np.float64) @ w.astype(np.float64)
    if b is not None:
        y = y + b.astype(np.float64)
    return y


# ------------------------------------------------------------------------ ONNX helpers
def onnx_model(name, nodes, inits, in_feat, out_feat, opset, doc,
               producer="sinter/scripts/make_fixtures.py"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_feat])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_feat])
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, name, [x], [y], initializer=inits, doc_string=doc)
    opsets = [helper.make_opsetid("", opset)]
    m = helper.make_model(
        g,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name=producer,
    )
    onnx.checker.check_model(m, full_check=True)
    return m


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["y"], {"x": x})[0], dtype=np.float32)


def save_onnx(m, fname, out=None, **kw):
    path = (out or OUT) / fname
    if "location" in kw:
        ((out or OUT) / kw["location"]).unlink(missing_ok=True)  # onnx appends to an existing file
    if kw:
        onnx.save_model(m, str(path), **kw)
    else:
        onnx.save_model(m, str(path))
    onnx.checker.check_model(str(path), full_check=True)  # by path: also checks external data
    return path


# --------------------------------------------------------------------- case recording
def record(name, model_file, fmt, input_name, expected, f64_name, y_peer, y64, activations,
           **extra):
    y_ref = np.load(OUT / f64_name)
    err = maxabs(y_peer, y_ref)
    assert np.all(np.isfinite(y_peer)), name
    entry = {
        "name": name,
        "model": model_file,
        "format": fmt,
        "input": input_name,
        "expected": expected,
        "f64": f64_name,
        "activations": activations,
        "max_abs_peer_vs_f64": err,
    }
    entry.update(extra)
    x = np.load(OUT / input_name)
    entry["input_scale"] = INPUT_SCALE.get(input_name.removesuffix(".input.npy"), 2.0)
    entry["input_shape"] = list(x.shape)
    entry["output_shape"] = list(y_peer.shape)
    CASES.append(entry)
    return err


def save_outputs(name, y_keras=None, y64=None, out=None):
    out = out or OUT
    if y_keras is not None:
        np.save(out / f"{name}.keras.out.npy", np.ascontiguousarray(y_keras, np.float32))
    if y64 is not None:
        np.save(out / f"{name}.f64.out.npy", np.ascontiguousarray(y64, np.float64))


def tool_versions():
    """The versions a manifest records."""
    return {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "python": sys.version.split()[0],
    }


# ------------------------------------------------------------------------------- seed
def case_seed():
    fresh()
    inp = keras.Input((784,))
    h = keras.layers.Dense(32, activation="tanh")(inp)
    h = keras.layers.Activation("relu")(h)
    out = keras.layers.Dense(8, activation="softmax")(h)
    model = keras.Model(inp, out)
    (w1, b1), (w2, b2) = randomize_dense(model, "seed")
    x = make_input("seed", (784,))
    y = keras_predict(model, x)
    x64 = x.astype(np.float64)
    y64 = softmax(dense64(np.maximum(np.tanh(dense64(x64, w1, b1)), 0.0), w2, b2))
    save_outputs("seed", y, y64)
    save_keras(model, "seed.keras")
    model.save_weights(OUT / "seed.weights.h5")
    (OUT / "seed.json").write_text(model.to_json())
    acts = ["tanh", "relu", "softmax"]
    record("seed", "seed.keras", "keras", "seed.input.npy", "seed.keras.out.npy",
           "seed.f64.out.npy", y, y64, acts)

    # Round trips through Keras itself: .keras and JSON + weights.h5 must reproduce y.
    y_zip = keras_predict(keras.models.load_model(OUT / "seed.keras"), x)
    fresh()
    m2 = keras.models.model_from_json((OUT / "seed.json").read_text())
    m2.load_weights(OUT / "seed.weights.h5")
    y_json = keras_predict(m2, x)
    assert maxabs(y_zip, y) == 0.0 and maxabs(y_json, y) == 0.0, "Keras round trip differs"
    record("seed-json", "seed.json", "keras-json", "seed.input.npy", "seed.keras.out.npy",
           "seed.f64.out.npy", y_json, y64, acts, weights="seed.weights.h5")

    # ---- ONNX twins
    x_ = "x"
    # seed.onnx, opset 13: MatMul + Add
    nodes = [
        helper.make_node("MatMul", [x_, "W1"], ["mm1"]),
        helper.make_node("Add", ["mm1", "b1"], ["z1"]),
        helper.make_node("Tanh", ["z1"], ["t1"]),
        helper.make_node("Relu", ["t1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "W2"], ["mm2"]),
        helper.make_node("Add", ["mm2", "b2"], ["z2"]),
        helper.make_node("Softmax", ["z2"], ["y"], axis=-1),
    ]
    inits = {"W1": w1, "b1": b1, "W2": w2, "b2": b2}
    m = onnx_model("seed", nodes, inits, [784], 8, 13, "seed: MatMul/Add, Keras weights")
    p = save_onnx(m, "seed.onnx")
    yo = ort_run(p, x)
    np.save(OUT / "seed.onnx.out.npy", yo)
    record("seed-onnx", "seed.onnx", "onnx", "seed.input.npy", "seed.onnx.out.npy",
           "seed.f64.out.npy", yo, y64, acts, opset=13, max_abs_vs_keras=maxabs(yo, y))

    # seed_ext.onnx: same graph, every initializer in seed_ext.onnx.data
    m_ext = onnx_model("seed", nodes, inits, [784], 8, 13, "seed: MatMul/Add, external data")
    p = save_onnx(m_ext, "seed_ext.onnx", save_as_external_data=True,
                  all_tensors_to_one_file=True, location="seed_ext.onnx.data",
                  size_threshold=0)
    yo = ort_run(p, x)
    np.save(OUT / "seed_ext.onnx.out.npy", yo)
    record("seed-ext-onnx", "seed_ext.onnx", "onnx", "seed.input.npy",
           "seed_ext.onnx.out.npy", "seed.f64.out.npy", yo, y64, acts, opset=13,
           external_data="seed_ext.onnx.data", max_abs_vs_keras=maxabs(yo, y))

    # seed_gemm.onnx, opset 17: Gemm(transB=1); layer 2 with alpha=0.5, beta=2 and
    # initializers pre-scaled (W*2, b/2) - exact in float32, so the same model.
    nodes = [
        helper.make_node("Gemm", [x_, "W1t", "b1"], ["z1"], transB=1),
        helper.make_node("Tanh", ["z1"], ["t1"]),
        helper.make_node("Relu", ["t1"], ["r1"]),
        helper.make_node("Gemm", ["r1", "W2t_x2", "b2_half"], ["z2"], transB=1,
                         alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["z2"], ["y"], axis=-1),
    ]
    inits = {
        "W1t": np.ascontiguousarray(w1.T),
        "b1": b1,
        "W2t_x2": np.ascontiguousarray(w2.T * np.float32(2)),
        "b2_half": b2 / np.float32(2),
    }
    m = onnx_model("seed_gemm", nodes, inits, [784], 8, 17,
                   "seed: Gemm transB=1; layer 2 alpha=0.5 beta=2 with W*2, b/2")
    p = save_onnx(m, "seed_gemm.onnx")
    yo = ort_run(p, x)
    np.save(OUT / "seed_gemm.onnx.out.npy", yo)
    record("seed-gemm-onnx", "seed_gemm.onnx", "onnx", "seed.input.npy",
           "seed_gemm.onnx.out.npy", "seed.f64.out.npy", yo, y64, acts, opset=17,
           max_abs_vs_keras=maxabs(yo, y))


# ---------------------------------------------------------------------- activations
ACT_NAMES = ["linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid",
             "hard_sigmoid", "silu", "hard_silu", "tanh", "softplus", "softsign",
             "exponential", "mish", "softmax", "log_softmax"]

COVERAGE = {}  # name -> text about which pieces of a piecewise activation were hit


def coverage(z, pieces):
    n = z.size
    return ", ".join(f"{k}: {int(np.count_nonzero(m))}/{n}" for k, m in pieces(z).items())


PIECES = {
    "relu": lambda z: {"<0": z < 0, ">0": z > 0},
    "relu6": lambda z: {"<0": z < 0, "0..6": (z > 0) & (z < 6), ">6": z > 6},
    "leaky_relu": lambda z: {"<0": z < 0, ">0": z > 0},
    "elu": lambda z: {"<0": z < 0, ">0": z > 0},
    "selu": lambda z: {"<0": z < 0, ">0": z > 0},
    "hard_sigmoid": lambda z: {"<-3": z < -3, "-3..3": np.abs(z) < 3, ">3": z > 3},
    "hard_silu": lambda z: {"<-3": z < -3, "-3..3": np.abs(z) < 3, ">3": z > 3},
}


def case_act(act):
    name = f"act_{act}"
    fresh()
    inp = keras.Input((32,))
    out = keras.layers.Dense(16, activation=act)(inp)
    model = keras.Model(inp, out)
    ((w, b),) = randomize_dense(model, name)
    x = make_input(name, (32,))
    y = keras_predict(model, x)
    z = dense64(x.astype(np.float64), w, b)
    y64 = KERAS_ACT[act](z)
    if act in PIECES:
        COVERAGE[name] = coverage(z, PIECES[act])
    save_outputs(name, y, y64)
    save_keras(model, f"{name}.keras")
    extra = {}
    if act == "exponential":
        extra["note"] = "input is 0.5 * 2 * N(0,1) to keep exp finite and moderate"
    if act == "relu6":
        extra["note"] = "input is 4 * N(0,1) so some pre-activations exceed 6"
    record(name, f"{name}.keras", "keras", f"{name}.input.npy", f"{name}.keras.out.npy",
           f"{name}.f64.out.npy", y, y64, [act], **extra)


# --------------------------------------------------------------------------- layers
def case_layers():
    fresh()
    L = keras.layers
    model = keras.Sequential([
        keras.Input((20,)),
        L.Dense(24),
        L.LeakyReLU(negative_slope=0.1),
        L.Dense(24),
        L.ReLU(max_value=6.0, negative_slope=0.05, threshold=0.5),
        L.Dense(12),
        L.ELU(alpha=0.7),
        L.Dropout(0.3),
        L.Dense(12, activation="swish"),
        L.Softmax(),
        L.Dense(5, use_bias=False),
        L.Activation("softmax"),
    ])
    ws = randomize_dense(model, "layers")
    x = make_input("layers", (20,))
    y = keras_predict(model, x)
    h = x.astype(np.float64)
    h = dense64(h, *ws[0])
    h = np.where(h >= 0, h, f32(0.1) * h)
    z = dense64(h, *ws[1])
    COVERAGE["layers ReLU(6, 0.05, 0.5)"] = coverage(
        z, lambda z: {"<=0.5": z <= 0.5, "0.5..6": (z > 0.5) & (z < 6), ">=6": z >= 6})
    h = relu_layer(z, 6.0, f32(0.05), f32(0.5))
    h = elu(dense64(h, *ws[2]), f32(0.7))
    h = dense64(h, *ws[3])
    h = h * sigmoid(h)
    h = softmax(h)
    h = softmax(dense64(h, *ws[4]))
    save_outputs("layers", y, h)
    save_keras(model, "layers.keras")
    record("layers", "layers.keras", "keras", "layers.input.npy", "layers.keras.out.npy",
           "layers.f64.out.npy", y, h, ["leaky_relu", "relu", "elu", "silu", "softmax"],
           note="input is 4 * N(0,1) so ReLU(max_value=6) saturates; LeakyReLU(0.1), ReLU(max_value=6, negative_slope=0.05, threshold=0.5), "
                "ELU(0.7), Dropout(0.3), Dense(swish -> saved as silu), Softmax layer, "
                "Dense(use_bias=False), Activation(softmax)")


# ------------------------------------------------------------------ noise / regularization
def case_noise():
    """Layers that act only in training (GaussianNoise, GaussianDropout, AlphaDropout,
    SpatialDropout1D, ActivityRegularization): at inference each passes its input through."""
    fresh()
    L = keras.layers
    model = keras.Sequential([
        keras.Input((20,)),
        L.Dense(16),
        L.GaussianNoise(0.3),
        L.Activation("relu"),
        L.GaussianDropout(0.2),
        L.Reshape((4, 4)),
        L.SpatialDropout1D(0.25),
        L.Flatten(),
        L.Dense(12, activation="tanh"),
        L.AlphaDropout(0.1),
        L.ActivityRegularization(l1=0.01, l2=0.001),
        L.Dense(4, activation="softmax"),
    ])
    ws = randomize_dense(model, "noise")
    x = make_input("noise", (20,))
    y = keras_predict(model, x)
    h = np.maximum(dense64(x.astype(np.float64), *ws[0]), 0.0)
    h = np.tanh(dense64(h, *ws[1]))
    h = softmax(dense64(h, *ws[2]))
    save_outputs("noise", y, h)
    save_keras(model, "noise.keras")
    record("noise", "noise.keras", "keras", "noise.input.npy", "noise.keras.out.npy",
           "noise.f64.out.npy", y, h, ["relu", "tanh", "softmax"],
           note="GaussianNoise(0.3), GaussianDropout(0.2), SpatialDropout1D(0.25), "
                "AlphaDropout(0.1), ActivityRegularization: identities at inference")


# -------------------------------------------------------------------------- flatten
def case_flatten():
    fresh()
    inp = keras.Input((4, 6))
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(10, activation="relu")(h)
    h = keras.layers.Dropout(0.5)(h)
    out = keras.layers.Dense(3)(h)
    model = keras.Model(inp, out)
    (w1, b1), (w2, b2) = randomize_dense(model, "flatten")
    x = make_input("flatten", (4, 6))
    y = keras_predict(model, x)
    y64 = dense64(np.maximum(dense64(x.reshape(BATCH, -1).astype(np.float64), w1, b1), 0),
                  w2, b2)
    save_outputs("flatten", y, y64)
    save_keras(model, "flatten.keras")
    record("flatten", "flatten.keras", "keras", "flatten.input.npy", "flatten.keras.out.npy",
           "flatten.f64.out.npy", y, y64, ["relu"])

    # onnx_reshape.onnx (opset 14), same Keras weights, own input:
    # Reshape([0,-1]) -> MatMul+Add -> Relu -> Flatten(1) -> Gemm -> Softmax
    xr = make_input("onnx_reshape", (4, 6))
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W1"], ["mm1"]),
        helper.make_node("Add", ["mm1", "b1"], ["z1"]),
        helper.make_node("Relu", ["z1"], ["r1"]),
        helper.make_node("Flatten", ["r1"], ["f1"], axis=1),
        helper.make_node("Gemm", ["f1", "W2t", "b2"], ["z2"], transB=1),
        helper.make_node("Softmax", ["z2"], ["y"], axis=-1),
    ]
    inits = {"shape": np.array([0, -1], np.int64), "W1": w1, "b1": b1,
             "W2t": np.ascontiguousarray(w2.T), "b2": b2}
    m = onnx_model("onnx_reshape", nodes, inits, [4, 6], 3, 14,
                   "Reshape [0,-1], MatMul+Add, Relu, Flatten, Gemm, Softmax (flatten weights)")
    p = save_onnx(m, "onnx_reshape.onnx")
    yo = ort_run(p, xr)
    y64 = softmax(dense64(np.maximum(
        dense64(xr.reshape(BATCH, -1).astype(np.float64), w1, b1), 0), w2, b2))
    np.save(OUT / "onnx_reshape.onnx.out.npy", yo)
    save_outputs("onnx_reshape", None, y64)
    record("onnx_reshape", "onnx_reshape.onnx", "onnx", "onnx_reshape.input.npy",
           "onnx_reshape.onnx.out.npy", "onnx_reshape.f64.out.npy", yo, y64,
           ["relu", "softmax"], opset=14)

    # onnx_flatten.onnx (opset 13): Flatten(1) -> Gemm -> Relu (first flatten layer)
    xf = make_input("onnx_flatten", (4, 6))
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "W1t", "b1"], ["z"], transB=1),
        helper.make_node("Relu", ["z"], ["y"]),
    ]
    inits = {"W1t": np.ascontiguousarray(w1.T), "b1": b1}
    m = onnx_model("onnx_flatten", nodes, inits, [4, 6], 10, 13,
                   "Flatten, Gemm, Relu (flatten layer-1 weights)")
    p = save_onnx(m, "onnx_flatten.onnx")
    yo = ort_run(p, xf)
    y64 = np.maximum(dense64(xf.reshape(BATCH, -1).astype(np.float64), w1, b1), 0)
    np.save(OUT / "onnx_flatten.onnx.out.npy", yo)
    save_outputs("onnx_flatten", None, y64)
    record("onnx_flatten", "onnx_flatten.onnx", "onnx", "onnx_flatten.input.npy",
           "onnx_flatten.onnx.out.npy", "onnx_flatten.f64.out.npy", yo, y64, ["relu"],
           opset=13)


# ------------------------------------------------------------------------------ mlp
def case_mlp():
    fresh()
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    ws = randomize_dense(model, "mlp")
    x = make_input("mlp", (64,))
    y = keras_predict(model, x)
    h = x.astype(np.float64)
    h = np.maximum(dense64(h, *ws[0]), 0)
    h = np.maximum(dense64(h, *ws[1]), 0)
    y64 = softmax(dense64(h, *ws[2]))
    save_outputs("mlp", y, y64)
    save_keras(model, "mlp.keras")
    acts = ["relu", "softmax"]
    record("mlp", "mlp.keras", "keras", "mlp.input.npy", "mlp.keras.out.npy",
           "mlp.f64.out.npy", y, y64, acts)

    nodes, inits, cur = [], {}, "x"
    for i, (w, b) in enumerate(ws):
        inits[f"W{i}t"] = np.ascontiguousarray(w.T)
        inits[f"b{i}"] = b
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}t", f"b{i}"], [f"z{i}"], transB=1))
        last = i == len(ws) - 1
        nodes.append(helper.make_node("Softmax" if last else "Relu", [f"z{i}"],
                                      ["y" if last else f"h{i}"], **({"axis": -1} if last else {})))
        cur = f"h{i}"
    m = onnx_model("mlp", nodes, inits, [64], 10, 19, "mlp: Gemm transB=1 + Relu, Softmax")
    p = save_onnx(m, "mlp.onnx")
    yo = ort_run(p, x)
    np.save(OUT / "mlp.onnx.out.npy", yo)
    record("mlp-onnx", "mlp.onnx", "onnx", "mlp.input.npy", "mlp.onnx.out.npy",
           "mlp.f64.out.npy", yo, y64, acts, opset=19, max_abs_vs_keras=maxabs(yo, y))


# ------------------------------------------------------------------------- onnx_ops
def pick_ops_opset():
    """21 if ONNX Runtime runs it, else the highest it runs that is >= 20."""
    for opset in (21, 20):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
        g = helper.make_graph([helper.make_node("Gelu", ["x"], ["y"])], "probe", [x], [y])
        ops = [helper.make_opsetid("", opset)]
        m = helper.make_model(g, opset_imports=ops, ir_version=helper.find_min_ir_version_for(ops))
        try:
            ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # noqa: BLE001
            continue
    sys.exit("onnxruntime supports neither opset 21 nor 20")


def case_onnx_ops():
    opset = pick_ops_opset()
    rng = np.random.default_rng(seed_of("weights:onnx_ops"))
    x = make_input("onnx_ops", (32,))
    # (width out, ONNX op, attrs, f64 function); Gemm k uses transB = k % 2 (both layouts).
    HS_A, HS_B = f32(1 / 6), f32(0.5)
    ONNX_SELU_ALPHA, ONNX_SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875
    chain = [
        (24, "LeakyRelu", {"alpha": 0.1}, lambda z: np.where(z >= 0, z, f32(0.1) * z)),
        (32, "Elu", {"alpha": 0.7}, lambda z: elu(z, f32(0.7))),
        (16, "Selu", {}, lambda z: ONNX_SELU_GAMMA * elu(z, ONNX_SELU_ALPHA)),
        (24, "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5},
         lambda z: np.clip(HS_A * z + HS_B, 0.0, 1.0)),
        (20, "Softplus", {}, softplus),
        (28, "Softsign", {}, lambda z: z / (1.0 + np.abs(z))),
        (16, "Gelu", {"approximate": "none"}, gelu_exact),
        (32, "Gelu", {"approximate": "tanh"}, gelu_tanh),
    ]
    nodes, inits = [], {}
    cur, width = "x", 32
    h = x.astype(np.float64)
    for k, (units, op, attrs, fn) in enumerate(chain):
        w, b = rand_gemm(rng, width, units)
        trans_b = k % 2
        inits[f"W{k}"] = np.ascontiguousarray(w.T) if trans_b else w
        inits[f"b{k}"] = b
        nodes.append(helper.make_node("Gemm", [cur, f"W{k}", f"b{k}"], [f"z{k}"], transB=trans_b))
        nodes.append(helper.make_node(op, [f"z{k}"], [f"a{k}"], **attrs))
        h = fn(dense64(h, w, b))
        cur, width = f"a{k}", units
    nodes.append(helper.make_node("Identity", [cur], ["ident"]))
    inits["ratio"] = np.array(0.25, np.float32)
    nodes.append(helper.make_node("Dropout", ["ident", "ratio"], ["drop"]))
    w, b = rand_gemm(rng, width, 24)
    inits["W_s"], inits["b_s"] = np.ascontiguousarray(w.T), b
    nodes.append(helper.make_node("Gemm", ["drop", "W_s", "b_s"], ["zs"], transB=1))
    nodes.append(helper.make_node("Sigmoid", ["zs"], ["s"]))
    h = sigmoid(dense64(h, w, b))
    w, b = rand_gemm(rng, 24, 10)
    inits["W_out"], inits["b_out"] = w, b
    nodes.append(helper.make_node("MatMul", ["s", "W_out"], ["mm"]))
    nodes.append(helper.make_node("Add", ["mm", "b_out"], ["zo"]))
    nodes.append(helper.make_node("LogSoftmax", ["zo"], ["y"], axis=-1))
    y64 = log_softmax(dense64(h, w, b))
    m = onnx_model("onnx_ops", nodes, inits, [32], 10, opset,
                   "activation zoo: Gemm (transB alternating 0/1) + each op")
    p = save_onnx(m, "onnx_ops.onnx")
    yo = ort_run(p, x)
    np.save(OUT / "onnx_ops.onnx.out.npy", yo)
    save_outputs("onnx_ops", None, y64)
    record("onnx_ops", "onnx_ops.onnx", "onnx", "onnx_ops.input.npy", "onnx_ops.onnx.out.npy",
           "onnx_ops.f64.out.npy", yo, y64,
           ["leaky_relu", "elu", "selu", "hard_sigmoid", "softplus", "softsign", "gelu",
            "gelu_tanh", "sigmoid", "log_softmax"], opset=opset,
           onnx_ops=["Gemm", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "Softplus",
                     "Softsign", "Gelu", "Identity", "Dropout", "Sigmoid", "MatMul", "Add",
                     "LogSoftmax"],
           note="LeakyRelu alpha=0.1, Elu alpha=0.7, Selu default (alpha=1.6732632, "
                "gamma=1.0507010), HardSigmoid alpha=1/6 beta=0.5 (= Keras hard_sigmoid), "
                "Gelu approximate=none then tanh ('gelu_tanh' has no Keras string), "
                "Dropout ratio=0.25 initializer (inference no-op); Gemm k has transB=k%2")

    # onnx_hardsigmoid_default.onnx (opset 13): HardSigmoid with DEFAULT alpha=0.2, beta=0.5
    rng = np.random.default_rng(seed_of("weights:onnx_hardsigmoid_default"))
    x = make_input("onnx_hardsigmoid_default", (32,))
    w, b = rand_gemm(rng, 32, 16)
    nodes = [helper.make_node("Gemm", ["x", "Wt", "b"], ["z"], transB=1),
             helper.make_node("HardSigmoid", ["z"], ["y"])]
    m = onnx_model("onnx_hardsigmoid_default", nodes, {"Wt": np.ascontiguousarray(w.T), "b": b},
                   [32], 16, 13, "HardSigmoid with default attributes alpha=0.2 beta=0.5")
    p = save_onnx(m, "onnx_hardsigmoid_default.onnx")
    yo = ort_run(p, x)
    z = dense64(x.astype(np.float64), w, b)
    COVERAGE["onnx_hardsigmoid_default"] = coverage(
        z, lambda z: {"<-2.5": z < -2.5, "-2.5..2.5": np.abs(z) < 2.5, ">2.5": z > 2.5})
    y64 = np.clip(f32(0.2) * z + f32(0.5), 0.0, 1.0)
    np.save(OUT / "onnx_hardsigmoid_default.onnx.out.npy", yo)
    save_outputs("onnx_hardsigmoid_default", None, y64)
    record("onnx_hardsigmoid_default", "onnx_hardsigmoid_default.onnx", "onnx",
           "onnx_hardsigmoid_default.input.npy", "onnx_hardsigmoid_default.onnx.out.npy",
           "onnx_hardsigmoid_default.f64.out.npy", yo, y64, ["hard_sigmoid_onnx_default"],
           opset=13, note="ONNX HardSigmoid default alpha=0.2, beta=0.5: NOT Keras "
                          "hard_sigmoid (1/6, 0.5); an implementation may reject it")


# ------------------------------------------------------------------------ reporting
def h5_tree(f):
    lines = []

    def attrs(o):
        a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in o.attrs.items()}
        return f"  attrs={a}" if a else ""

    lines.append(f"/{attrs(f)}")

    def visit(name, o):
        if isinstance(o, h5py.Dataset):
            lines.append(f"/{name}  dataset shape={o.shape} dtype={o.dtype}{attrs(o)}")
        else:
            lines.append(f"/{name}/  group{attrs(o)}")

    f.visititems(visit)
    return "\n".join(lines)


def dump_keras_zip(fname):
    with zipfile.ZipFile(OUT / fname) as z:
        print(f"\n===== {fname}: zip members =====")
        for i in z.infolist():
            print(f"  {i.filename}  {i.file_size} bytes  compress_type={i.compress_type}")
        for member in ("config.json", "metadata.json"):
            print(f"\n----- {fname} / {member} (exact bytes) -----")
            print(z.read(member).decode())
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            print(f"\n----- {fname} / model.weights.h5 tree -----")
            print(h5_tree(f))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    case_seed()
    for act in ACT_NAMES:
        case_act(act)
    case_layers()
    case_noise()
    case_flatten()
    case_mlp()
    case_onnx_ops()
    # Models sinter must refuse (cases with an "error" key); no TensorFlow needed there.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_error_fixtures import error_cases  # noqa: E402

    CASES.extend(error_cases())

    versions = tool_versions()
    manifest = {
        "generated_by": "scripts/make_fixtures.py",
        "versions": versions,
        "env": {"TF_ENABLE_ONEDNN_OPTS": "0", "KERAS_BACKEND": "tensorflow"},
        "batch": BATCH,
        "notes": [
            "inputs float32, batch-first, C order; *.keras.out.npy / *.onnx.out.npy float32; "
            "*.f64.out.npy float64 computed with NumPy from the float32 weights",
            "Dense kernels N(0, 1/sqrt(fan_in)), biases N(0, 0.1) (not Keras default init)",
            "max_abs_peer_vs_f64 = max |expected - f64| over the batch",
            "act_gelu_approx is not generated: an approximate-gelu Activation(lambda) is not "
            "serializable in .keras; onnx_ops covers Gelu(approximate='tanh')",
        ],
        "cases": CASES,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    print("\n===== versions =====")
    print(json.dumps(versions))
    print("\n===== cases: max |peer - f64| =====")
    print(f"{'case':<28} {'format':<10} {'out shape':<10} {'max_abs_peer_vs_f64':>20} "
          f"{'vs keras':>10}")
    for c in CASES:
        if "error" in c:
            print(f"{c['name']:<28} {c['format']:<10} refused: {c['error']}")
            continue
        vk = c.get("max_abs_vs_keras")
        print(f"{c['name']:<28} {c['format']:<10} {str(tuple(c['output_shape'])):<10} "
              f"{c['max_abs_peer_vs_f64']:>20.3e} {'' if vk is None else f'{vk:.1e}':>10}")
    print("\n===== pre-activation coverage of piecewise functions =====")
    for k, v in COVERAGE.items():
        print(f"  {k:<28} {v}")

    dump_keras_zip("seed.keras")
    dump_keras_zip("layers.keras")
    with h5py.File(OUT / "seed.weights.h5", "r") as f:
        print("\n----- seed.weights.h5 tree -----")
        print(h5_tree(f))
    with zipfile.ZipFile(OUT / "layers.keras") as z:
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            owners = sorted({n.rsplit("/vars", 1)[0] for n in _names(f) if "/vars" in n})
            print("\nlayers.keras: layer groups that own a vars group:", owners)
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"\nfixture files (top level of tests/fixtures): {total / 1024:.1f} KiB")


def _names(f):
    out = []
    f.visit(out.append)
    return out


if __name__ == "__main__":
    main()
