#!/usr/bin/env python3
"""Golden-test fixtures for sinter's graph layers: Embedding, BatchNormalization,
LayerNormalization, RMSNormalization, the merge layers (Add, Subtract, Multiply, Average,
Maximum, Minimum, Concatenate), Normalization / Rescaling / Identity preprocessing, and
functional models with several inputs and several outputs; hand-built ONNX graphs with
BatchNormalization, LayerNormalization, Gather, variadic Sum/Max/Min/Mean and several
outputs; plus hostile models that a loader must refuse with a clear error. Same conventions
as scripts/make_fixtures.py (whose pure helpers it imports).

What it makes (all in tests/fixtures/graphs/; nothing else is touched):
  NAME.keras            Keras 3 zip from model.save() (config.json, metadata.json,
                        model.weights.h5)
  NAME.onnx             hand-built ONNX graph (onnx.helper, opset 17), onnx.checker-clean
  NAME.in<k>.npy        input k of the model, in the model's input order, batch of 8:
                        float32 2 * N(0, 1), or integer token ids uniform in [0, vocab)
                        (int32 for Keras integer inputs, int64 for ONNX)
  NAME.out<k>.npy       producer output k: Keras model.predict(x, verbose=0) or ONNX Runtime
                        (CPU provider), float32
  NAME.f64.out<k>.npy   float64 NumPy reference for output k, computed here from the float32
                        weights with a small forward written per case
  hostile_*.keras       models sinter must refuse (mask_zero, negative moving variance, NaN
                        gamma, BatchNormalization over the steps axis); listed under
                        "hostile" in the manifest with the reason
  hostile_embedding_range.in0.npy
                        int32 token ids for text_cnn.keras with one id = vocab (50) and one -1
  manifest.json         {"generated_by", "versions", "env", "batch", "cases": [{"name",
                        "model", "format", "inputs": [{"name", "file", "dtype", "shape"}],
                        "outputs": [{"name", "expected", "f64", "dtype", "shape",
                        "max_abs_peer_vs_f64"}], "activations", "notes"}], "hostile":
                        [{"file", "why"}]}; input/output names are the Keras InputLayer
                        names / output layers' names, or the ONNX graph input/output names

Weights are not Keras's default init; every variable is set with set_weights from a NumPy
generator seeded by crc32("weights:NAME"), in model.layers order and each layer's
layer.weights order: Dense / Conv1D kernels N(0, 1/sqrt(fan_in)) (fan_in = k * cin for
Conv1D), biases N(0, 0.1), BatchNormalization gamma U(0.5, 1.5), beta N(0, 0.2),
moving_mean N(0, 0.5), moving_variance U(0.3, 2.0), LayerNormalization gamma U(0.5, 1.5),
beta N(0, 0.2), RMSNormalization scale U(0.5, 1.5), Embedding tables N(0, 1).
Normalization layers are adapt()ed on seeded data with nonzero means and non-unit
variances. dense_bn_relu_seq (Sequential) uses dense_bn_relu's generator, so both hold the
same weights. Input k of case NAME is seeded by crc32("input:NAME:k").

Run (from the repo root; regenerates everything, deterministic):
    /tmp/kvenv/bin/python scripts/make_graph_fixtures.py [--notes /tmp/graph_fixtures_notes.md]
The venv: python3 -m venv /tmp/kvenv && /tmp/kvenv/bin/pip install tensorflow-cpu==2.21.0
keras==3.15.1 h5py onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6 (the versions actually used
are recorded in manifest.json). KERAS_BACKEND=tensorflow.
Reruns are byte-identical: every .npy/.onnx/.json is deterministic, and an existing .keras is
kept when a fresh model.save() differs only in metadata.json's date_saved, config.json's
shared_object_id numbers (Python id()s) and zip timestamps. TF_ENABLE_ONEDNN_OPTS=0 is set so
the Keras/TensorFlow reference does not depend on oneDNN's CPU-specific kernels; TensorFlow
and ONNX Runtime run on one thread (deterministic, and light on a shared 2-core machine).

Besides writing the fixtures it prints a table of cases with max |peer - f64| per output;
with --notes PATH it also writes a Markdown file with the config.json entry of one layer of
each new class, the top-level input_layers / output_layers of the multi-input and
multi-output models, and the model.weights.h5 tree of each of those layers.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["KERAS_BACKEND"] = "tensorflow"

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# Pure helpers shared with the dense and conv fixtures (maths, seeds, .keras comparison).
from make_fixtures import (  # noqa: E402
    KERAS_ACT,
    dense64,
    f32,
    fresh,
    h5_tree,
    maxabs,
    save_keras,
    save_onnx,
    seed_of,
    softmax,
    tool_versions,
)
from make_conv_fixtures import conv1d64, pool1d64  # noqa: E402

tf.get_logger().setLevel("ERROR")
# LayerNormalization(rms_scaling=True) warns again whenever its op is traced; recorded once.
warnings.filterwarnings("ignore", message="You passed `rms_scaling=True`")
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "graphs"
BATCH = 8
INPUT_SCALE = 2.0
OPSET = 17
PRODUCER = "sinter/scripts/make_graph_fixtures.py"

CASES = []  # manifest entries, in order
HOSTILE = []  # manifest "hostile" entries
OBS = {}  # facts found while generating, for the notes
VAR_NAMES = {}  # (keras file, layer name) -> [variable names in vars/0, vars/1, ... order]
L = keras.layers
relu = KERAS_ACT["relu"]


# ----------------------------------------------------------------------------- inputs
def float_input(name, k, shape):
    rng = np.random.default_rng(seed_of(f"input:{name}:{k}"))
    return np.ascontiguousarray((rng.standard_normal((BATCH, *shape)) * INPUT_SCALE)
                                .astype(np.float32))


def int_input(name, k, shape, vocab, dtype):
    rng = np.random.default_rng(seed_of(f"input:{name}:{k}"))
    return np.ascontiguousarray(rng.integers(0, vocab, size=(BATCH, *shape)).astype(dtype))


# ---------------------------------------------------------------------------- weights
def _draw(rng, layer, var):
    shape = tuple(var.shape)
    vname = var.name
    if vname == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        return rng.standard_normal(shape) / math.sqrt(fan_in)
    if vname == "bias":
        return rng.standard_normal(shape) * 0.1
    if vname in ("gamma", "scale"):  # BN / LN gamma, RMSNormalization scale
        return rng.uniform(0.5, 1.5, shape)
    if vname == "beta":
        return rng.standard_normal(shape) * 0.2
    if vname == "moving_mean":
        return rng.standard_normal(shape) * 0.5
    if vname == "moving_variance":
        return rng.uniform(0.3, 2.0, shape)
    if vname == "embeddings":
        return rng.standard_normal(shape)
    raise ValueError(f"no distribution for {type(layer).__name__}.{vname}")


def randomize(model, name):
    """Sets every variable of every layer (except adapted Normalization layers) from the
    generator of `name`; returns {layer name: {variable name: float32 array}}."""
    rng = np.random.default_rng(seed_of("weights:" + name))
    params = {}
    for layer in model.layers:
        if isinstance(layer, L.Normalization):
            params[layer.name] = {v.name: np.asarray(v.numpy()) for v in layer.weights}
            continue
        if not layer.weights:
            continue
        vals = [_draw(rng, layer, v).astype(np.float32) for v in layer.weights]
        layer.set_weights(vals)
        params[layer.name] = {v.name: val for v, val in zip(layer.weights, vals)}
    return params


def adapt(layer, name, shape, axis_len):
    """Adapts a Normalization layer on 256 seeded samples whose per-feature mean and std
    (along the kept axis, length axis_len) are far from 0 and 1."""
    rng = np.random.default_rng(seed_of("adapt:" + name))
    mean = rng.uniform(-3.0, 3.0, axis_len)
    std = rng.uniform(0.3, 3.0, axis_len)
    data = (rng.standard_normal((256, *shape)) * std + mean).astype(np.float32)
    layer.adapt(data)


# ------------------------------------------------------------ float64 reference maths
def d64(p):
    """(kernel, bias|None) of one Dense/Conv1D params dict."""
    return p["kernel"], p.get("bias")


def bn64(x, p, eps, axis=-1):
    """Keras BatchNormalization at inference: (x - mean) / sqrt(var + eps) * gamma + beta,
    along `axis` (gamma / beta absent when scale / center is False)."""
    x = np.asarray(x, np.float64)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]

    def v(k, default):
        return np.asarray(p[k], np.float64).reshape(shape) if k in p else default

    y = (x - v("moving_mean", 0.0)) / np.sqrt(v("moving_variance", 1.0) + f32(eps))
    return y * v("gamma", 1.0) + v("beta", 0.0)


def ln64(x, p, eps):
    """Keras LayerNormalization over the last axis, biased variance."""
    x = np.asarray(x, np.float64)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + f32(eps))
    if "gamma" in p:
        y = y * p["gamma"].astype(np.float64)
    if "beta" in p:
        y = y + p["beta"].astype(np.float64)
    return y


def ln_rms_scaling64(x, p, eps):
    """Keras 3.15 LayerNormalization(rms_scaling=True): x * rsqrt(var(x) + eps) * gamma -
    the (biased, mean-subtracted) variance, but x itself is not centred, and no beta."""
    x = np.asarray(x, np.float64)
    var = x.var(axis=-1, keepdims=True)
    return x / np.sqrt(var + f32(eps)) * p["gamma"].astype(np.float64)


def rms64(x, p, eps):
    """keras.layers.RMSNormalization: x * rsqrt(mean(x^2) + eps) * scale."""
    x = np.asarray(x, np.float64)
    ms = (x * x).mean(axis=-1, keepdims=True)
    return x / np.sqrt(ms + f32(eps)) * p["scale"].astype(np.float64)


def norm64(x, p):
    """Keras Normalization (invert=False): (x - mean) / max(sqrt(var), 1e-7), with mean /
    variance broadcast along the kept (last) axis."""
    x = np.asarray(x, np.float64)
    mean = p["mean"].astype(np.float64)
    var = p["variance"].astype(np.float64)
    return (x - mean) / np.maximum(np.sqrt(var), f32(keras.config.epsilon()))


def conv_ncw64(x, w, b, pad):
    """ONNX Conv 1-D, NCW, float64. x [N, cin, L], w [cout, cin, k], b [cout]."""
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pad[0], pad[1])))
    k = w.shape[2]
    out = xp.shape[2] - k + 1
    y = np.zeros((x.shape[0], w.shape[0], out))
    for j in range(k):
        y += np.einsum("ncl,oc->nol", xp[:, :, j: j + out], w[:, :, j].astype(np.float64))
    return y + b.astype(np.float64)[None, :, None]


# ------------------------------------------------------------------------ recording
def keras_names(model):
    """(input names, output names): the InputLayer names and the output layers' names, in
    the model's input / output order."""
    ins = [t._keras_history.operation.name for t in model.inputs]
    outs = [t._keras_history.operation.name for t in model.outputs]
    return ins, outs


def keras_predict(model, xs):
    ys = model.predict(xs if len(xs) > 1 else xs[0], batch_size=BATCH, verbose=0)
    if not isinstance(ys, (list, tuple)):
        ys = [ys]
    return [np.asarray(y, dtype=np.float32) for y in ys]


def write_case(name, model_file, fmt, in_names, xs, out_names, ys, y64s, acts, notes,
               **extra):
    assert len(in_names) == len(xs) and len(out_names) == len(ys) == len(y64s), name
    inputs, outputs = [], []
    for k, (n, x) in enumerate(zip(in_names, xs)):
        f = f"{name}.in{k}.npy"
        np.save(OUT / f, x)
        inputs.append({"name": n, "file": f, "dtype": str(x.dtype), "shape": list(x.shape)})
    for k, (n, y, y64) in enumerate(zip(out_names, ys, y64s)):
        assert np.all(np.isfinite(y)), (name, k)
        assert y.shape == y64.shape, (name, k, y.shape, y64.shape)
        fe, f6 = f"{name}.out{k}.npy", f"{name}.f64.out{k}.npy"
        y = np.ascontiguousarray(y)
        np.save(OUT / fe, y)
        np.save(OUT / f6, np.ascontiguousarray(y64, np.float64))
        outputs.append({"name": n, "expected": fe, "f64": f6, "dtype": str(y.dtype),
                        "shape": list(y.shape), "max_abs_peer_vs_f64": maxabs(y, y64)})
    entry = {"name": name, "model": model_file, "format": fmt, "inputs": inputs,
             "outputs": outputs, "activations": acts}
    entry.update(extra)
    entry["notes"] = notes
    CASES.append(entry)


def keras_case(name, model, xs, y64s, acts, notes):
    """Predicts, saves the .keras, checks that it reloads to the same outputs, records."""
    ys = keras_predict(model, xs)
    in_names, out_names = keras_names(model)
    fname = f"{name}.keras"
    save_keras(model, fname, out=OUT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rms_scaling's deprecation warning
        y2 = keras_predict(keras.models.load_model(OUT / fname), xs)
    assert all(maxabs(a, b) == 0.0 for a, b in zip(ys, y2)), f"Keras round trip of {fname}"
    check_h5_mapping(model, fname)
    write_case(name, fname, "keras", in_names, xs, out_names, ys, y64s, acts, notes)
    return ys


def check_h5_mapping(model, fname):
    """Every layer's variables are in the h5 group layer_to_group() names, in
    layer.weights order (vars/0, vars/1, ...), bit for bit."""
    cfg, h5b = _zip(fname)
    mapping = layer_to_group(cfg, h5b)
    with h5py.File(io.BytesIO(h5b), "r") as f:
        for layer in model.layers:
            g = f[mapping[layer.name]]["vars"]
            assert g.attrs["name"] == layer.name, (fname, layer.name, dict(g.attrs))
            assert len(g) == len(layer.weights), (fname, layer.name)
            VAR_NAMES[(fname, layer.name)] = [v.name for v in layer.weights]
            for i, v in enumerate(layer.weights):
                assert np.array_equal(g[str(i)][()], np.asarray(v.numpy()), equal_nan=True), \
                    (fname, layer.name, i)


def hostile(fname, why, **extra):
    HOSTILE.append({"file": fname, "why": why, **extra})


# ------------------------------------------------------------------------ ONNX helpers
def vinfo(name, dtype, dims):
    return helper.make_tensor_value_info(name, dtype, dims)


def onnx_graph(name, nodes, inits, inputs, outputs, doc):
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits, doc_string=doc)
    opsets = [helper.make_opsetid("", OPSET)]
    m = helper.make_model(g, opset_imports=opsets,
                          ir_version=helper.find_min_ir_version_for(opsets),
                          producer_name=PRODUCER)
    onnx.checker.check_model(m, full_check=True)
    return m


def ort_run(path, feeds, out_names):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(feeds), path
    assert [o.name for o in sess.get_outputs()] == out_names, path
    return [np.asarray(y) for y in sess.run(out_names, feeds)]


def onnx_case(name, m, xs, y64s, acts, notes):
    in_names = [i.name for i in m.graph.input]
    out_names = [o.name for o in m.graph.output]
    p = save_onnx(m, f"{name}.onnx", out=OUT)
    ys = ort_run(p, dict(zip(in_names, xs)), out_names)
    write_case(name, f"{name}.onnx", "onnx", in_names, xs, out_names, ys, y64s, acts, notes,
               opset=OPSET)


def gemm_w(rng, fan_in, units, trans_b):
    """ONNX Gemm weights: returns (B initializer, W [fan_in, units], b) with B = W^T if
    trans_b."""
    w = (rng.standard_normal((fan_in, units)) / math.sqrt(fan_in)).astype(np.float32)
    b = (rng.standard_normal(units) * 0.1).astype(np.float32)
    return (np.ascontiguousarray(w.T) if trans_b else w), w, b


def bn_stats(rng, c):
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = (rng.standard_normal(c) * 0.2).astype(np.float32)
    mean = (rng.standard_normal(c) * 0.5).astype(np.float32)
    var = rng.uniform(0.3, 2.0, c).astype(np.float32)
    return {"gamma": gamma, "beta": beta, "moving_mean": mean, "moving_variance": var}


# ================================================================== Keras cases
def case_text_cnn():
    name = "text_cnn"
    fresh()
    tok = keras.Input((20,), dtype="int32", name="tokens")
    e = L.Embedding(50, 8, name="embedding")(tok)
    branches = [L.Conv1D(16, k, padding="same", name=f"conv_k{k}")(e) for k in (3, 4, 5)]
    h = L.Concatenate(name="concat")(branches)
    h = L.Activation("relu", name="relu")(h)
    h = L.GlobalMaxPooling1D(name="gmp")(h)
    out = L.Dense(4, activation="softmax", name="probs")(h)
    model = keras.Model(tok, out)
    p = randomize(model, name)
    ids = int_input(name, 0, (20,), 50, np.int32)
    e64 = p["embedding"]["embeddings"].astype(np.float64)[ids]
    h = np.concatenate([conv1d64(e64, *d64(p[f"conv_k{k}"]), padding="same")
                        for k in (3, 4, 5)], axis=-1)
    h = relu(h).max(axis=1)
    y64 = softmax(dense64(h, *d64(p["probs"])))
    keras_case(name, model, [ids], [y64], ["linear", "relu", "softmax"],
               "int32 token ids in [0, 50); Conv1D padding='same' with k=3,4,5 (k=4: TF pads "
               "1 left, 2 right); Concatenate on channels; ReLU after the concat")
    return ids


def _dense_bn_relu_layers():
    return [L.Dense(64), L.BatchNormalization(), L.Activation("relu"),
            L.Dense(10, activation="softmax")]


def _dense_bn_relu_f64(p, x, names):
    d1, bn, d2 = names
    h = dense64(x.astype(np.float64), *d64(p[d1]))
    h = relu(bn64(h, p[bn], 1e-3))
    return softmax(dense64(h, *d64(p[d2])))


def case_dense_bn_relu():
    fresh()
    inp = keras.Input((32,))
    h = inp
    for layer in _dense_bn_relu_layers():
        h = layer(h)
    model = keras.Model(inp, h)
    p = randomize(model, "dense_bn_relu")
    x = float_input("dense_bn_relu", 0, (32,))
    y64 = _dense_bn_relu_f64(p, x, ["dense", "batch_normalization", "dense_1"])
    keras_case("dense_bn_relu", model, [x], [y64], ["linear", "relu", "softmax"],
               "functional; BatchNormalization defaults (epsilon=1e-3, momentum=0.99) with "
               "random gamma/beta/moving stats")

    fresh()
    model = keras.Sequential([keras.Input((32,)), *_dense_bn_relu_layers()])
    p2 = randomize(model, "dense_bn_relu")
    assert all(np.array_equal(p2[k][v], p[k][v]) for k in p for v in p[k])
    x = float_input("dense_bn_relu_seq", 0, (32,))
    y64 = _dense_bn_relu_f64(p2, x, ["dense", "batch_normalization", "dense_1"])
    keras_case("dense_bn_relu_seq", model, [x], [y64], ["linear", "relu", "softmax"],
               "Sequential twin of dense_bn_relu: same layers, same weights (same generator), "
               "own input")


def case_conv_bn():
    name = "conv_bn"
    fresh()
    inp = keras.Input((24, 6))
    h = L.Conv1D(16, 3, padding="same", name="conv1")(inp)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.Activation("relu")(h)
    h = L.Conv1D(16, 3, use_bias=False, name="conv2")(h)
    h = L.BatchNormalization(center=False, epsilon=1e-3, name="bn2")(h)
    h = L.Activation("relu")(h)
    h = L.GlobalAveragePooling1D()(h)
    out = L.Dense(3, name="head")(h)
    model = keras.Model(inp, out)
    p = randomize(model, name)
    x = float_input(name, 0, (24, 6))
    h = relu(bn64(conv1d64(x, *d64(p["conv1"]), padding="same"), p["bn1"], 1e-3))
    h = relu(bn64(conv1d64(h, p["conv2"]["kernel"], None), p["bn2"], 1e-3))
    y64 = dense64(h.mean(axis=1), *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear", "relu"],
               "BN after Conv1D (per channel, last axis); second Conv1D has no bias and its "
               "BN has center=False (no beta), epsilon=1e-3")


def case_bn_unfoldable():
    name = "bn_unfoldable"
    fresh()
    x_in = keras.Input((16,))
    h = L.BatchNormalization(name="bn_in")(x_in)
    h = L.Dense(32, activation="relu", name="d1")(h)
    r = L.Dense(32, name="d2")(h)
    s = L.Add(name="add")([h, r])
    s = L.BatchNormalization(scale=False, name="bn_res")(s)
    out = L.Dense(5, name="head")(s)
    model = keras.Model(x_in, out)
    p = randomize(model, name)
    x = float_input(name, 0, (16,))
    h = relu(dense64(bn64(x, p["bn_in"], 1e-3), *d64(p["d1"])))
    s = bn64(h + dense64(h, *d64(p["d2"])), p["bn_res"], 1e-3)
    y64 = dense64(s, *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear", "relu"],
               "BN directly on the model input (no producer layer to fold into) and BN "
               "(scale=False: no gamma) after a residual Add")

    name = "bn_seq_pool"
    fresh()
    inp = keras.Input((12, 4))
    h = L.Conv1D(8, 3, activation="relu", name="conv")(inp)
    h = L.MaxPooling1D(2, name="pool")(h)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Flatten()(h)
    out = L.Dense(3, name="head")(h)
    model = keras.Model(inp, out)
    p = randomize(model, name)
    x = float_input(name, 0, (12, 4))
    h = relu(conv1d64(x, *d64(p["conv"])))
    h = bn64(pool1d64(h, 2, 2, "valid", "max"), p["bn"], 1e-3)
    y64 = dense64(h.reshape(BATCH, -1), *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear", "relu"],
               "BN on a [N, 5, 8] sequence after MaxPooling1D (normalizes the channel axis), "
               "then Flatten")


def case_layernorm():
    name = "layernorm"
    fresh()
    inp = keras.Input((32,))
    h = L.Dense(64, name="d1")(inp)
    h = L.LayerNormalization(name="ln1")(h)
    h = L.Dense(64, activation="gelu", name="d2")(h)
    h = L.LayerNormalization(center=False, name="ln2")(h)
    out = L.Dense(8, name="head")(h)
    model = keras.Model(inp, out)
    p = randomize(model, name)
    x = float_input(name, 0, (32,))
    h = ln64(dense64(x, *d64(p["d1"])), p["ln1"], 1e-3)
    h = ln64(KERAS_ACT["gelu"](dense64(h, *d64(p["d2"]))), p["ln2"], 1e-3)
    y64 = dense64(h, *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear", "gelu"],
               "LayerNormalization default epsilon=1e-3 (not 1e-5); second LN center=False "
               "(gamma only); Dense gelu is exact (erf)")

    name = "layernorm_seq"
    fresh()
    inp = keras.Input((10, 16))
    h = L.Conv1D(32, 3, name="conv")(inp)
    h = L.LayerNormalization(epsilon=1e-3, name="ln")(h)
    h = L.GlobalAveragePooling1D()(h)
    out = L.Dense(4, name="head")(h)
    model = keras.Model(inp, out)
    p = randomize(model, name)
    x = float_input(name, 0, (10, 16))
    h = ln64(conv1d64(x, *d64(p["conv"])), p["ln"], 1e-3)
    y64 = dense64(h.mean(axis=1), *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear"],
               "LayerNormalization on a [N, 8, 32] sequence: per step, over the 32 channels")

    name = "layernorm_noaffine"
    fresh()
    inp = keras.Input((24,))
    h = L.Dense(24, name="d1")(inp)
    h = L.LayerNormalization(center=False, scale=False, name="ln")(h)
    out = L.Dense(4, name="head")(h)
    model = keras.Model(inp, out)
    p = randomize(model, name)
    x = float_input(name, 0, (24,))
    h = ln64(dense64(x, *d64(p["d1"])), {}, 1e-3)
    y64 = dense64(h, *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear"],
               "LayerNormalization(center=False, scale=False): no variables at all (empty "
               "vars group)")


def case_rmsnorm():
    OBS["RMSNormalization"] = hasattr(L, "RMSNormalization")
    if OBS["RMSNormalization"]:
        name = "rmsnorm"
        fresh()
        inp = keras.Input((32,))
        h = L.Dense(64, name="d1")(inp)
        h = L.RMSNormalization(name="rms")(h)
        out = L.Dense(8, name="head")(h)
        model = keras.Model(inp, out)
        rms = model.get_layer("rms")
        OBS["RMSNormalization_config"] = rms.get_config()
        OBS["RMSNormalization_weights"] = [(v.name, list(v.shape), v.dtype) for v in
                                           rms.weights]
        p = randomize(model, name)
        x = float_input(name, 0, (32,))
        h = rms64(dense64(x, *d64(p["d1"])), p["rms"], rms.epsilon)
        y64 = dense64(h, *d64(p["head"]))
        keras_case(name, model, [x], [y64], ["linear"],
                   f"keras.layers.RMSNormalization (epsilon default {rms.epsilon}): "
                   "x * rsqrt(mean(x^2) + eps) * scale; one variable 'scale', no bias")

    # LayerNormalization(rms_scaling=...) is a deprecated kwarg in 3.15 (not in the
    # signature, popped from **kwargs, warns); it still builds and is saved in the config.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            probe = L.LayerNormalization(rms_scaling=True)
            OBS["rms_scaling"] = bool(getattr(probe, "rms_scaling", False))
        except TypeError as e:
            OBS["rms_scaling"] = False
            OBS["rms_scaling_error"] = str(e)
        OBS["rms_scaling_warning"] = [str(w.message) for w in caught]
    if OBS["rms_scaling"]:
        name = "layernorm_rms"
        fresh()
        inp = keras.Input((32,))
        h = L.Dense(64, name="d1")(inp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = L.LayerNormalization(rms_scaling=True, name="ln_rms")(h)
        out = L.Dense(8, name="head")(h)
        model = keras.Model(inp, out)
        OBS["rms_scaling_weights"] = [(v.name, list(v.shape)) for v in
                                      model.get_layer("ln_rms").weights]
        p = randomize(model, name)
        x = float_input(name, 0, (32,))
        h = ln_rms_scaling64(dense64(x, *d64(p["d1"])), p["ln_rms"], 1e-3)
        y64 = dense64(h, *d64(p["head"]))
        keras_case(name, model, [x], [y64], ["linear"],
                   "LayerNormalization(rms_scaling=True), deprecated in Keras 3.15 (warns): "
                   "computes x * rsqrt(var(x) + eps) * gamma with the mean-subtracted variance "
                   "but x NOT centred, and no beta (center=True in the config, but no beta "
                   "variable is created); epsilon 1e-3")


def case_merge():
    name = "merge"
    fresh()
    a = keras.Input((16,), name="a")
    b = keras.Input((16,), name="b")
    pa = L.Dense(12, name="pa")(a)
    pb = L.Dense(12, name="pb")(b)
    pc = L.Dense(12, name="pc")(a)
    merged = [
        L.Add(name="add")([pa, pb]),
        L.Subtract(name="subtract")([pa, pb]),
        L.Multiply(name="multiply")([pa, pb]),
        L.Average(name="average")([pa, pb]),
        L.Maximum(name="maximum")([pa, pb]),
        L.Minimum(name="minimum")([pa, pb]),
        L.Add(name="add3")([pa, pb, pc]),
        L.Average(name="average3")([pa, pb, pc]),
    ]
    h = L.Concatenate(name="concat")(merged)
    out = L.Dense(4, name="head")(h)
    model = keras.Model([a, b], out)
    p = randomize(model, name)
    xa = float_input(name, 0, (16,))
    xb = float_input(name, 1, (16,))
    qa, qb = dense64(xa, *d64(p["pa"])), dense64(xb, *d64(p["pb"]))
    qc = dense64(xa, *d64(p["pc"]))
    parts = [qa + qb, qa - qb, qa * qb, (qa + qb) / 2, np.maximum(qa, qb), np.minimum(qa, qb),
             qa + qb + qc, (qa + qb + qc) / 3]
    y64 = dense64(np.concatenate(parts, axis=-1), *d64(p["head"]))
    keras_case(name, model, [xa, xb], [y64], ["linear"],
               "two inputs a, b; Add/Subtract/Multiply/Average/Maximum/Minimum of (pa, pb), "
               "Add and Average also of (pa, pb, pc) with pc = Dense(a); Concatenate of the 8 "
               "in that order")


def case_residual():
    name = "residual"
    fresh()
    inp = keras.Input((32,))
    h = L.Dense(64, activation="relu", name="d1")(inp)
    h = L.Dense(32, name="d2")(h)
    y = L.Add(name="add")([inp, h])
    y = L.LayerNormalization(name="ln")(y)
    out = L.Dense(4, name="head")(y)
    model = keras.Model(inp, out)
    p = randomize(model, name)
    x = float_input(name, 0, (32,))
    h = dense64(relu(dense64(x, *d64(p["d1"]))), *d64(p["d2"]))
    y64 = dense64(ln64(x.astype(np.float64) + h, p["ln"], 1e-3), *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear", "relu"],
               "skip connection from the model input into Add, then LayerNormalization")


def case_two_inputs():
    name = "two_inputs"
    fresh()
    num = keras.Input((12,), name="numeric")
    tok = keras.Input((6,), dtype="int32", name="tokens")
    e = L.Flatten(name="flat")(L.Embedding(30, 4, name="embedding")(tok))
    n = L.Dense(8, activation="relu", name="num_dense")(num)
    h = L.Concatenate(name="concat")([n, e])
    out = L.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model([num, tok], out)
    p = randomize(model, name)
    x0 = float_input(name, 0, (12,))
    x1 = int_input(name, 1, (6,), 30, np.int32)
    e64 = p["embedding"]["embeddings"].astype(np.float64)[x1].reshape(BATCH, -1)
    h = np.concatenate([relu(dense64(x0, *d64(p["num_dense"]))), e64], axis=-1)
    y64 = softmax(dense64(h, *d64(p["probs"])))
    keras_case(name, model, [x0, x1], [y64], ["linear", "relu", "softmax"],
               "input 0 'numeric' float32 [N,12], input 1 'tokens' int32 [N,6] ids in [0,30); "
               "Concatenate([Dense(numeric), Flatten(Embedding(tokens))])")


def case_two_outputs():
    name = "two_outputs"
    fresh()
    inp = keras.Input((20,))
    h = L.Dense(32, activation="relu", name="trunk")(inp)
    cls = L.Dense(5, activation="softmax", name="class")(h)
    val = L.Dense(1, name="value")(L.Dense(16, activation="relu", name="value_hidden")(h))
    model = keras.Model(inp, [cls, val])
    p = randomize(model, name)
    x = float_input(name, 0, (20,))
    h = relu(dense64(x, *d64(p["trunk"])))
    c64 = softmax(dense64(h, *d64(p["class"])))
    v64 = dense64(relu(dense64(h, *d64(p["value_hidden"]))), *d64(p["value"]))
    keras_case(name, model, [x], [c64, v64], ["linear", "relu", "softmax"],
               "two outputs: 'class' softmax [N,5] and 'value' [N,1] (via 'value_hidden')")


def case_preprocess():
    name = "preprocess"
    fresh()
    inp = keras.Input((10,))
    norm = L.Normalization(name="norm")
    adapt(norm, name, (10,), 10)
    h = norm(inp)
    h = L.Rescaling(scale=0.5, offset=0.1, name="rescale")(h)
    h = L.Identity(name="identity")(h)
    out = L.Dense(4, name="head")(h)
    model = keras.Model(inp, out)
    p = randomize(model, name)
    OBS["norm_preprocess"] = {k: (list(v.shape), str(v.dtype)) for k, v in p["norm"].items()}
    OBS.setdefault("norm_count", {})["preprocess"] = int(p["norm"]["count"])
    x = float_input(name, 0, (10,))
    h = norm64(x, p["norm"]) * f32(0.5) + f32(0.1)
    y64 = dense64(h, *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear"],
               "Normalization adapted on 256 seeded samples (per-feature means in [-3,3], "
               "stds in [0.3,3]): (x - mean) / max(sqrt(variance), 1e-7); Rescaling "
               "x * 0.5 + 0.1; Identity")

    name = "preprocess_seq"
    fresh()
    inp = keras.Input((6, 3))
    norm = L.Normalization(axis=-1, name="norm")
    adapt(norm, name, (6, 3), 3)
    h = norm(inp)
    h = L.Conv1D(4, 2, name="conv")(h)
    h = L.Flatten()(h)
    out = L.Dense(2, name="head")(h)
    model = keras.Model(inp, out)
    p = randomize(model, name)
    OBS["norm_preprocess_seq"] = {k: (list(v.shape), str(v.dtype)) for k, v in
                                  p["norm"].items()}
    OBS.setdefault("norm_count", {})["preprocess_seq"] = int(p["norm"]["count"])
    x = float_input(name, 0, (6, 3))
    h = conv1d64(norm64(x, p["norm"]), *d64(p["conv"]))
    y64 = dense64(h.reshape(BATCH, -1), *d64(p["head"]))
    keras_case(name, model, [x], [y64], ["linear"],
               "Normalization(axis=-1) on [N,6,3]: statistics per channel (3), shared by the "
               "6 steps")


# ================================================================== hostile Keras files
def hostile_files():
    fresh()
    tok = keras.Input((10,), dtype="int32", name="tokens")
    h = L.Embedding(20, 4, mask_zero=True, name="embedding")(tok)
    h = L.GlobalAveragePooling1D(name="gap")(h)
    out = L.Dense(2, name="head")(h)
    model = keras.Model(tok, out)
    p = randomize(model, "hostile_mask_zero")
    # The mask matters: on ids with zeros Keras averages only the non-zero steps.
    ids = int_input("hostile_mask_zero", 0, (10,), 20, np.int32)
    ids[:, :3] = 0
    e64 = p["embedding"]["embeddings"].astype(np.float64)[ids]
    keep = (ids != 0)[..., None]
    masked = dense64((e64 * keep).sum(axis=1) / keep.sum(axis=1), *d64(p["head"]))
    unmasked = dense64(e64.mean(axis=1), *d64(p["head"]))
    (y,) = keras_predict(model, [ids])
    assert maxabs(y, masked) < 1e-5 and maxabs(y, unmasked) > 1e-2, "mask_zero check"
    OBS["mask_zero"] = (f"with ids[:, :3] = 0 Keras matches the masked mean (max diff "
                        f"{maxabs(y, masked):.1e}) and differs from the plain mean by up to "
                        f"{maxabs(y, unmasked):.2f}")
    save_keras(model, "hostile_mask_zero.keras", out=OUT)
    check_h5_mapping(model, "hostile_mask_zero.keras")
    hostile("hostile_mask_zero.keras",
            "Embedding(mask_zero=True): Keras propagates the mask, so GlobalAveragePooling1D "
            "averages only the non-zero ids' steps; a loader that ignores masks would give a "
            "different answer, so sinter must not ignore it (it reads the mask: tests/graphs.rs)")

    fresh()
    inp = keras.Input((32,))
    h = inp
    for layer in _dense_bn_relu_layers():
        h = layer(h)
    model = keras.Model(inp, h)
    randomize(model, "dense_bn_relu")
    bn = model.get_layer("batch_normalization")
    gamma, beta, mean, var = bn.get_weights()
    var[5] = -1.0
    bn.set_weights([gamma, beta, mean, var])
    assert bn.get_weights()[3][5] == -1.0  # Keras accepts it (no check in set_weights)
    save_keras(model, "hostile_bn_negative_variance.keras", out=OUT)
    check_h5_mapping(model, "hostile_bn_negative_variance.keras")
    with zipfile.ZipFile(OUT / "hostile_bn_negative_variance.keras") as z:
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            v = [f[n][()] for n in _h5_names(f) if n.endswith("vars/3")]
            assert len(v) == 1 and v[0][5] == -1.0
    OBS["bn_negative_variance"] = "set_weights accepted moving_variance[5] = -1"
    hostile("hostile_bn_negative_variance.keras",
            "dense_bn_relu's weights with BatchNormalization moving_variance[5] = -1 (written "
            "with set_weights, which Keras accepts): sqrt(var + eps) is NaN for channel 5; "
            "sinter must refuse a negative moving variance rather than produce NaN")

    fresh()
    inp = keras.Input((32,))
    h = L.Dense(64, name="d1")(inp)
    h = L.LayerNormalization(name="ln1")(h)
    h = L.Dense(64, activation="gelu", name="d2")(h)
    h = L.LayerNormalization(center=False, name="ln2")(h)
    out = L.Dense(8, name="head")(h)
    model = keras.Model(inp, out)
    randomize(model, "layernorm")
    ln = model.get_layer("ln1")
    gamma, beta = ln.get_weights()
    gamma[3] = np.nan
    ln.set_weights([gamma, beta])
    save_keras(model, "hostile_ln_nan_gamma.keras", out=OUT)
    check_h5_mapping(model, "hostile_ln_nan_gamma.keras")
    hostile("hostile_ln_nan_gamma.keras",
            "layernorm's weights with the first LayerNormalization gamma[3] = NaN: every "
            "downstream output is NaN; sinter must refuse non-finite weights")

    fresh()
    inp = keras.Input((12, 4))
    h = L.BatchNormalization(axis=1, name="bn_steps")(inp)
    h = L.Flatten()(h)
    out = L.Dense(3, name="head")(h)
    model = keras.Model(inp, out)
    randomize(model, "hostile_bn_axis1")
    save_keras(model, "hostile_bn_axis1.keras", out=OUT)
    check_h5_mapping(model, "hostile_bn_axis1.keras")
    hostile("hostile_bn_axis1.keras",
            "BatchNormalization(axis=1) on a [N, 12, 4] input: statistics of shape (12,) "
            "normalize the steps axis, not channels; a loader that assumes the last axis "
            "would broadcast wrongly, so sinter must refuse (or honour) axis != -1")


def hostile_embedding_ids(ids):
    bad = ids.copy()
    bad[2, 5] = 50
    bad[6, 11] = -1
    f = "hostile_embedding_range.in0.npy"
    np.save(OUT / f, np.ascontiguousarray(bad))
    hostile(f, "int32 token ids for text_cnn.keras (input 'tokens' [8, 20]) with "
               "ids[2, 5] = 50 (= vocab size, out of range) and ids[6, 11] = -1; sinter "
               "must report the bad id rather than read outside the table",
            model="text_cnn.keras")


# ==================================================================== ONNX cases
def case_onnx_bn():
    name = "onnx_bn"
    rng = np.random.default_rng(seed_of("weights:" + name))
    w1i, w1, b1 = gemm_w(rng, 16, 32, 1)
    s = bn_stats(rng, 32)
    w2i, w2, b2 = gemm_w(rng, 32, 4, 0)
    nodes = [
        helper.make_node("Gemm", ["X", "W1", "b1"], ["z1"], transB=1),
        helper.make_node("BatchNormalization", ["z1", "bn_scale", "bn_bias", "bn_mean",
                                                "bn_var"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Gemm", ["r1", "W2", "b2"], ["Y"]),
    ]
    inits = {"W1": w1i, "b1": b1, "bn_scale": s["gamma"], "bn_bias": s["beta"],
             "bn_mean": s["moving_mean"], "bn_var": s["moving_variance"], "W2": w2i, "b2": b2}
    m = onnx_graph(name, nodes, inits, [vinfo("X", TensorProto.FLOAT, ["N", 16])],
                   [vinfo("Y", TensorProto.FLOAT, ["N", 4])],
                   "Gemm -> BatchNormalization [N,C] (default epsilon 1e-5) -> Relu -> Gemm")
    x = float_input(name, 0, (16,))
    y64 = dense64(relu(bn64(dense64(x, w1, b1), s, 1e-5)), w2, b2)
    onnx_case(name, m, [x], [y64], ["linear", "relu"],
              "BatchNormalization on a 2-D [N, C] input with the default epsilon (1e-5, "
              "attribute absent); first Gemm transB=1, second transB=0")


def case_onnx_conv_bn():
    name = "onnx_conv_bn"
    rng = np.random.default_rng(seed_of("weights:" + name))
    wc = (rng.standard_normal((8, 4, 3)) / math.sqrt(4 * 3)).astype(np.float32)
    bc = (rng.standard_normal(8) * 0.1).astype(np.float32)
    s = bn_stats(rng, 8)
    w2i, w2, b2 = gemm_w(rng, 8, 3, 1)
    nodes = [
        helper.make_node("Conv", ["X", "Wc", "bc"], ["c"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean",
                                                "bn_var"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "W2", "b2"], ["Y"], transB=1),
    ]
    inits = {"Wc": wc, "bc": bc, "bn_scale": s["gamma"], "bn_bias": s["beta"],
             "bn_mean": s["moving_mean"], "bn_var": s["moving_variance"], "W2": w2i, "b2": b2}
    m = onnx_graph(name, nodes, inits, [vinfo("X", TensorProto.FLOAT, ["N", 4, 20])],
                   [vinfo("Y", TensorProto.FLOAT, ["N", 3])],
                   "Conv1d NCW (pads 1,1) -> BatchNormalization (epsilon 1e-3) -> Relu -> "
                   "GlobalAveragePool -> Flatten -> Gemm")
    x = float_input(name, 0, (4, 20))
    h = conv_ncw64(x, wc, bc, (1, 1))
    h = relu(bn64(h, s, 1e-3, axis=1))
    y64 = dense64(h.mean(axis=2), w2, b2)
    onnx_case(name, m, [x], [y64], ["linear", "relu"],
              "channels-first X [N, 4, 20]; Conv weight [8, 4, 3], pads [1, 1]; "
              "BatchNormalization over axis 1 with epsilon=1e-3 set explicitly")


def _onnx_ln(name, with_bias):
    rng = np.random.default_rng(seed_of("weights:" + name))
    w1i, w1, b1 = gemm_w(rng, 32, 64, 1)
    gamma = rng.uniform(0.5, 1.5, 64).astype(np.float32)
    beta = (rng.standard_normal(64) * 0.2).astype(np.float32)
    w2i, w2, b2 = gemm_w(rng, 64, 8, 0)
    ln_in = ["z1", "ln_scale"] + (["ln_bias"] if with_bias else [])
    nodes = [
        helper.make_node("Gemm", ["X", "W1", "b1"], ["z1"], transB=1),
        helper.make_node("LayerNormalization", ln_in, ["n1"], axis=-1, epsilon=1e-5),
        helper.make_node("Gemm", ["n1", "W2", "b2"], ["Y"]),
    ]
    inits = {"W1": w1i, "b1": b1, "ln_scale": gamma, "W2": w2i, "b2": b2}
    p = {"gamma": gamma}
    if with_bias:
        inits["ln_bias"] = beta
        p["beta"] = beta
    m = onnx_graph(name, nodes, inits, [vinfo("X", TensorProto.FLOAT, ["N", 32])],
                   [vinfo("Y", TensorProto.FLOAT, ["N", 8])],
                   "Gemm -> LayerNormalization(axis=-1, epsilon=1e-5) -> Gemm")
    x = float_input(name, 0, (32,))
    y64 = dense64(ln64(dense64(x, w1, b1), p, 1e-5), w2, b2)
    onnx_case(name, m, [x], [y64], ["linear"],
              "LayerNormalization opset 17, axis=-1, epsilon=1e-5, stash_type default (1), "
              + ("Scale and B inputs" if with_bias else "Scale only (no B input)"))


def case_onnx_layernorm():
    _onnx_ln("onnx_layernorm", True)
    _onnx_ln("onnx_layernorm_nobias", False)


def case_onnx_gather():
    name = "onnx_gather"
    rng = np.random.default_rng(seed_of("weights:" + name))
    table = rng.standard_normal((30, 4)).astype(np.float32)
    wi, w, b = gemm_w(rng, 24, 5, 1)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
        helper.make_node("Flatten", ["e"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "W", "b"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["probs"], axis=-1),
    ]
    m = onnx_graph(name, nodes, {"table": table, "W": wi, "b": b},
                   [vinfo("ids", TensorProto.INT64, ["N", 6])],
                   [vinfo("probs", TensorProto.FLOAT, ["N", 5])],
                   "Gather(table [30,4], ids, axis=0) -> Flatten -> Gemm -> Softmax")
    ids = int_input(name, 0, (6,), 30, np.int64)
    y64 = softmax(dense64(table.astype(np.float64)[ids].reshape(BATCH, -1), w, b))
    onnx_case(name, m, [ids], [y64], ["linear", "softmax"],
              "int64 ids [N, 6] in [0, 30) gather rows of an initializer table [30, 4] "
              "(the ONNX form of an Embedding)")


def case_onnx_multi():
    name = "onnx_multi"
    rng = np.random.default_rng(seed_of("weights:" + name))
    wai, wa, ba = gemm_w(rng, 8, 8, 1)
    wbi, wb, bb = gemm_w(rng, 8, 8, 0)
    wei, we, be = gemm_w(rng, 24, 4, 1)
    nodes = [
        helper.make_node("Gemm", ["A", "Wa", "ba"], ["PA"], transB=1),
        helper.make_node("Gemm", ["B", "Wb", "bb"], ["PB"]),
        helper.make_node("Add", ["PA", "PB"], ["sum"]),
        helper.make_node("Sub", ["PA", "PB"], ["diff"]),
        helper.make_node("Mul", ["PA", "PB"], ["prod"]),
        helper.make_node("Max", ["PA", "PB"], ["mx"]),
        helper.make_node("Min", ["PA", "PB"], ["mn"]),
        helper.make_node("Mean", ["PA", "PB"], ["avg"]),
        helper.make_node("Concat", ["mx", "mn", "avg"], ["cat"], axis=1),
        helper.make_node("Gemm", ["cat", "We", "be"], ["ext"], transB=1),
    ]
    inits = {"Wa": wai, "ba": ba, "Wb": wbi, "bb": bb, "We": wei, "be": be}
    fl = TensorProto.FLOAT
    m = onnx_graph(name, nodes, inits, [vinfo("A", fl, ["N", 8]), vinfo("B", fl, ["N", 8])],
                   [vinfo("sum", fl, ["N", 8]), vinfo("diff", fl, ["N", 8]),
                    vinfo("prod", fl, ["N", 8]), vinfo("ext", fl, ["N", 4])],
                   "two inputs, four outputs: Add/Sub/Mul of two projections, and "
                   "Concat(Max, Min, Mean) -> Gemm")
    xa, xb = float_input(name, 0, (8,)), float_input(name, 1, (8,))
    qa, qb = dense64(xa, wa, ba), dense64(xb, wb, bb)
    ext = dense64(np.concatenate([np.maximum(qa, qb), np.minimum(qa, qb), (qa + qb) / 2],
                                 axis=1), we, be)
    onnx_case(name, m, [xa, xb], [qa + qb, qa - qb, qa * qb, ext], ["linear"],
              "inputs A, B; outputs sum, diff, prod [N, 8] and ext [N, 4] in that order; "
              "Max/Min/Mean are the variadic ONNX ops with two inputs")


def case_onnx_sum3():
    name = "onnx_sum3"
    rng = np.random.default_rng(seed_of("weights:" + name))
    projs = [gemm_w(rng, 8, 6, k % 2) for k in range(3)]
    nodes = [helper.make_node("Gemm", ["X", f"W{k}", f"b{k}"], [f"P{k}"], transB=k % 2)
             for k in range(3)]
    nodes.append(helper.make_node("Sum", ["P0", "P1", "P2"], ["Y"]))
    inits = {}
    for k, (wi, _, b) in enumerate(projs):
        inits[f"W{k}"], inits[f"b{k}"] = wi, b
    m = onnx_graph(name, nodes, inits, [vinfo("X", TensorProto.FLOAT, ["N", 8])],
                   [vinfo("Y", TensorProto.FLOAT, ["N", 6])],
                   "Sum of three Gemm projections of X")
    x = float_input(name, 0, (8,))
    y64 = sum(dense64(x, w, b) for _, w, b in projs)
    onnx_case(name, m, [x], [y64], ["linear"],
              "variadic Sum with three inputs; Gemm k has transB = k % 2")


# ------------------------------------------------------------------------- notes
NOTE_CLASSES = ["InputLayer", "Embedding", "BatchNormalization", "LayerNormalization",
                "RMSNormalization", "Add", "Subtract", "Multiply", "Average", "Maximum",
                "Minimum", "Concatenate", "Normalization", "Rescaling", "Identity"]


def _h5_names(f):
    out = []
    f.visit(out.append)
    return out


def _zip(fname):
    with zipfile.ZipFile(OUT / fname) as z:
        return json.loads(z.read("config.json")), z.read("model.weights.h5")


def h5_subtree(h5_bytes, group):
    lines = []
    with h5py.File(io.BytesIO(h5_bytes), "r") as f:
        g = f[group]

        def attrs(o):
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in o.attrs.items()}
            return f"  attrs={a}" if a else ""

        lines.append(f"/{group}/  group{attrs(g)}")

        def visit(name, o):
            if isinstance(o, h5py.Dataset):
                lines.append(f"/{group}/{name}  dataset shape={o.shape} dtype={o.dtype}"
                             f"{attrs(o)}")
            else:
                lines.append(f"/{group}/{name}/  group{attrs(o)}")

        g.visititems(visit)
    return "\n".join(lines)


def layer_to_group(cfg, h5_bytes):
    """{layer name: h5 group path}. Keras names the 'layers/' groups by class in snake_case
    with a per-class counter, in model.layers order (= the config's layers order; a
    Sequential's InputLayer is in its config but not in model.layers nor the h5)."""
    layers = cfg["config"]["layers"]
    with h5py.File(io.BytesIO(h5_bytes), "r") as f:
        order = list(f["layers"].keys())  # sorted by name; rebuild Keras's naming
    counts, mapping = {}, {}
    for layer in layers:
        if cfg["class_name"] == "Sequential" and layer["class_name"] == "InputLayer":
            continue  # a Sequential's model.layers (and h5) has no InputLayer
        if layer.get("module", "").startswith("keras.src.ops"):
            continue  # an op node (e.g. mask_zero's NotEqual) is no layer and has no group
        base = _snake(layer["class_name"])
        n = counts.get(base, 0)
        counts[base] = n + 1
        gname = base if n == 0 else f"{base}_{n}"
        assert gname in order, (gname, order)
        mapping[layer["config"]["name"]] = f"layers/{gname}"
    assert sorted(mapping.values()) == sorted(f"layers/{k}" for k in order), (mapping, order)
    return mapping


def _snake(name):
    """Keras's class-name to snake_case rule (Conv1D -> conv1d, RMSNormalization ->
    rms_normalization, GlobalMaxPooling1D -> global_max_pooling1d)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def notes_md():
    out = ["# Graph fixtures: Keras config.json / model.weights.h5 notes", "",
           f"Generated by scripts/make_graph_fixtures.py with {json.dumps(tool_versions())}.",
           "All fixtures are in tests/fixtures/graphs/.", ""]
    out += ["## Findings", ""]
    out.append(f"- keras.layers.RMSNormalization exists: {OBS.get('RMSNormalization')}; "
               f"config: `{json.dumps(OBS.get('RMSNormalization_config'))}`; weights: "
               f"{OBS.get('RMSNormalization_weights')} (h5 vars/0 = scale). Formula "
               "x * rsqrt(mean(x^2) + epsilon) * scale over `axis` (a list, default [-1]); "
               "default epsilon 1e-6.")
    out.append(f"- LayerNormalization `rms_scaling`: accepted = {OBS.get('rms_scaling')} "
               "(not in the 3.15 signature; popped from **kwargs; warns: "
               f"{OBS.get('rms_scaling_warning')}). It is saved in config.json as "
               "`\"rms_scaling\": true` (and `false` in every other LayerNormalization). With "
               "it, only gamma is created even though center=True "
               f"({OBS.get('rms_scaling_weights')}), and the op is x * rsqrt(var(x) + eps) * "
               "gamma: the variance is mean-subtracted but x is not centred, no beta. "
               "layernorm_rms covers it.")
    out.append(f"- Normalization stores mean, variance, count: preprocess "
               f"{OBS.get('norm_preprocess')}, preprocess_seq (axis=-1 on [N,6,3]) "
               f"{OBS.get('norm_preprocess_seq')}. The stored shapes are the kept axes only "
               "(no broadcast 1-dims); Keras reshapes them to the broadcast shape [1,1,3] at "
               "build time. count (int64 scalar) is kept only for older saved models: "
               "adapt() leaves it 0 and call() never reads it. config.json has `mean`/`variance` "
               "null (adapted state lives in the h5 only) and `axis` as a list. Formula "
               "(x - mean) / max(sqrt(variance), 1e-7) (invert=False).")
    out.append(f"- BatchNormalization negative variance: {OBS.get('bn_negative_variance')}; "
               "no h5 editing was needed.")
    out.append("- model.weights.h5 group names are NOT the layer names: Keras names the "
               "group of each layer in model.layers order (= the order of config.json's "
               "`layers` list) by its class in snake_case with a per-class counter "
               "(`layers/dense`, `layers/dense_1`, `layers/batch_normalization`, ...), "
               "regardless of `name=`. E.g. in merge, Dense 'pa' is `layers/dense` and 'head' "
               "is `layers/dense_3`; in two_outputs the config order is trunk, value_hidden, "
               "class, value, so 'class' is `layers/dense_2`. The layer's own name is the "
               "`name` attribute of its `vars` group (checked for every layer here). Layers "
               "without variables still get a group with an empty `vars`. In a Functional "
               "model InputLayers get groups too (`input_layer`, `input_layer_1`); in a "
               "Sequential they do not (its InputLayer is in config.json but not in "
               "model.layers). Op nodes in the config (module `keras.src.ops...`, e.g. the "
               "NotEqual that mask_zero adds) get no group. The top-level `/vars` group is "
               "empty with attrs name = the model's name.")
    out.append("- The variables are vars/0, vars/1, ... in layer.weights order: BatchNormalization "
               "gamma, beta, moving_mean, moving_variance (gamma absent if scale=False, beta "
               "absent if center=False, the rest renumbered: conv_bn's bn2 (center=False) "
               "is gamma, moving_mean, moving_variance; bn_unfoldable's bn_res (scale=False) "
               "is beta, moving_mean, moving_variance); LayerNormalization gamma, beta; "
               "Normalization mean, variance, count; Embedding embeddings; RMSNormalization "
               "scale. No attributes on datasets.")
    out.append("- config.json `input_layers` / `output_layers`: a single input (output) is "
               "one flat triple `[\"name\", 0, 0]`; several are a list of triples "
               "`[[\"a\", 0, 0], [\"b\", 0, 0]]`. They give the model's input / output "
               "order, which need not be the order of the InputLayers in `layers`: in "
               "two_inputs the `layers` list starts with 'tokens' then 'numeric', but the "
               "model's inputs are [numeric, tokens] (so 'tokens' is `layers/input_layer` "
               "and 'numeric' is `layers/input_layer_1`).")
    out.append("- An int32 Input is an InputLayer whose config has `\"dtype\": \"int32\"` (a "
               "plain string, as `\"float32\"` is for float inputs, unlike the layers' "
               "DTypePolicy dicts); the keras tensors "
               "leaving it carry `\"dtype\": \"int32\"` in the consumers' inbound_nodes. "
               "The Embedding itself has a float32 DTypePolicy.")
    out.append(f"- Normalization count values after adapt(): {OBS.get('norm_count')} "
               "(adapt() does not update it).")
    out.append("- `shared_object_id` numbers in the config entries below are Python id()s, "
               "different on every save (the fixture script ignores them when deciding "
               "whether to keep an existing .keras).")
    out.append("- Embedding(mask_zero=True) (hostile_mask_zero): the config gains an op node "
               "`{\"module\": \"keras.src.ops.numpy\", \"class_name\": \"NotEqual\"}` on the "
               "tokens input (args [tokens, 0]), and GlobalAveragePooling1D's inbound node "
               "gets `kwargs: {\"mask\": <keras tensor from not_equal>}`; the Embedding entry "
               f"has `\"mask_zero\": true`. Checked: {OBS.get('mask_zero')}.")
    out.append("- The tables below give, per layer, the group that holds it (matched by "
               "that rule and checked against the file).")
    out.append("")

    keras_files = [c["model"] for c in CASES if c["format"] == "keras"]
    keras_files += [h["file"] for h in HOSTILE if h["file"].endswith(".keras")]
    seen = {}
    for fname in keras_files:
        cfg, h5b = _zip(fname)
        if "layers" not in cfg["config"]:
            continue
        for layer in cfg["config"]["layers"]:
            cls = layer["class_name"]
            key = cls
            if cls == "InputLayer":
                key = f"InputLayer:{layer['config'].get('dtype')}"
            if key not in seen:
                seen[key] = (fname, layer, cfg, h5b)
    # Extra variants worth showing in full.
    want = [("BatchNormalization", "conv_bn.keras", "bn2"),
            ("BatchNormalization", "bn_unfoldable.keras", "bn_res"),
            ("LayerNormalization", "layernorm_noaffine.keras", "ln"),
            ("LayerNormalization", "layernorm_rms.keras", "ln_rms"),
            ("LayerNormalization", "layernorm.keras", "ln2"),
            ("Normalization", "preprocess_seq.keras", "norm"),
            ("Add", "merge.keras", "add3"),
            ("Average", "merge.keras", "average3"),
            ("Embedding", "hostile_mask_zero.keras", "embedding"),
            ("BatchNormalization", "hostile_bn_axis1.keras", "bn_steps")]

    def section(title, fname, layer, cfg, h5b):
        mapping = layer_to_group(cfg, h5b)
        g = mapping[layer["config"]["name"]]
        names = VAR_NAMES.get((fname, layer["config"]["name"]), [])
        legend = ", ".join(f"vars/{i} = {n}" for i, n in enumerate(names)) or "no variables"
        return [f"### {title} (from {fname}, layer '{layer['config']['name']}')", "",
                "config.json entry:", "", "```json", json.dumps(layer, indent=1), "```", "",
                f"model.weights.h5 ({legend}):", "", "```", h5_subtree(h5b, g), "```", ""]

    out += ["## Layer classes: one config.json entry and its h5 group each", ""]
    for key in sorted(seen, key=lambda k: (NOTE_CLASSES.index(k.split(":")[0])
                                           if k.split(":")[0] in NOTE_CLASSES else 99, k)):
        cls = key.split(":")[0]
        if cls not in NOTE_CLASSES:
            continue
        fname, layer, cfg, h5b = seen[key]
        out += section(key, fname, layer, cfg, h5b)
    out += ["## Variants", ""]
    for cls, fname, lname in want:
        if not (OUT / fname).exists():
            continue
        cfg, h5b = _zip(fname)
        layer = next(x for x in cfg["config"]["layers"] if x["config"]["name"] == lname)
        out += section(cls, fname, layer, cfg, h5b)

    out += ["## Multi-input / multi-output functional models", ""]
    for fname in ("merge.keras", "two_inputs.keras", "two_outputs.keras", "text_cnn.keras"):
        cfg, h5b = _zip(fname)
        c = cfg["config"]
        out += [f"### {fname}", "", "top level: `class_name` = "
                f"`{cfg['class_name']}`, `config.name` = `{c.get('name')}`", "",
                "```json", '"input_layers": ' + json.dumps(c["input_layers"]),
                '"output_layers": ' + json.dumps(c["output_layers"]), "```", "",
                "layers -> h5 groups: "
                + ", ".join(f"{k} -> {v}" for k, v in layer_to_group(cfg, h5b).items()), ""]
        for layer in c["layers"]:
            if layer["inbound_nodes"] and len(layer["inbound_nodes"][0]["args"]) and \
                    isinstance(layer["inbound_nodes"][0]["args"][0], list):
                out += [f"inbound_nodes of a multi-input layer ('{layer['config']['name']}'):",
                        "", "```json", json.dumps(layer["inbound_nodes"], indent=1), "```", ""]
                break
    cfg, h5b = _zip("dense_bn_relu_seq.keras")
    out += ["### dense_bn_relu_seq.keras (Sequential)", "",
            f"top level `class_name` = `{cfg['class_name']}`; config keys "
            f"{sorted(cfg['config'])}; layers: "
            f"{[(x['class_name'], x['config']['name']) for x in cfg['config']['layers']]}; "
            "no input_layers/output_layers (the first layer is the InputLayer, the last "
            "layer is the output)", "",
            "```", h5_tree(h5py.File(io.BytesIO(h5b), "r")), "```", ""]

    out += ["## max |producer - f64| per output", "",
            "| case | format | output | shape | max abs |", "|---|---|---|---|---|"]
    for c in CASES:
        for o in c["outputs"]:
            out.append(f"| {c['name']} | {c['format']} | {o['name']} | {o['shape']} | "
                       f"{o['max_abs_peer_vs_f64']:.3e} |")
    out += ["", "## Hostile files", ""]
    for h in HOSTILE:
        out.append(f"- `{h['file']}`: {h['why']}")
    out.append("")
    return "\n".join(out)


# -------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notes", type=Path, help="also write the Markdown notes here")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)

    ids = case_text_cnn()
    case_dense_bn_relu()
    case_conv_bn()
    case_bn_unfoldable()
    case_layernorm()
    case_rmsnorm()
    case_merge()
    case_residual()
    case_two_inputs()
    case_two_outputs()
    case_preprocess()
    case_onnx_bn()
    case_onnx_conv_bn()
    case_onnx_layernorm()
    case_onnx_gather()
    case_onnx_multi()
    case_onnx_sum3()
    hostile_files()
    hostile_embedding_ids(ids)

    versions = tool_versions()
    manifest = {
        "generated_by": "scripts/make_graph_fixtures.py",
        "versions": versions,
        "env": {"TF_ENABLE_ONEDNN_OPTS": "0", "KERAS_BACKEND": "tensorflow",
                "tf_threads": 1, "ort_threads": 1},
        "batch": BATCH,
        "cases": CASES,
        "hostile": HOSTILE,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    print("\n===== versions =====")
    print(json.dumps(versions))
    print("\n===== cases: max |peer - f64| per output =====")
    print(f"{'case':<22} {'fmt':<5} {'output':<14} {'shape':<10} {'max_abs':>10} "
          f"{'model bytes':>12}")
    for c in CASES:
        size = (OUT / c["model"]).stat().st_size
        for o in c["outputs"]:
            print(f"{c['name']:<22} {c['format']:<5} {o['name']:<14} "
                  f"{str(tuple(o['shape'])):<10} {o['max_abs_peer_vs_f64']:>10.3e} "
                  f"{size:>12}")
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"\nfixture files (tests/fixtures/graphs): {len(list(OUT.iterdir()))} files, "
          f"{total / 1024:.1f} KiB")
    if args.notes:
        args.notes.write_text(notes_md())
        print(f"notes written to {args.notes}")


if __name__ == "__main__":
    main()
