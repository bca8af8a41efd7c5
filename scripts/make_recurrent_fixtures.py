#!/usr/bin/env python3
"""Golden-test fixtures for sinter's recurrent layers (issue 29, Keras part): Keras 3 models
saved as `.keras` and as `.h5`, tf_keras (Keras 2) models as legacy `.h5`, their inputs, the
framework's outputs and a float64 NumPy reference written out below. Same conventions as
scripts/make_conv2d_fixtures.py.

What it makes (all in tests/fixtures/recurrent/; nothing else is touched):
  NAME.keras / NAME.h5     Keras 3 `model.save()` in both formats
  NAME.tfk.h5              tf_keras (Keras 2) `model.save()`, whole-model legacy HDF5
  NAME.input.npy           float32 input, batch of 16
  NAME.EXPORTER.onnx       a PyTorch model through torch.onnx.export (TorchScript, dynamo)
  NAME.keras.out.npy       the framework's output: model.predict(x, verbose=0), float32
  NAME.f64.out.npy         float64 NumPy reference from the float32 weights
  manifest.json            the schema of tests/fixtures/conv/manifest.json

Cases (Keras 3 unless said):
  lstm_text       Embedding(40, 16) -> LSTM(32) -> Dense(4, softmax): the text classifier
                  of every Keras tutorial, on 12 token ids (as floats)
  gru_stack       GRU(16, return_sequences) -> GRU(12, reset_after=False) -> Dense(3)
  rnn_backwards   SimpleRNN(10, return_sequences) -> SimpleRNN(6, go_backwards,
                  return_sequences, relu) -> Flatten -> Dense(2)
  bidirectional   Bidirectional(LSTM(8, return_sequences)) (concat) ->
                  Bidirectional(GRU(6, return_sequences), merge_mode="ave") ->
                  Bidirectional(SimpleRNN(5), merge_mode="sum") -> Dense(2)
  conv_lstm       Conv1D(16, 3, relu) -> MaxPooling1D(2) -> LSTM(12, return_sequences,
                  recurrent_activation="hard_sigmoid") -> GlobalAveragePooling1D -> Dense(1)
  torch_lstm      PyTorch nn.LSTM(6, 20, num_layers=2, batch_first=True) -> Linear on the
                  last step, through the TorchScript and the dynamo exporters
  torch_gru       nn.Embedding -> bidirectional nn.GRU (both exporters)
  torch_lstm_hn   a 2-layer bidirectional nn.LSTM read through h_n[-1] (the LSTM ops' Y_h
                  joined by Concat, then a Gather), both exporters
  torch_states    an nn.LSTM encoder's (h_n, c_n) as a second nn.LSTM's initial state, the
                  head reading its last output and c_n (Y_c), both exporters
  torch_time_major  a 2-layer bidirectional nn.GRU in PyTorch's default layout (time-major
                  input [T, N, F], every step's output [T, N, 2H]), both exporters
  seq_lens        (not in the manifest; tests/recurrent.rs) a hand-built bidirectional ONNX
                  LSTM with sequence_lens and peepholes, time-major in and out, against ONNX
                  Runtime
  torch_rnn       2-layer nn.RNN(nonlinearity="relu") (the TorchScript exporter; the dynamo
                  exporter unrolls nn.RNN into per-step MatMuls)
  seq2seq         an encoder-decoder forecaster: LSTM(16) -> RepeatVector(4) ->
                  LSTM(8, return_sequences) -> TimeDistributed(Dense(2)) (also with tf_keras)
  masked_text     Embedding(mask_zero=True) -> Bidirectional(LSTM, return_sequences) ->
                  GRU(go_backwards, return_sequences) -> SimpleRNN -> Dense on ids padded
                  with zeros (at the end, in the middle, everywhere): Keras 3 (the mask
                  written out) and tf_keras (the mask implicit)
  lstm_tf2onnx    LSTM(12) -> Dense(3) through tf2onnx (lstm_tf2onnx.onnx only)
  state_passing   return_state and initial_state: LSTM(16, return_sequences, return_state)
                  whose states start LSTM(16); a Bidirectional(GRU(8, return_state)) whose
                  forward state starts a SimpleRNN(8); the merged output, the backward
                  state and the SimpleRNN joined by Concatenate -> Dense(3) (also tf_keras)
  masking         Masking(-1) -> LSTM(6, return_sequences) -> GRU(4), and Masking(0) ->
                  Bidirectional(SimpleRNN(5), return_sequences) -> GlobalAveragePooling1D (over
                  the kept steps), joined -> Dense(2); padding at the end, in the middle and
                  everywhere (also tf_keras)
  split_directions  Bidirectional(LSTM(6, return_sequences, return_state), merge_mode=None):
                  its six outputs (both directions' steps, pooled, and their h and c) joined
                  by Concatenate -> Dense(3)
  forecaster      tf_keras: LSTM(24, return_sequences) -> LSTM(16) -> Dense(1), a stacked
                  forecaster, and a Bidirectional(GRU(8, reset_after=False), merge_mode="mul")
                  branch joined by Concatenate

Weights: every variable N(0, 1/sqrt(rows)) (biases N(0, 0.1)), drawn in model.weights order
from a generator seeded by crc32("weights:NAME").

Run from the repo root (deterministic; needs tensorflow-cpu and tf_keras):
    python3 scripts/make_recurrent_fixtures.py
"""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["KERAS_BACKEND"] = "tensorflow"

import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "recurrent"
BATCH = 16
INPUT_SCALE = 2.0


def seed_of(name):
    import zlib
    return zlib.crc32(name.encode())


def maxabs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ------------------------------------------------------------------ float64 reference
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def hard_sigmoid_k3(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


ACT = {"tanh": np.tanh, "sigmoid": sigmoid, "relu": lambda x: np.maximum(x, 0.0),
       "hard_sigmoid": hard_sigmoid_k3, "linear": lambda x: x}


def rnn64(kind, x, weights, units, act="tanh", rec="sigmoid", reset_after=True,
          return_sequences=False, go_backwards=False, mask=None, zero_masked=False,
          initial=None, return_state=False):
    """One Keras recurrent layer in float64. x [N, T, F]; returns [N, T, H] or [N, H]
    (with go_backwards the sequence is in the order computed, as Keras returns it). `mask`
    [N, T] (True: kept): a masked step keeps the state, and outputs it (or zeros with
    `zero_masked`, as Bidirectional makes its layers do). `initial`: (h0, c0) instead of
    zeros; `return_state`: also the final h and c."""
    f, g = ACT[act], ACT[rec]
    w = [np.asarray(v, np.float64) for v in weights]
    kernel, rk = w[0], w[1]
    bias = w[2] if len(w) > 2 else np.zeros(kernel.shape[1])
    n, t, _ = x.shape
    h = np.zeros((n, units))
    c = np.zeros((n, units))
    if initial is not None:
        h = np.asarray(initial[0], np.float64)
        c = np.asarray(initial[1], np.float64) if len(initial) > 1 else c
    steps = range(t - 1, -1, -1) if go_backwards else range(t)
    outs = []
    for s in steps:
        keep = np.ones((n, 1), bool) if mask is None else mask[:, s][:, None]
        h_old, c_old = h, c
        xt = x[:, s, :]
        if kind == "lstm":
            z = xt @ kernel + bias + h @ rk
            i, fg, cc, o = (z[:, k * units:(k + 1) * units] for k in range(4))
            c = g(fg) * c + g(i) * f(cc)
            h = g(o) * f(c)
        elif kind == "gru":
            if reset_after:
                bi, br = (bias[0], bias[1]) if bias.ndim == 2 else (bias, np.zeros_like(bias))
                xp = xt @ kernel + bi
                rp = h @ rk + br
                z = g(xp[:, :units] + rp[:, :units])
                r = g(xp[:, units:2 * units] + rp[:, units:2 * units])
                hh = f(xp[:, 2 * units:] + r * rp[:, 2 * units:])
            else:
                xp = xt @ kernel + bias
                z = g(xp[:, :units] + h @ rk[:, :units])
                r = g(xp[:, units:2 * units] + h @ rk[:, units:2 * units])
                hh = f(xp[:, 2 * units:] + (r * h) @ rk[:, 2 * units:])
            h = z * h + (1 - z) * hh
        else:
            h = f(xt @ kernel + bias + h @ rk)
        h = np.where(keep, h, h_old)
        c = np.where(keep, c, c_old)
        outs.append(np.where(keep, h, 0.0) if zero_masked else h)
    y = np.stack(outs, axis=1) if return_sequences else h
    return (y, h, c) if return_state else y


def bidir64(kind, x, fw, bw, units, merge, return_sequences, **kw):
    if kw.get("mask") is not None:
        kw["zero_masked"] = return_sequences
    a = rnn64(kind, x, fw, units, return_sequences=return_sequences, **kw)
    b = rnn64(kind, x, bw, units, return_sequences=return_sequences, go_backwards=True, **kw)
    if return_sequences:
        b = b[:, ::-1, :]
    return {"concat": lambda: np.concatenate([a, b], -1), "sum": lambda: a + b,
            "ave": lambda: (a + b) / 2, "mul": lambda: a * b}[merge]()


def dense64(h, w, b=None):
    y = np.asarray(h, np.float64) @ np.asarray(w, np.float64)
    return y if b is None else y + np.asarray(b, np.float64)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------- models
def randomize(model, name):
    rng = np.random.default_rng(seed_of("weights:" + name))
    for layer in model.layers:
        vals = []
        for v in layer.weights:
            shape = tuple(int(d) for d in v.shape)
            if "bias" in v.name:
                vals.append((rng.standard_normal(shape) * 0.1).astype(np.float32))
            else:
                vals.append((rng.standard_normal(shape) / math.sqrt(shape[0]))
                            .astype(np.float32))
        if vals:
            layer.set_weights(vals)


def build(keras, name):
    """The model `name`, its input and its float64 output."""
    L = keras.layers
    rng = np.random.default_rng(seed_of("input:" + name))
    normal = lambda *s: (rng.standard_normal((BATCH, *s)) * INPUT_SCALE).astype(np.float32)  # noqa: E731
    if name == "lstm_text":
        model = keras.Sequential([keras.Input(shape=(12,)), L.Embedding(40, 16), L.LSTM(32),
                                  L.Dense(4, activation="softmax")])
        x = rng.integers(0, 40, (BATCH, 12)).astype(np.float32)
        randomize(model, name)
        emb, lstm, d = (lay.get_weights() for lay in model.layers)
        h = emb[0].astype(np.float64)[x.astype(np.int64)]
        y = softmax(dense64(rnn64("lstm", h, lstm, 32), *d))
        return model, x, y, ["tanh", "sigmoid", "softmax"]
    if name == "gru_stack":
        model = keras.Sequential([keras.Input(shape=(20, 8)), L.GRU(16, return_sequences=True),
                                  L.GRU(12, reset_after=False), L.Dense(3)])
        x = normal(20, 8)
        randomize(model, name)
        g1, g2, d = (lay.get_weights() for lay in model.layers)
        h = rnn64("gru", x.astype(np.float64), g1, 16, return_sequences=True)
        y = dense64(rnn64("gru", h, g2, 12, reset_after=False), *d)
        return model, x, y, ["tanh", "sigmoid"]
    if name == "rnn_backwards":
        model = keras.Sequential([
            keras.Input(shape=(9, 5)), L.SimpleRNN(10, return_sequences=True),
            L.SimpleRNN(6, go_backwards=True, return_sequences=True, activation="relu"),
            L.Flatten(), L.Dense(2)])
        x = normal(9, 5)
        randomize(model, name)
        r1, r2, _, d = (lay.get_weights() for lay in model.layers)
        h = rnn64("rnn", x.astype(np.float64), r1, 10, return_sequences=True)
        h = rnn64("rnn", h, r2, 6, act="relu", return_sequences=True, go_backwards=True)
        y = dense64(h.reshape(BATCH, -1), *d)
        return model, x, y, ["tanh", "relu"]
    if name == "bidirectional":
        model = keras.Sequential([
            keras.Input(shape=(10, 6)),
            L.Bidirectional(L.LSTM(8, return_sequences=True)),
            L.Bidirectional(L.GRU(6, return_sequences=True), merge_mode="ave"),
            L.Bidirectional(L.SimpleRNN(5), merge_mode="sum"), L.Dense(2)])
        x = normal(10, 6)
        randomize(model, name)
        b1, b2, b3, d = (lay.get_weights() for lay in model.layers)
        h = bidir64("lstm", x.astype(np.float64), b1[:3], b1[3:], 8, "concat", True)
        h = bidir64("gru", h, b2[:3], b2[3:], 6, "ave", True)
        h = bidir64("rnn", h, b3[:3], b3[3:], 5, "sum", False)
        y = dense64(h, *d)
        return model, x, y, ["tanh", "sigmoid"]
    if name == "conv_lstm":
        model = keras.Sequential([
            keras.Input(shape=(24, 4)), L.Conv1D(16, 3, activation="relu"), L.MaxPooling1D(2),
            L.LSTM(12, return_sequences=True, recurrent_activation="hard_sigmoid"),
            L.GlobalAveragePooling1D(), L.Dense(1)])
        x = normal(24, 4)
        randomize(model, name)
        c, _, lstm, _, d = (lay.get_weights() for lay in model.layers)
        xs = x.astype(np.float64)
        h = np.stack([xs[:, i:i + 3, :].reshape(BATCH, -1) for i in range(22)], 1)
        h = np.maximum(dense64(h, c[0].reshape(12, 16), c[1]), 0)
        h = np.maximum(h[:, 0::2], h[:, 1::2])
        h = rnn64("lstm", h, lstm, 12, rec="hard_sigmoid", return_sequences=True)
        y = dense64(h.mean(axis=1), *d)
        return model, x, y, ["tanh", "sigmoid", "hard_sigmoid", "relu"]
    if name == "forecaster":
        inp = keras.Input(shape=(30, 3))
        a = L.LSTM(24, return_sequences=True)(inp)
        a = L.LSTM(16)(a)
        b = L.Bidirectional(L.GRU(8, reset_after=False), merge_mode="mul")(inp)
        out = L.Dense(1)(L.Concatenate()([a, b]))
        model = keras.Model(inp, out)
        x = normal(30, 3)
        randomize(model, name)
        by = {lay.name: lay.get_weights() for lay in model.layers}
        lstms = [lay.name for lay in model.layers if isinstance(lay, L.LSTM)]
        bid = [lay.name for lay in model.layers if isinstance(lay, L.Bidirectional)][0]
        dn = [lay.name for lay in model.layers if isinstance(lay, L.Dense)][0]
        xs = x.astype(np.float64)
        a = rnn64("lstm", xs, by[lstms[0]], 24, return_sequences=True)
        a = rnn64("lstm", a, by[lstms[1]], 16)
        bw = by[bid]
        b = bidir64("gru", xs, bw[:3], bw[3:], 8, "mul", False, reset_after=False)
        y = dense64(np.concatenate([a, b], -1), *by[dn])
        return model, x, y, ["tanh", "sigmoid"]
    if name == "masked_text":
        # Padded token ids (0) at the end, in the middle, and a sequence of padding only.
        ids = rng.integers(1, 30, (BATCH, 10))
        for i in range(BATCH):
            ids[i, 10 - i % 6:] = 0
        ids[1, 2] = ids[5, 0] = 0
        ids[3, :] = 0
        x = ids.astype(np.float32)
        if keras.__version__.startswith("2"):
            model = keras.Sequential([
                keras.Input(shape=(10,)), L.Embedding(30, 8, mask_zero=True),
                L.Bidirectional(L.LSTM(6, return_sequences=True)),
                L.GRU(5, go_backwards=True, return_sequences=True), L.SimpleRNN(4),
                L.Dense(2)])
        else:
            inp = keras.Input(shape=(10,))
            e = L.Embedding(30, 8, mask_zero=True)(inp)
            a = L.Bidirectional(L.LSTM(6, return_sequences=True))(e)
            a = L.GRU(5, go_backwards=True, return_sequences=True)(a)
            a = L.SimpleRNN(4)(a)
            model = keras.Model(inp, L.Dense(2)(a))
        randomize(model, name)
        ws = [lay.get_weights() for lay in model.layers if lay.get_weights()]
        emb, b1, g, r, d = ws
        mask = ids != 0
        h = emb[0].astype(np.float64)[ids]
        h = bidir64("lstm", h, b1[:3], b1[3:], 6, "concat", True, mask=mask)
        h = rnn64("gru", h, g, 5, return_sequences=True, go_backwards=True, mask=mask)
        # go_backwards returns the steps in the order computed; the mask follows the steps
        # it was given, so the next layer reads it reversed too... as Keras does: the mask
        # of a go_backwards layer's output is its input's mask, unreversed.
        h = rnn64("rnn", h, r, 4, mask=mask)
        y = dense64(h, *d)
        return model, x, y, ["tanh", "sigmoid"]
    if name == "masking":
        # A time series padded with -1 at the end, in the middle and everywhere, under
        # Masking(-1); a branch under Masking(0) (steps of zeros), pooled over kept steps.
        x = normal(9, 3)
        for i in range(BATCH):
            x[i, 9 - i % 5:] = -1.0
        x[2, 3] = x[6, 0] = -1.0
        x[4, :] = -1.0
        x[7, 1] = x[9, 4:6] = 0.0
        # Steps with some features (not all) at the mask value: not masked.
        x[8, 2, 0] = x[11, 5, 1:] = -1.0
        x[10, 3, 2] = x[12, 0, :2] = 0.0
        inp = keras.Input(shape=(9, 3))
        a = L.Masking(mask_value=-1.0)(inp)
        a = L.LSTM(6, return_sequences=True)(a)
        a = L.GRU(4)(a)
        b = L.Masking(mask_value=0.0)(inp)
        b = L.Bidirectional(L.SimpleRNN(5, return_sequences=True))(b)
        b = L.GlobalAveragePooling1D()(b)
        model = keras.Model(inp, L.Dense(2, name="head")(L.Concatenate()([a, b])))
        randomize(model, name)
        w = {lay.name: lay.get_weights() for lay in model.layers if lay.get_weights()}
        lstm, gru, bi = (next(w[n] for n in w if n.startswith(k))
                         for k in ("lstm", "gru", "bidirectional"))
        x64 = x.astype(np.float64)
        m1 = (x != -1.0).any(-1)
        a64 = rnn64("lstm", np.where(m1[..., None], x64, 0.0), lstm, 6,
                    return_sequences=True, mask=m1)
        a64 = rnn64("gru", a64, gru, 4, mask=m1)
        m0 = (x != 0.0).any(-1)
        b64 = bidir64("rnn", np.where(m0[..., None], x64, 0.0), bi[:3], bi[3:], 5,
                      "concat", True, mask=m0)
        kept = m0[..., None].astype(np.float64)
        b64 = (b64 * kept).sum(1) / np.maximum(kept.sum(1), 1.0)
        y = dense64(np.concatenate([a64, b64], -1), *w["head"])
        return model, x, y, ["tanh", "sigmoid"]
    if name == "lstm_tf2onnx":
        model = keras.Sequential([keras.Input(shape=(9, 5)), L.LSTM(12), L.Dense(3)])
        x = normal(9, 5)
        randomize(model, name)
        lstm, d = (lay.get_weights() for lay in model.layers)
        y = dense64(rnn64("lstm", x.astype(np.float64), lstm, 12), *d)
        return model, x, y, ["tanh", "sigmoid"]
    if name == "seq2seq":
        model = keras.Sequential([
            keras.Input(shape=(12, 3)), L.LSTM(16), L.RepeatVector(4),
            L.LSTM(8, return_sequences=True), L.TimeDistributed(L.Dense(2))])
        x = normal(12, 3)
        randomize(model, name)
        l1, _, l2, d = (lay.get_weights() for lay in model.layers)
        h = rnn64("lstm", x.astype(np.float64), l1, 16)
        h = rnn64("lstm", np.repeat(h[:, None, :], 4, axis=1), l2, 8, return_sequences=True)
        y = dense64(h, *d)
        return model, x, y, ["tanh", "sigmoid"]
    if name == "state_passing":
        # Keras's `return_state` and `initial_state`: an encoder's states start a decoder.
        inp = keras.Input(shape=(10, 4))
        seq, h, c = L.LSTM(16, return_sequences=True, return_state=True, name="enc")(inp)
        dec = L.LSTM(16, return_sequences=True, name="dec")(seq, initial_state=[h, c])
        last, fh, bh = L.Bidirectional(L.GRU(8, return_state=True), name="bi")(dec)
        r = L.SimpleRNN(8, name="rnn")(dec, initial_state=[fh])
        out = L.Dense(3, name="head")(L.Concatenate()([last, bh, r]))
        model = keras.Model(inp, out)
        x = normal(10, 4)
        randomize(model, name)
        w = {lay.name: lay.get_weights() for lay in model.layers}
        x64 = x.astype(np.float64)
        seq64, h64, c64 = rnn64("lstm", x64, w["enc"], 16, return_sequences=True,
                                return_state=True)
        dec64 = rnn64("lstm", seq64, w["dec"], 16, return_sequences=True, initial=(h64, c64))
        fw, bw = w["bi"][:len(w["bi"]) // 2], w["bi"][len(w["bi"]) // 2:]
        fh64 = rnn64("gru", dec64, fw, 8)
        bh64 = rnn64("gru", dec64, bw, 8, go_backwards=True)
        r64 = rnn64("simple", dec64, w["rnn"], 8, initial=(fh64,))
        y = dense64(np.concatenate([fh64, bh64, bh64, r64], -1), *w["head"])
        return model, x, y, ["tanh", "sigmoid"]
    if name == "split_directions":
        # A Bidirectional with merge_mode=None and return_state: six outputs.
        inp = keras.Input(shape=(8, 5))
        f, b, fh, fc, bh, bc = L.Bidirectional(
            L.LSTM(6, return_sequences=True, return_state=True), merge_mode=None,
            name="bi")(inp)
        joined = L.Concatenate()([L.GlobalAveragePooling1D()(f), L.GlobalMaxPooling1D()(b),
                                  fh, fc, bh, bc])
        model = keras.Model(inp, L.Dense(3, name="head")(joined))
        x = normal(8, 5)
        randomize(model, name)
        w = {lay.name: lay.get_weights() for lay in model.layers}
        x64 = x.astype(np.float64)
        fw, bw = w["bi"][:3], w["bi"][3:]
        f64, fh64, fc64 = rnn64("lstm", x64, fw, 6, return_sequences=True, return_state=True)
        b64, bh64, bc64 = rnn64("lstm", x64, bw, 6, return_sequences=True, go_backwards=True,
                                return_state=True)
        b64 = b64[:, ::-1, :]
        joined = np.concatenate([f64.mean(1), b64.max(1), fh64, fc64, bh64, bc64], -1)
        return model, x, dense64(joined, *w["head"]), ["tanh", "sigmoid"]
    raise ValueError(name)


class TorchNet:
    """PyTorch models as users write them (batch_first=True), built in the torch process."""

    @staticmethod
    def build(name):
        import torch
        torch.manual_seed(seed_of("torch:" + name) % 2**31)
        nn = torch.nn

        class Net(nn.Module):
            def __init__(self, rnn, head, emb=None):
                super().__init__()
                self.emb, self.rnn, self.head = emb, rnn, head

            def forward(self, x):
                if self.emb is not None:
                    x = self.emb(x)
                y, state = self.rnn(x)
                if name == "torch_lstm_hn":
                    return self.head(state[0][-1])  # h_n of the last layer
                return self.head(y[:, -1])

        class States(nn.Module):
            """An encoder's (h, c) start a decoder; the head reads the decoder's last output
            and last cell state (the LSTM op's Y_c)."""

            def __init__(self):
                super().__init__()
                self.enc = nn.LSTM(5, 12, batch_first=True)
                self.dec = nn.LSTM(5, 12, batch_first=True)
                self.head = nn.Linear(24, 3)

            def forward(self, x):
                _, (h, c) = self.enc(x)
                y, (_, c2) = self.dec(x, (h, c))
                return self.head(torch.cat([y[:, -1], c2[-1]], -1))

        class TimeMajor(nn.Module):
            """PyTorch's default layout: x [T, N, F] in, every step's output [T, N, 2H] out."""

            def __init__(self):
                super().__init__()
                self.rnn = nn.GRU(5, 10, num_layers=2, bidirectional=True)

            def forward(self, x):
                return self.rnn(x)[0]

        rng = np.random.default_rng(seed_of("input:" + name))
        if name == "torch_time_major":
            m = TimeMajor()
            x = (rng.standard_normal((7, BATCH, 5)) * INPUT_SCALE).astype(np.float32)
        elif name == "torch_states":
            m = States()
            x = (rng.standard_normal((BATCH, 6, 5)) * INPUT_SCALE).astype(np.float32)
        elif name == "torch_lstm":
            m = Net(nn.LSTM(6, 20, num_layers=2, batch_first=True), nn.Linear(20, 3))
            x = (rng.standard_normal((BATCH, 9, 6)) * INPUT_SCALE).astype(np.float32)
        elif name == "torch_lstm_hn":
            m = Net(nn.LSTM(6, 10, num_layers=2, batch_first=True, bidirectional=True),
                    nn.Linear(10, 3))
            x = (rng.standard_normal((BATCH, 7, 6)) * INPUT_SCALE).astype(np.float32)
        elif name == "torch_gru":
            m = Net(nn.GRU(8, 10, batch_first=True, bidirectional=True), nn.Linear(20, 2),
                    nn.Embedding(25, 8))
            x = rng.integers(0, 25, (BATCH, 11)).astype(np.int64)
        else:  # torch_rnn
            m = Net(nn.RNN(5, 12, num_layers=2, batch_first=True, nonlinearity="relu"),
                    nn.Linear(12, 4))
            x = (rng.standard_normal((BATCH, 8, 5)) * INPUT_SCALE).astype(np.float32)
        return m.eval(), x


TORCH = ["torch_lstm", "torch_gru", "torch_rnn", "torch_lstm_hn", "torch_states",
         "torch_time_major"]


def make_seq_lens():
    """seq_lens.onnx: a hand-built bidirectional ONNX LSTM with peepholes (opset 17, layout
    0) reading X [T, N, F] and sequence_lens [N] (int32) as graph inputs, returning Y
    [T, 2, N, H] and Y_h [2, N, H]; seq_lens.in0/in1.npy, ONNX Runtime's
    seq_lens.out0/out1.npy and a float64 NumPy reference seq_lens.f64.out0/out1.npy."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed_of("seq_lens"))
    t, n, f, h = 6, 5, 3, 4
    w = (rng.standard_normal((2, 4 * h, f)) / math.sqrt(f)).astype(np.float32)
    r = (rng.standard_normal((2, 4 * h, h)) / math.sqrt(h)).astype(np.float32)
    b = (rng.standard_normal((2, 8 * h)) * 0.1).astype(np.float32)
    pp = (rng.standard_normal((2, 3 * h)) * 0.5).astype(np.float32)
    x = rng.standard_normal((t, n, f)).astype(np.float32)
    lens = np.array([6, 3, 1, 5, 2], np.int32)
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "lens", "", "", "P"], ["Y", "Y_h"],
                            hidden_size=h, direction="bidirectional")
    graph = helper.make_graph(
        [node], "seq_lens",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [t, "N", f]),
         helper.make_tensor_value_info("lens", TensorProto.INT32, ["N"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [t, 2, "N", h]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [2, "N", h])],
        initializer=[numpy_helper.from_array(v, k) for k, v in
                     [("W", w), ("R", r), ("B", b), ("P", pp)]])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, OUT / "seq_lens.onnx")
    y, y_h = ort.InferenceSession(str(OUT / "seq_lens.onnx")).run(None, {"X": x, "lens": lens})
    # float64: ONNX gates i, o, f, c; a direction runs over its sequence's own steps.
    y64, yh64 = np.zeros((t, 2, n, h)), np.zeros((2, n, h))
    for d in range(2):
        wd, rd = w[d].astype(np.float64), r[d].astype(np.float64)
        bd = b[d, :4 * h].astype(np.float64) + b[d, 4 * h:]
        p_i, p_o, p_f = (pp[d, j * h:(j + 1) * h].astype(np.float64) for j in range(3))
        for s in range(n):
            hs, cs = np.zeros(h), np.zeros(h)
            steps = range(lens[s]) if d == 0 else range(lens[s] - 1, -1, -1)
            for k in steps:
                z = wd @ x[k, s].astype(np.float64) + rd @ hs + bd
                i, o, fg, cc = (z[j * h:(j + 1) * h] for j in range(4))
                cs = sigmoid(fg + p_f * cs) * cs + sigmoid(i + p_i * cs) * np.tanh(cc)
                hs = sigmoid(o + p_o * cs) * np.tanh(cs)
                y64[k, d, s] = hs
            yh64[d, s] = hs
    for k, (a, a64) in enumerate([(y, y64), (y_h, yh64)]):
        np.save(OUT / f"seq_lens.out{k}.npy", a)
        np.save(OUT / f"seq_lens.f64.out{k}.npy", a64)
        print(f"seq_lens out{k}: ort vs f64 {maxabs(a, a64):.2e}")
    np.save(OUT / "seq_lens.in0.npy", x)
    np.save(OUT / "seq_lens.in1.npy", lens)


def make_torch():
    import torch
    make_seq_lens()
    cases = []
    for name in TORCH:
        m, x = TorchNet.build(name)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            y = m(xt).numpy().astype(np.float32)
            y64 = m.double()(xt if x.dtype == np.int64 else xt.double()).numpy()
            m.float()
        np.save(OUT / f"{name}.input.npy", x.astype(np.float32))
        np.save(OUT / f"{name}.torch.out.npy", y)
        np.save(OUT / f"{name}.f64.out.npy", y64)
        # The batch axis: 1 for a time-major model.
        axis = 1 if name == "torch_time_major" else 0
        exporters = [("torchscript", False)]
        if name != "torch_rnn":  # the dynamo exporter unrolls nn.RNN into per-step MatMuls
            exporters.append(("dynamo", True))
        for kind, dynamo in exporters:
            file = f"{name}.{kind}.onnx"
            if dynamo and (OUT / file).exists():
                pass  # the dynamo exporter's names change from run to run: keep the file
            elif dynamo:
                torch.onnx.export(m, (xt,), OUT / file, dynamo=True, input_names=["x"],
                                  output_names=["y"], external_data=False,
                                  dynamic_shapes={"x": {axis: torch.export.Dim("N")}})
            else:
                torch.onnx.export(m, (xt,), OUT / file, dynamo=False, input_names=["x"],
                                  output_names=["y"], dynamic_axes={"x": {axis: "N"}},
                                  opset_version=17)
            import onnxruntime as ort
            y_ort = ort.InferenceSession(str(OUT / file)).run(None, {"x": x})[0]
            cases.append({
                "name": f"{name}_{kind}",
                "model": file,
                "format": "onnx",
                "input": f"{name}.input.npy",
                "expected": f"{name}.torch.out.npy",
                "f64": f"{name}.f64.out.npy",
                "activations": ["tanh", "sigmoid", "relu"],
                "max_abs_peer_vs_f64": maxabs(y, y64),
                "max_abs_ort_vs_torch": maxabs(y_ort, y),
                "note": f"torch {torch.__version__} {kind} exporter",
                "input_scale": INPUT_SCALE,
                "input_shape": list(x.shape),
                "output_shape": list(y.shape),
                **({"batch_axis": axis} if axis else {}),
            })
    return cases


KERAS3 = ["lstm_text", "gru_stack", "rnn_backwards", "bidirectional", "conv_lstm", "seq2seq",
          "masked_text", "lstm_tf2onnx", "state_passing", "split_directions", "masking"]
TF_KERAS = ["forecaster", "gru_stack", "seq2seq", "masked_text", "state_passing", "masking"]


def tf2onnx_case(model, name, x, y, y64, acts):
    """The Keras model through tf2onnx (`from_function`, opset 17): Transpose -> LSTM ->
    Squeeze -> Slice of the last step -> Squeeze. A file once written is kept (tf2onnx's
    node names change from run to run)."""
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx
    file = OUT / f"{name}.onnx"
    if not file.exists():
        spec = (tf.TensorSpec((None, *x.shape[1:]), tf.float32, name="input"),)
        fn = tf.function(lambda t: model(t, training=False))
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
        onnx.save(proto, file)
    y_ort = ort.InferenceSession(str(file)).run(None, {"input": x})[0]
    return {
        "name": name,
        "model": file.name,
        "format": "onnx",
        "input": f"{name}.input.npy",
        "expected": f"{name}.keras.out.npy",
        "f64": f"{name}.f64.out.npy",
        "activations": acts,
        "max_abs_peer_vs_f64": maxabs(y, y64),
        "max_abs_ort_vs_keras": maxabs(y_ort, y),
        "note": f"tf2onnx {tf2onnx.__version__} from_function of a Keras LSTM, opset 17",
        "input_scale": INPUT_SCALE,
        "input_shape": list(x.shape),
        "output_shape": list(y.shape),
    }


def make(flavour):
    """Writes the cases of one framework (each in its own process: Keras 3, tf_keras, torch)."""
    if flavour == "torch":
        return make_torch()
    if flavour == "tf_keras":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as keras
    else:
        import keras
    cases = []
    for name in (TF_KERAS if flavour == "tf_keras" else KERAS3):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model, x, y64, acts = build(keras, name)
        y = np.asarray(model.predict(x, batch_size=BATCH, verbose=0), np.float32)
        stem = f"{name}.tfk" if flavour == "tf_keras" else name
        np.save(OUT / f"{name}.input.npy", x)
        np.save(OUT / f"{stem}.keras.out.npy", y)
        np.save(OUT / f"{stem}.f64.out.npy", np.asarray(y64, np.float64))
        if name == "lstm_tf2onnx":
            cases.append(tf2onnx_case(model, name, x, y, y64, acts))
            continue
        files = [("keras-h5", f"{stem}.h5")]
        if flavour != "tf_keras":
            files.insert(0, ("keras", f"{stem}.keras"))
        for fmt, file in files:
            if fmt == "keras":
                # Keeps an existing archive whose only changes would be volatile (dates).
                from make_fixtures import save_keras
                save_keras(model, file, out=OUT)
            else:
                model.save(OUT / file)
            cases.append({
                "name": file.replace(".", "_"),
                "model": file,
                "format": fmt,
                "input": f"{name}.input.npy",
                "expected": f"{stem}.keras.out.npy",
                "f64": f"{stem}.f64.out.npy",
                "activations": acts,
                "max_abs_peer_vs_f64": maxabs(y, y64),
                "note": f"{flavour} {keras.__version__}",
                "input_scale": INPUT_SCALE,
                "input_shape": list(x.shape),
                "output_shape": list(y.shape),
            })
    return cases


def main():
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(make(sys.argv[1])))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []
    # TensorFlow's Keras 3 and tf_keras in separate processes.
    for flavour in ["keras", "tf_keras", "torch"]:
        part = OUT / f".cases-{flavour}.json"
        subprocess.run([sys.executable, __file__, flavour, str(part)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cases += json.loads(part.read_text())
        part.unlink()
    manifest = {"generator": "scripts/make_recurrent_fixtures.py", "cases": cases}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for c in cases:
        print(f"{c['name']:28} peer vs f64 {c['max_abs_peer_vs_f64']:.2e}")


if __name__ == "__main__":
    main()
