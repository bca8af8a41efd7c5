#!/usr/bin/env python3
"""Golden-test fixtures for sinter's 2-D convolutional layers (issue 28, Keras part): Keras 3
models saved as `.keras` and as legacy `.h5`, their inputs, Keras's outputs and a float64
NumPy reference written out below. Same conventions as scripts/make_conv_fixtures.py (whose
helpers it imports).

What it makes (all in tests/fixtures/conv2d/; nothing else is touched):
  NAME.keras / NAME.h5       Keras 3 `model.save()` in both formats
  mnist_convnet.tf2onnx.onnx the MNIST convnet through tf2onnx (`from_function`, opset 17):
                             NHWC input, NCHW Conv/MaxPool between Transposes
  mnist_convnet.export.onnx  the MNIST convnet through Keras 3's `model.export(format="onnx")`
  NAME.input.npy             float32 input, batch of 16, NHWC, 2 * N(0, 1)
  NAME.keras.out.npy         Keras output: model.predict(x, verbose=0), float32
  NAME.f64.out.npy           float64 NumPy reference from the float32 weights
  manifest.json              the schema of tests/fixtures/conv/manifest.json

Cases:
  mnist_convnet   the keras.io "Simple MNIST convnet": Conv2D(32, 3, relu) -> MaxPooling2D(2)
                  -> Conv2D(64, 3, relu) -> MaxPooling2D(2) -> Flatten -> Dropout(0.5) ->
                  Dense(10, softmax), on 28x28x1
  conv2d_mix      strides, padding same with odd totals, non-square kernels, dilation, a 1x1
                  convolution, no bias, AveragePooling2D / MaxPooling2D with padding same,
                  SpatialDropout2D, GlobalAveragePooling2D and GlobalMaxPooling2D(keepdims)
  conv2d_blocks   a ResNet-style block (strided 3x3 convs, BatchNormalization with randomized
                  statistics, a strided 1x1 projection, Add), ZeroPadding2D, ReLU(max_value=6),
                  hard_swish, a squeeze-and-excitation scale (GlobalAveragePooling2D(keepdims)
                  -> Dense -> Dense(hard_sigmoid) -> Multiply), UpSampling2D, Cropping2D
  conv2d_mobile   MobileNet-style: DepthwiseConv2D (3x3 stride 2 same, ReLU6; 5x3 dilated
                  with depth_multiplier 2, no bias), a 1x1 Conv2D, BatchNormalization
  conv2d_decoder  Conv2DTranspose: 3x3 stride 2 same (relu), 2x3 stride (1, 2) valid, 4x4
                  stride 3 same (kernel larger than the stride), no bias; then Flatten, Dense
  conv2d_grouped  grouped Conv2D (3x3 same with 2 groups, 1x1 with 4, strided 3x2 with 2)
                  and UpSampling2D((2, 3), interpolation="bilinear"); also as
                  conv2d_grouped.keras224.h5, labelled Keras 2.2.4 (to be refused)
  xception_mini   the keras.io "Image classification from scratch" model (Rescaling, strided
                  Conv2D, SeparableConv2D blocks with BatchNormalization, MaxPooling2D(3, 2,
                  same), 1x1 strided residual projections, GlobalAveragePooling2D) on 32x32x3

Weights: every kernel N(0, 1/sqrt(fan_in)) (fan_in = kh * kw * cin), every bias N(0, 0.1),
drawn in model.layers order from a generator seeded by crc32("weights:NAME").

Keras semantics the f64 reference reproduces (channels_last): padding 'valid' / 'same' per
axis (TF: out = ceil(L / s), total = max((out - 1) s + (k - 1) d + 1 - L, 0), before =
total // 2); MaxPooling ignores padded cells, AveragePooling 'same' averages the real cells.

Run from the repo root (deterministic; needs tensorflow-cpu):
    python3 scripts/make_conv2d_fixtures.py
"""

import os
import sys

# tf2onnx's optimizers walk Python sets of names: pin str hashing so reruns are identical.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "PYTHONHASHSEED": "0"})

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["KERAS_BACKEND"] = "tensorflow"

import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import keras  # noqa: E402

from make_fixtures import (  # noqa: E402
    KERAS_ACT,
    dense64,
    fresh,
    keras_predict,
    maxabs,
    save_keras,
    seed_of,
    softmax,
    tool_versions,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "conv2d"
BATCH = 16
INPUT_SCALE = 2.0
L = keras.layers
CASES = []


def make_input(name, shape):
    rng = np.random.default_rng(seed_of("input:" + name))
    x = (rng.standard_normal((BATCH, *shape)) * INPUT_SCALE).astype(np.float32)
    np.save(OUT / f"{name}.input.npy", np.ascontiguousarray(x))
    return x


def randomize(model, name):
    """Kernels N(0, 1/sqrt(fan_in)), biases N(0, 0.1); returns {layer name: (W, b|None)}."""
    rng = np.random.default_rng(seed_of("weights:" + name))
    out = {}
    for layer in model.layers:
        if not isinstance(layer, (L.Dense, L.Conv2D)):
            continue
        shape = tuple(layer.kernel.shape)
        w = (rng.standard_normal(shape) / math.sqrt(int(np.prod(shape[:-1])))).astype(np.float32)
        if layer.use_bias:
            b = (rng.standard_normal(shape[-1]) * 0.1).astype(np.float32)
            layer.set_weights([w, b])
        else:
            b = None
            layer.set_weights([w])
        out[layer.name] = (w, b)
    return out


# ------------------------------------------------------------------ float64 reference
def axis_window(length, k, s, d, padding):
    span = (k - 1) * d + 1
    if padding == "valid":
        return (length - span) // s + 1, 0
    out = -(-length // s)
    total = max((out - 1) * s + span - length, 0)
    return out, total // 2


def conv2d64(x, w, b, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """x [N, H, W, C] f64, w [kh, kw, C, F]: Keras Conv2D (channels_last)."""
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    oh, ph = axis_window(h, kh, strides[0], dilation[0], padding)
    ow, pw = axis_window(wd, kw, strides[1], dilation[1], padding)
    y = np.zeros((n, oh, ow, f))
    w64 = w.astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            for o in range(oh):
                r = o * strides[0] + i * dilation[0] - ph
                if not 0 <= r < h:
                    continue
                for q in range(ow):
                    col = q * strides[1] + j * dilation[1] - pw
                    if 0 <= col < wd:
                        y[:, o, q, :] += x[:, r, col, :] @ w64[i, j]
    if b is not None:
        y += b.astype(np.float64)
    return y


def pool2d64(x, pool, strides, padding, mode):
    n, h, wd, c = x.shape
    oh, ph = axis_window(h, pool[0], strides[0], 1, padding)
    ow, pw = axis_window(wd, pool[1], strides[1], 1, padding)
    y = np.zeros((n, oh, ow, c))
    for o in range(oh):
        r0, r1 = max(o * strides[0] - ph, 0), min(o * strides[0] - ph + pool[0], h)
        for q in range(ow):
            c0, c1 = max(q * strides[1] - pw, 0), min(q * strides[1] - pw + pool[1], wd)
            cell = x[:, r0:r1, c0:c1, :]
            y[:, o, q, :] = cell.max(axis=(1, 2)) if mode == "max" else cell.mean(axis=(1, 2))
    return y


# ------------------------------------------------------------------------------ cases
def save_case(name, model, x, y64, acts, note):
    y = keras_predict(model, x)
    np.save(OUT / f"{name}.keras.out.npy", np.ascontiguousarray(y, np.float32))
    np.save(OUT / f"{name}.f64.out.npy", np.ascontiguousarray(y64, np.float64))
    save_keras(model, f"{name}.keras", out=OUT)
    h5 = OUT / f"{name}.h5"
    model.save(h5)
    y2 = keras_predict(keras.models.load_model(OUT / f"{name}.keras"), x)
    assert maxabs(y2, y) == 0.0, f"Keras round trip of {name}.keras differs"
    for fmt, file in [("keras", f"{name}.keras"), ("keras-h5", f"{name}.h5")]:
        CASES.append({
            "name": name if fmt == "keras" else f"{name}_h5",
            "model": file,
            "format": fmt,
            "input": f"{name}.input.npy",
            "expected": f"{name}.keras.out.npy",
            "f64": f"{name}.f64.out.npy",
            "activations": acts,
            "max_abs_peer_vs_f64": maxabs(y, y64),
            "note": note,
            "input_scale": INPUT_SCALE,
            "input_shape": list(x.shape),
            "output_shape": list(y.shape),
        })


def case_mnist_convnet():
    name = "mnist_convnet"
    fresh()
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        L.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Flatten(),
        L.Dropout(0.5),
        L.Dense(10, activation="softmax"),
    ])
    ws = randomize(model, name)
    x = make_input(name, (28, 28, 1))
    (w1, b1), (w2, b2), (w3, b3) = (ws[lay.name] for lay in model.layers
                                    if lay.name in ws)
    h = np.maximum(conv2d64(x.astype(np.float64), w1, b1), 0)
    h = pool2d64(h, (2, 2), (2, 2), "valid", "max")
    h = np.maximum(conv2d64(h, w2, b2), 0)
    h = pool2d64(h, (2, 2), (2, 2), "valid", "max")
    y64 = softmax(dense64(h.reshape(BATCH, -1), w3, b3))
    save_case(name, model, x, y64, ["relu", "softmax"],
              "keras.io Simple MNIST convnet (random weights)")
    import tensorflow as tf
    import tf2onnx
    import onnx
    spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32, name="input"),)
    fn = tf.function(lambda t: model(t, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    # tf2onnx names nodes after TensorFlow's function counters, which differ from run to
    # run: an existing file (same weights, same graph) is kept so reruns change nothing.
    if not (OUT / f"{name}.tf2onnx.onnx").exists():
        onnx.save(proto, OUT / f"{name}.tf2onnx.onnx")
    import onnxruntime as ort
    y_ort = ort.InferenceSession(str(OUT / f"{name}.tf2onnx.onnx")).run(None, {"input": x})[0]
    y = keras_predict(model, x)

    def onnx_case(kind, file, y_peer, note):
        CASES.append({
            "name": f"{name}_{kind}",
            "model": file,
            "format": "onnx",
            "input": f"{name}.input.npy",
            "expected": f"{name}.keras.out.npy",
            "f64": f"{name}.f64.out.npy",
            "activations": ["relu", "softmax"],
            "max_abs_peer_vs_f64": maxabs(y, y64),
            "max_abs_ort_vs_keras": maxabs(y_peer, y),
            "note": note,
            "input_scale": INPUT_SCALE,
            "input_shape": list(x.shape),
            "output_shape": list(y.shape),
        })

    onnx_case("tf2onnx", f"{name}.tf2onnx.onnx", y_ort,
              f"tf2onnx {tf2onnx.__version__} from_function of the Keras model, opset 17")
    # Keras 3's own ONNX export (through tf2onnx too, with its own naming); kept once written
    # for the same reason.
    export = OUT / f"{name}.export.onnx"
    if not export.exists():
        model.export(str(export), format="onnx", verbose=False)
    sess = ort.InferenceSession(str(export))
    onnx_case("export", export.name, sess.run(None, {sess.get_inputs()[0].name: x})[0],
              f"Keras {keras.__version__} model.export(format='onnx')")


def case_conv2d_mix():
    name = "conv2d_mix"
    fresh()
    inp = keras.Input(shape=(17, 13, 3))
    a = L.Conv2D(8, (3, 5), strides=(2, 1), padding="same", activation="tanh")(inp)
    a = L.SpatialDropout2D(0.3)(a)
    a = L.Conv2D(6, 3, dilation_rate=(2, 1), padding="same", activation="relu")(a)
    a = L.Conv2D(5, 1, use_bias=False)(a)
    a = L.AveragePooling2D(3, strides=2, padding="same")(a)
    p = L.MaxPooling2D((2, 3), strides=(1, 2), padding="same")(a)
    g1 = L.GlobalAveragePooling2D()(p)
    g2 = L.Flatten()(L.GlobalMaxPooling2D(keepdims=True)(
        L.Conv2D(4, (2, 2), strides=2, activation="sigmoid")(a)))
    out = L.Dense(3)(L.Concatenate()([g1, g2]))
    model = keras.Model(inp, out)
    ws = randomize(model, name)
    x = make_input(name, (17, 13, 3))
    convs = [lay for lay in model.layers if isinstance(lay, L.Conv2D)]
    (wa, ba), (wb, bb), (wc, _), (wd, bd) = (ws[c.name] for c in convs)
    h = np.tanh(conv2d64(x.astype(np.float64), wa, ba, (2, 1), "same"))
    h = np.maximum(conv2d64(h, wb, bb, padding="same", dilation=(2, 1)), 0)
    h = conv2d64(h, wc, None)
    a64 = pool2d64(h, (3, 3), (2, 2), "same", "avg")
    p64 = pool2d64(a64, (2, 3), (1, 2), "same", "max")
    g1 = p64.mean(axis=(1, 2))
    g2 = KERAS_ACT["sigmoid"](conv2d64(a64, wd, bd, (2, 2))).max(axis=(1, 2))
    wo, bo = ws[model.layers[-1].name]
    y64 = dense64(np.concatenate([g1, g2], axis=-1), wo, bo)
    save_case(name, model, x, y64, ["tanh", "relu", "sigmoid"],
              "Conv2D strides/same/dilation/1x1/no bias, Average/MaxPooling2D same, "
              "SpatialDropout2D, GlobalAverage/GlobalMaxPooling2D(keepdims)")


def case_conv2d_blocks():
    name = "conv2d_blocks"
    fresh()
    inp = keras.Input(shape=(16, 16, 3))
    convs = [L.Conv2D(8, 3, strides=2, use_bias=False), L.Conv2D(16, 1, strides=2),
             L.Conv2D(16, 3, strides=2, padding="same"), L.Conv2D(16, 3, padding="same")]
    norms = [L.BatchNormalization() for _ in range(4)]
    dense = [L.Dense(4, activation="relu"), L.Dense(16, activation="hard_sigmoid"), L.Dense(3)]
    x = L.ZeroPadding2D(1)(inp)
    x = L.ReLU(max_value=6)(norms[0](convs[0](x)))
    s = norms[1](convs[1](x))
    y = L.Activation("relu")(norms[2](convs[2](x)))
    y = norms[3](convs[3](y))
    z = L.Activation("hard_swish")(L.Add()([s, y]))
    g = L.GlobalAveragePooling2D(keepdims=True)(z)
    g = dense[1](dense[0](g))
    z = L.Multiply()([z, g])
    z = L.Cropping2D(((1, 0), (0, 1)))(L.UpSampling2D(2)(z))
    out = dense[2](L.GlobalMaxPooling2D()(z))
    model = keras.Model(inp, out)
    ws = randomize(model, name)
    rng = np.random.default_rng(seed_of("bn:" + name))
    bns = {}
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            g_, b_, m_ = (rng.standard_normal(c) * 0.3 + 1.0, rng.standard_normal(c) * 0.2,
                          rng.standard_normal(c) * 0.3)
            v_ = rng.uniform(0.5, 1.5, c)
            vals = [a.astype(np.float32) for a in (g_, b_, m_, v_)]
            layer.set_weights(vals)
            bns[layer.name] = (vals, layer.epsilon)
    x_in = make_input(name, (16, 16, 3))

    def bn(h, layer_name):
        (g_, b_, m_, v_), eps = bns[layer_name]
        g_, b_, m_, v_ = (a.astype(np.float64) for a in (g_, b_, m_, v_))
        return (h - m_) / np.sqrt(v_ + np.float64(np.float32(eps))) * g_ + b_

    relu6 = lambda h: np.clip(h, 0.0, 6.0)  # noqa: E731
    convs, norms, dense = ([lay.name for lay in group] for group in (convs, norms, dense))
    h = np.pad(x_in.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    h = relu6(bn(conv2d64(h, ws[convs[0]][0], None, (2, 2)), norms[0]))
    s64 = bn(conv2d64(h, *ws[convs[1]], (2, 2)), norms[1])
    y64 = np.maximum(bn(conv2d64(h, *ws[convs[2]], (2, 2), "same"), norms[2]), 0)
    y64 = bn(conv2d64(y64, *ws[convs[3]], padding="same"), norms[3])
    z64 = s64 + y64
    z64 = KERAS_ACT["hard_silu"](z64)
    g64 = z64.mean(axis=(1, 2), keepdims=True)
    g64 = np.maximum(dense64(g64, *ws[dense[0]]), 0)
    g64 = KERAS_ACT["hard_sigmoid"](dense64(g64, *ws[dense[1]]))
    z64 = z64 * g64
    z64 = np.repeat(np.repeat(z64, 2, axis=1), 2, axis=2)[:, 1:, :-1, :]
    y = dense64(z64.max(axis=(1, 2)), *ws[dense[2]])
    save_case(name, model, x_in, y, ["relu", "relu6", "hard_silu", "hard_sigmoid"],
              "ResNet-style block with BatchNormalization and a 1x1 projection, ZeroPadding2D, "
              "ReLU6, hard_swish, squeeze-and-excitation Multiply, UpSampling2D, Cropping2D")


def depthwise64(x, w, b, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """x [N, H, W, C] f64, w [kh, kw, C, m]: Keras DepthwiseConv2D, output channel c * m + j."""
    n, h, wd, c = x.shape
    kh, kw, _, m = w.shape
    full = np.zeros((kh, kw, c, c * m))
    for k in range(c):
        full[:, :, k, k * m:(k + 1) * m] = w[:, :, k, :]
    return conv2d64(x, full, b, strides, padding, dilation)


def case_conv2d_mobile():
    name = "conv2d_mobile"
    fresh()
    inp = keras.Input(shape=(15, 12, 4))
    d1 = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")
    d2 = L.DepthwiseConv2D((5, 3), dilation_rate=(2, 1), depth_multiplier=2, padding="same",
                           use_bias=False)
    pw = L.Conv2D(6, 1)
    bn = L.BatchNormalization()
    out = L.Dense(3)(L.GlobalAveragePooling2D()(L.ReLU(max_value=6)(bn(pw(d2(d1(inp)))))))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed_of("weights:" + name))
    ws = {}
    for layer in (d1, d2):
        shape = tuple(layer.kernel.shape)
        w = (rng.standard_normal(shape) / math.sqrt(shape[0] * shape[1])).astype(np.float32)
        b = (rng.standard_normal(shape[2] * shape[3]) * 0.1).astype(np.float32)
        layer.set_weights([w, b] if layer.use_bias else [w])
        ws[layer.name] = (w, b if layer.use_bias else None)
    ws.update(randomize(model, name))
    c = bn.gamma.shape[0]
    stats = [(rng.standard_normal(c) * 0.3 + 1.0), rng.standard_normal(c) * 0.2,
             rng.standard_normal(c) * 0.3, rng.uniform(0.5, 1.5, c)]
    stats = [a.astype(np.float32) for a in stats]
    bn.set_weights(stats)
    x = make_input(name, (15, 12, 4))
    h = np.clip(depthwise64(x.astype(np.float64), *ws[d1.name], (2, 2), "same"), 0, 6)
    h = depthwise64(h, *ws[d2.name], padding="same", dilation=(2, 1))
    h = conv2d64(h, *ws[pw.name])
    g_, b_, m_, v_ = (a.astype(np.float64) for a in stats)
    h = (h - m_) / np.sqrt(v_ + np.float64(np.float32(bn.epsilon))) * g_ + b_
    h = np.clip(h, 0, 6).mean(axis=(1, 2))
    wo, bo = ws[model.layers[-1].name]
    save_case(name, model, x, dense64(h, wo, bo), ["relu6"],
              "DepthwiseConv2D (stride 2 same ReLU6; dilated, depth_multiplier 2, no bias), "
              "1x1 Conv2D, BatchNormalization, ReLU6, GlobalAveragePooling2D")


def case_xception_mini():
    name = "xception_mini"
    fresh()
    inputs = keras.Input(shape=(32, 32, 3))
    x = L.Rescaling(1.0 / 255)(inputs)
    x = L.Conv2D(16, 3, strides=2, padding="same")(x)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    previous = x
    for size in [24, 32]:
        x = L.Activation("relu")(x)
        x = L.BatchNormalization()(L.SeparableConv2D(size, 3, padding="same")(x))
        x = L.Activation("relu")(x)
        x = L.BatchNormalization()(L.SeparableConv2D(size, 3, padding="same")(x))
        x = L.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = L.Conv2D(size, 1, strides=2, padding="same")(previous)
        x = L.add([x, residual])
        previous = x
    x = L.BatchNormalization()(L.SeparableConv2D(48, 3, padding="same")(x))
    x = L.Dropout(0.25)(L.GlobalAveragePooling2D()(L.Activation("relu")(x)))
    model = keras.Model(inputs, L.Dense(1)(x))
    rng = np.random.default_rng(seed_of("weights:" + name))
    params = {}
    for layer in model.layers:
        ws = []
        for v in layer.weights:
            shape = tuple(v.shape)
            if "kernel" in v.path:
                fan_in = int(np.prod(shape[:-1])) if "depthwise" not in v.path else shape[0] * shape[1]
                a = rng.standard_normal(shape) / math.sqrt(fan_in)
            elif "gamma" in v.path:
                a = rng.standard_normal(shape) * 0.3 + 1.0
            elif "variance" in v.path:
                a = rng.uniform(0.5, 1.5, shape)
            else:
                a = rng.standard_normal(shape) * 0.1
            ws.append(a.astype(np.float32))
        if ws:
            layer.set_weights(ws)
            params[layer.name] = ws
    x_in = (make_input(name, (32, 32, 3)) * 40 + 128).astype(np.float32)
    np.save(OUT / f"{name}.input.npy", x_in)

    def bn(h, lay):
        g_, b_, m_, v_ = (a.astype(np.float64) for a in params[lay.name])
        return (h - m_) / np.sqrt(v_ + np.float64(np.float32(lay.epsilon))) * g_ + b_

    def sep(h, lay):
        dw, pw, b = params[lay.name]
        h = depthwise64(h, dw, None, padding="same")
        return conv2d64(h, pw, b)

    nxt = {}
    for kind in (L.Conv2D, L.SeparableConv2D, L.BatchNormalization, L.Dense):
        nxt[kind] = [m for m in model.layers if type(m) is kind]
    convs, seps, bns = nxt[L.Conv2D], nxt[L.SeparableConv2D], nxt[L.BatchNormalization]
    h = x_in.astype(np.float64) * np.float64(np.float32(1.0 / 255))
    h = np.maximum(bn(conv2d64(h, *params[convs[0].name], (2, 2), "same"), bns[0]), 0)
    prev = h
    for blk in range(2):
        h = bn(sep(np.maximum(h, 0), seps[2 * blk]), bns[1 + 2 * blk])
        h = bn(sep(np.maximum(h, 0), seps[2 * blk + 1]), bns[2 + 2 * blk])
        h = pool2d64(h, (3, 3), (2, 2), "same", "max")
        h = h + conv2d64(prev, *params[convs[1 + blk].name], (2, 2), "same")
        prev = h
    h = np.maximum(bn(sep(h, seps[4]), bns[5]), 0).mean(axis=(1, 2))
    y64 = dense64(h, *params[nxt[L.Dense][0].name])
    save_case(name, model, x_in, y64, ["relu"],
              "keras.io image classification from scratch (smaller): Rescaling, "
              "SeparableConv2D, BatchNormalization, MaxPooling2D(3, 2, same), residual adds")
    for case in CASES:
        if case["name"].startswith(name):
            case["input_scale"] = "pixels: 128 + 80 * N(0, 1)"


def conv_transpose64(x, w, b, strides, padding):
    """x [N, H, W, C] f64, w [kh, kw, F, C]: Keras Conv2DTranspose (no output_padding)."""
    n, h, wd, c = x.shape
    kh, kw, f, _ = w.shape
    sh, sw = strides

    def axis(length, k, s):
        if padding == "valid":
            return (length - 1) * s + k, 0
        return length * s, max(k - s, 0) // 2

    oh, ph = axis(h, kh, sh)
    ow, pw = axis(wd, kw, sw)
    y = np.zeros((n, oh, ow, f))
    w64 = w.astype(np.float64)
    for i in range(h):
        for j in range(wd):
            for a in range(kh):
                r = i * sh + a - ph
                if not 0 <= r < oh:
                    continue
                for bb in range(kw):
                    q = j * sw + bb - pw
                    if 0 <= q < ow:
                        y[:, r, q, :] += x[:, i, j, :] @ w64[a, bb].T
    if b is not None:
        y += b.astype(np.float64)
    return y


def case_conv2d_decoder():
    name = "conv2d_decoder"
    fresh()
    inp = keras.Input(shape=(5, 4, 3))
    t1 = L.Conv2DTranspose(6, 3, strides=2, padding="same", activation="relu")
    t2 = L.Conv2DTranspose(4, (2, 3), strides=(1, 2), padding="valid")
    t3 = L.Conv2DTranspose(2, 4, strides=3, padding="same", use_bias=False)
    out = L.Dense(3)(L.Flatten()(t3(t2(t1(inp)))))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed_of("weights:" + name))
    ws = {}
    for layer in (t1, t2, t3):
        shape = tuple(layer.kernel.shape)
        w = (rng.standard_normal(shape) / math.sqrt(shape[0] * shape[1] * shape[3]))
        w = w.astype(np.float32)
        b = (rng.standard_normal(shape[2]) * 0.1).astype(np.float32) if layer.use_bias else None
        layer.set_weights([w, b] if layer.use_bias else [w])
        ws[layer.name] = (w, b)
    ws.update(randomize(model, name))
    x = make_input(name, (5, 4, 3))
    h = np.maximum(conv_transpose64(x.astype(np.float64), *ws[t1.name], (2, 2), "same"), 0)
    h = conv_transpose64(h, *ws[t2.name], (1, 2), "valid")
    h = conv_transpose64(h, *ws[t3.name], (3, 3), "same")
    wo, bo = ws[model.layers[-1].name]
    save_case(name, model, x, dense64(h.reshape(BATCH, -1), wo, bo), ["relu"],
              "Conv2DTranspose: stride 2 same, stride (1, 2) valid, 4x4 stride 3 same no bias")


def grouped64(x, w, b, groups, strides=(1, 1), padding="valid"):
    """A grouped convolution: each group's channels through its filters, side by side."""
    cg, fg = x.shape[-1] // groups, w.shape[-1] // groups
    parts = [conv2d64(x[..., i * cg:(i + 1) * cg], w[..., i * fg:(i + 1) * fg],
                      None if b is None else b[i * fg:(i + 1) * fg], strides, padding)
             for i in range(groups)]
    return np.concatenate(parts, axis=-1)


def bilinear64(x, size):
    """TensorFlow 2's bilinear resize by whole factors: half-pixel centers, edges clamped."""
    def axis(n, f):
        src = np.maximum((np.arange(n * f) + 0.5) / f - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n - 1)
        return lo, np.minimum(lo + 1, n - 1), src - lo
    (r0, r1, wr), (c0, c1, wc) = axis(x.shape[1], size[0]), axis(x.shape[2], size[1])
    wr, wc = wr[None, :, None, None], wc[None, None, :, None]
    top = x[:, r0][:, :, c0] * (1 - wc) + x[:, r0][:, :, c1] * wc
    bottom = x[:, r1][:, :, c0] * (1 - wc) + x[:, r1][:, :, c1] * wc
    return top * (1 - wr) + bottom * wr


def case_conv2d_grouped():
    name = "conv2d_grouped"
    fresh()
    inp = keras.Input(shape=(6, 5, 4))
    convs = [L.Conv2D(8, 3, padding="same", groups=2, activation="relu"),
             L.Conv2D(8, 1, groups=4), L.Conv2D(6, (3, 2), strides=2, groups=2)]
    head = L.Dense(3)
    x = convs[0](inp)
    x = L.UpSampling2D((2, 3), interpolation="bilinear")(x)
    x = convs[2](convs[1](x))
    out = head(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    ws = randomize(model, name)
    x_in = make_input(name, (6, 5, 4))
    convs = [lay.name for lay in convs]
    h = np.maximum(grouped64(x_in.astype(np.float64), *ws[convs[0]], 2, padding="same"), 0)
    h = bilinear64(h, (2, 3))
    h = grouped64(h, *ws[convs[1]], 4)
    h = grouped64(h, *ws[convs[2]], 2, (2, 2))
    y = dense64(h.mean(axis=(1, 2)), *ws[head.name])
    save_case(name, model, x_in, y, ["relu"],
              "grouped Conv2D (2 and 4 groups, strided) and bilinear UpSampling2D")
    # The same file labelled as Keras 2.2.4 wrote it (TensorFlow 1's bilinear rule, no
    # half-pixel centers): sinter must refuse it (tests/conv2d.rs).
    import shutil
    import h5py
    legacy = OUT / f"{name}.keras224.h5"
    shutil.copy(OUT / f"{name}.h5", legacy)
    with h5py.File(legacy, "r+") as f:
        f.attrs["keras_version"] = "2.2.4"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    case_mnist_convnet()
    case_conv2d_mix()
    case_conv2d_blocks()
    case_conv2d_mobile()
    case_xception_mini()
    case_conv2d_decoder()
    case_conv2d_grouped()
    manifest = {
        "generated_by": "scripts/make_conv2d_fixtures.py",
        "versions": tool_versions(),
        "env": {"TF_ENABLE_ONEDNN_OPTS": "0", "KERAS_BACKEND": "tensorflow"},
        "batch": BATCH,
        "notes": [
            "paths are relative to tests/fixtures/conv2d/",
            "inputs float32 NHWC, 2 * N(0, 1); *.keras.out.npy float32 (Keras predict); "
            "*.f64.out.npy float64 computed with NumPy from the float32 weights",
            "kernels N(0, 1/sqrt(kh * kw * cin)), biases N(0, 0.1) (not Keras default init)",
            "each model saved twice: .keras and legacy .h5 (format keras-h5)",
        ],
        "cases": CASES,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for c in CASES:
        print(f"{c['name']:<20} {c['format']:<9} {c['input_shape']} -> {c['output_shape']} "
              f"max|keras-f64| {c['max_abs_peer_vs_f64']:.2e}")


if __name__ == "__main__":
    main()
