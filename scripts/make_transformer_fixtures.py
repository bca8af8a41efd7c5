#!/usr/bin/env python3
"""Fixtures for sinter's transformer encoders (tests/transformers.rs), written by the real
tools with random weights from small configs (no model hub is reachable):

  python3 scripts/make_transformer_fixtures.py torch   # needs torch, transformers, onnx
  python3 scripts/make_transformer_fixtures.py keras   # needs tensorflow-cpu (Keras 3)
  python3 scripts/make_transformer_fixtures.py onnx    # needs onnx, onnxruntime

(TensorFlow and torch abort in one process: run the two parts separately.) Everything goes to
tests/fixtures/transformers/: CASE.onnx / CASE.keras / CASE.h5, CASE.in<i>.npy (batch 3 of
sequence 8, the later samples padded: a mask that keeps a prefix), CASE.out<k>.npy (the
framework's own outputs, not onnxruntime's) and manifest.json ({"cases": [{"name", "model",
"seq", "inputs": [{"name", "file"}], "outputs": [{"name", "file"}], "lens": [real length of
each sample]}]}), merged with the cases of the other part.

Torch cases (each exported by the TorchScript exporter, opset 17, and the dynamo exporter,
opset 18; BERT also by the dynamo exporter at opset 23, which writes ONNX's own Attention op;
dynamic batch and sequence axes):
  bert        transformers BertModel (vocab 50, hidden 16, 2 layers, 2 heads, intermediate 32,
              max positions 16): input_ids, attention_mask, token_type_ids (int64) ->
              last_hidden_state, pooler_output
  distilbert  transformers DistilBertForSequenceClassification (vocab 50, dim 16, 2 layers,
              2 heads, hidden 32, 3 labels): input_ids, attention_mask -> logits
  te_post, te_pre  nn.TransformerEncoder(TransformerEncoderLayer(d_model 16, 2 heads,
              feed-forward 32, batch_first, norm_first False / True), 2 layers): x [batch,
              sequence, 16] and a bool padding_mask (True marks padding) -> y. The TorchScript
              export holds the key length as a constant (it runs only at length 8).
  te_causal   the post-norm encoder called with generate_square_subsequent_mask and
              is_causal=True (the mask is computed from shapes, with Trilu): x -> y.
  mha         nn.MultiheadAttention(16, 2 heads, batch_first) called as attn(x, x, x)[0]
              (need_weights left True: 3-D heads [batch x heads, sequence, 8]): x -> y.
  bert_ids, electra, albert, roberta  BertModel, ElectraModel (embedding 8), AlbertModel
              (embedding 8), RobertaModel (position ids computed from the ids), small
              configs, called with input_ids and attention_mask only (token_type_ids from the
              model's buffer) -> last_hidden_state; the first sequence holds the id 1.
Keras cases:
  mha_causal  Input((8, 16)) and a mask Input((1, 8)): MultiHeadAttention(2 heads, key_dim 4,
              value_dim 6, use_causal_mask) over x, x with the mask; LayerNormalization(x + a);
              Dense(16, relu). As .keras and .h5.
  mha_padding Input((8, 16)), mask Input((1, 8)): MultiHeadAttention(2, 4)(x, x, mask) -> Dense(4);
              one sample's mask is all zeros (Keras then averages every value).
  mha_variable Input((None, 16)): MultiHeadAttention(2, 4, use_causal_mask) over x, x;
              LayerNormalization(x + a); Dense(8). Run at 8 positions and, as "short", its
              first 5 positions alone (sinter loads it once, for 8, and runs both).

  text_avg    Input((None,), int32) token ids: Embedding(50, 8, mask_zero=True) ->
              Dense(8, relu) -> GlobalAveragePooling1D (over the non-zero ids: Keras's mask) ->
              Dense(3); padded with zeros, one id 0 inside a sequence; also run "short" (5).

  einsum      Input((None, 16)): EinsumDense("abc,cd->abd", (None, 12), bias_axes "d", relu) ->
              EinsumDense("abc,cd->abd", (None, 4)), no bias; also run "short" (5).

  text_mha    Input((None,), int32) token ids: Embedding(50, 16, mask_zero=True) ->
              MultiHeadAttention(2, 8) over it (Keras's query and value masks) -> Add ->
              LayerNormalization -> GlobalAveragePooling1D (masked) -> Dense(3); also run
              "short" (5).

`keras NAME..` writes only the named Keras cases.

ONNX cases (built with onnx.helper, outputs by onnxruntime, which implements the op):
  attention3d  opset 23: x [batch, sequence, 8] -> MatMul q, k, v -> Attention on 3-D inputs
              (q_num_heads = kv_num_heads = 2, is_causal, scale 0.3) -> MatMul; also run
              "short" (5 positions).
"""
import json
import os
import sys
import zlib

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "transformers")
BATCH, SEQ = 3, 8
LENS = [8, 5, 2]


def rng(tag):
    return np.random.default_rng(zlib.crc32(tag.encode()))


def save(case, k, kind, a):
    f = f"{case}.{kind}{k}.npy"
    np.save(os.path.join(OUT, f), a)
    return f


def merge_manifest(cases):
    path = os.path.join(OUT, "manifest.json")
    old = json.load(open(path))["cases"] if os.path.exists(path) else []
    names = {c["name"] for c in cases}
    keep = [c for c in old if c["name"] not in names]
    json.dump({"cases": sorted(keep + cases, key=lambda c: c["name"])}, open(path, "w"),
              indent=1)


def torch_part():
    import torch
    import transformers

    torch.manual_seed(zlib.crc32(b"weights:bert"))
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=16)
    bert = transformers.BertModel(cfg).eval()
    # Non-zero biases and LayerNorm parameters, so that every weight matters.
    with torch.no_grad():
        for n, p in bert.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)
            elif "LayerNorm.weight" in n:
                p.uniform_(0.5, 1.5)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask, tt):
            o = self.m(input_ids=ids, attention_mask=mask, token_type_ids=tt)
            return o.last_hidden_state, o.pooler_output

    model = Wrap(bert).eval()
    r = rng("input:bert")
    ids = r.integers(0, 50, (BATCH, SEQ)).astype(np.int64)
    mask = np.array([[1 if j < n else 0 for j in range(SEQ)] for n in LENS], np.int64)
    tt = (r.integers(0, 2, (BATCH, SEQ)) * mask).astype(np.int64)
    with torch.no_grad():
        outs = model(*(torch.from_numpy(a) for a in (ids, mask, tt)))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    cases = []
    for tag, dynamo, opset in [("ts", False, 17), ("dynamo", True, 18), ("dynamo23", True, 23)]:
        case = f"bert.{tag}"
        path = os.path.join(OUT, case + ".onnx")
        args = tuple(torch.from_numpy(a) for a in (ids, mask, tt))
        if dynamo:
            d = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=16)}
            torch.onnx.export(model, args, path, input_names=names,
                              output_names=["last_hidden_state", "pooler_output"],
                              dynamic_shapes=(d,) * 3, opset_version=opset, dynamo=True,
                              external_data=False)
        else:
            torch.onnx.export(model, args, path, input_names=names,
                              output_names=["last_hidden_state", "pooler_output"],
                              dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names},
                              opset_version=17, dynamo=False)
        cases.append({
            "name": case, "model": case + ".onnx", "seq": SEQ, "lens": LENS,
            "inputs": [{"name": n, "file": save(case, i, "in", a)}
                       for i, (n, a) in enumerate(zip(names, (ids, mask, tt)))],
            "outputs": [{"name": n, "file": save(case, k, "out", o.numpy())}
                        for k, (n, o) in enumerate(zip(["last_hidden_state", "pooler_output"],
                                                       outs))],
        })
    cases += distilbert_cases(torch, transformers)
    cases += encoder_cases(torch)
    cases += ids_only_cases(torch, transformers)
    merge_manifest(cases)


def hf_called(torch, net, field):
    """`net` with biases drawn from N(0, 0.1), called with ids and a mask, returning its
    output `field`."""
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            return getattr(self.m(input_ids=ids, attention_mask=mask), field)

    return Wrap(net).eval()


def ids_only_cases(torch, transformers):
    """Models called with input_ids and attention_mask alone: their token_type_ids come from
    a buffer expanded to the batch (Slice, Expand, GatherElements, Equal, Where)."""
    small = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=16)
    models = {
        "bert_ids": (transformers.BertConfig, transformers.BertModel, small),
        "electra": (transformers.ElectraConfig, transformers.ElectraModel,
                    dict(small, embedding_size=8)),
        "albert": (transformers.AlbertConfig, transformers.AlbertModel,
                   dict(small, embedding_size=8)),
        # Position ids computed from the ids (padding id 1): max positions 16 + 2.
        "roberta": (transformers.RobertaConfig, transformers.RobertaModel,
                    dict(small, max_position_embeddings=18)),
    }
    cases = []
    for name, (config, cls, kw) in models.items():
        torch.manual_seed(zlib.crc32(f"weights:{name}".encode()))
        model = hf_called(torch, cls(config(**kw)).eval(), "last_hidden_state")
        r = rng(f"input:{name}")
        ids = r.integers(0, 50, (BATCH, SEQ)).astype(np.int64)
        # A padding id inside the first sequence (RoBERTa's position ids skip it).
        ids[0, 3] = 1
        mask = np.array([[1 if j < n else 0 for j in range(SEQ)] for n in LENS], np.int64)
        args = tuple(torch.from_numpy(a) for a in (ids, mask))
        with torch.no_grad():
            y = model(*args).numpy()
        cases += both_exporters(torch, name, model, ["input_ids", "attention_mask"],
                                (ids, mask), y)
    return cases


def both_exporters(torch, name, model, names, arrays, y):
    """`model` on `arrays` exported as NAME.ts (TorchScript, opset 17) and NAME.dynamo (opset
    18), dynamic batch and sequence axes; the cases, with `y` as the output "y"."""
    args = tuple(torch.from_numpy(a) for a in arrays)
    cases = []
    for tag, dynamo in [("ts", False), ("dynamo", True)]:
        case = f"{name}.{tag}"
        path = os.path.join(OUT, case + ".onnx")
        if dynamo:
            d = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=16)}
            torch.onnx.export(model, args, path, input_names=names, output_names=["y"],
                              dynamic_shapes=(d,) * len(args), opset_version=18, dynamo=True,
                              external_data=False)
        else:
            torch.onnx.export(model, args, path, input_names=names, output_names=["y"],
                              dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names},
                              opset_version=17, dynamo=False)
        cases.append({
            "name": case, "model": case + ".onnx", "seq": SEQ, "lens": LENS,
            "inputs": [{"name": n, "file": save(case, i, "in", a)}
                       for i, (n, a) in enumerate(zip(names, arrays))],
            "outputs": [{"name": "y", "file": save(case, 0, "out", y)}],
        })
    return cases


def encoder_cases(torch):
    """PyTorch's own attention: nn.TransformerEncoder (batch_first, post- and pre-norm under a
    boolean src_key_padding_mask where True marks padding; causal, without one) and
    nn.MultiheadAttention called directly (need_weights left at True)."""
    cases = []
    for name in ["te_post", "te_pre", "te_causal", "mha"]:
        torch.manual_seed(zlib.crc32(f"weights:{name}".encode()))
        if name == "mha":
            net = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        else:
            layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32,
                                                     batch_first=True,
                                                     norm_first=name == "te_pre")
            net = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        net = net.eval()
        # Every layer its own weights (the encoder starts from copies of one layer), non-zero
        # biases and LayerNorm parameters.
        with torch.no_grad():
            for n, p in net.named_parameters():
                if "norm" in n and n.endswith("weight"):
                    p.uniform_(0.5, 1.5)
                elif n.endswith("bias"):
                    p.normal_(0, 0.1)
                else:
                    p.normal_(0, 0.3)

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x, pad=None):
                if name == "mha":
                    return self.m(x, x, x)[0]
                if name == "te_causal":
                    causal = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1])
                    return self.m(x, mask=causal, is_causal=True)
                return self.m(x, src_key_padding_mask=pad)

        model = Wrap(net).eval()
        r = rng(f"input:{name}")
        x = r.standard_normal((BATCH, SEQ, 16)).astype(np.float32)
        pad = np.array([[j >= n for j in range(SEQ)] for n in LENS])
        arrays = (x, pad) if name in ("te_post", "te_pre") else (x,)
        names = ["x", "padding_mask"][:len(arrays)]
        with torch.no_grad():
            y = model(*(torch.from_numpy(a) for a in arrays)).numpy()
        cases += both_exporters(torch, name, model, names, arrays, y)
    return cases


def distilbert_cases(torch, transformers):
    torch.manual_seed(zlib.crc32(b"weights:distilbert"))
    cfg = transformers.DistilBertConfig(vocab_size=50, dim=16, n_layers=2, n_heads=2,
                                        hidden_dim=32, max_position_embeddings=16, num_labels=3)
    net = transformers.DistilBertForSequenceClassification(cfg).eval()
    model = hf_called(torch, net, "logits")
    r = rng("input:distilbert")
    ids = r.integers(0, 50, (BATCH, SEQ)).astype(np.int64)
    mask = np.array([[1 if j < n else 0 for j in range(SEQ)] for n in LENS], np.int64)
    args = tuple(torch.from_numpy(a) for a in (ids, mask))
    with torch.no_grad():
        logits = model(*args).numpy()
    names = ["input_ids", "attention_mask"]
    cases = []
    for tag, dynamo in [("ts", False), ("dynamo", True)]:
        case = f"distilbert.{tag}"
        path = os.path.join(OUT, case + ".onnx")
        if dynamo:
            d = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=16)}
            torch.onnx.export(model, args, path, input_names=names, output_names=["logits"],
                              dynamic_shapes=(d, d), opset_version=18, dynamo=True,
                              external_data=False)
        else:
            torch.onnx.export(model, args, path, input_names=names, output_names=["logits"],
                              dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names},
                              opset_version=17, dynamo=False)
        cases.append({
            "name": case, "model": case + ".onnx", "seq": SEQ, "lens": LENS,
            "inputs": [{"name": n, "file": save(case, i, "in", a)}
                       for i, (n, a) in enumerate(zip(names, (ids, mask)))],
            "outputs": [{"name": "logits", "file": save(case, 0, "out", logits)}],
        })
    return cases


def keras_part(only=()):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    cases = []
    if not only or "mha_variable" in only:
        cases += keras_variable(keras)
    if not only or "text_avg" in only:
        cases += keras_text_avg(keras)
    if not only or "einsum" in only:
        cases += keras_einsum(keras)
    if not only or "text_mha" in only:
        cases += keras_text_mha(keras)

    def build(name):
        x = keras.Input((SEQ, 16), name="x")
        m = keras.Input((1, SEQ), name="mask")
        if name == "mha_causal":
            a = keras.layers.MultiHeadAttention(2, 4, value_dim=6)(
                x, x, attention_mask=m, use_causal_mask=True)
            y = keras.layers.LayerNormalization()(keras.layers.Add()([x, a]))
            y = keras.layers.Dense(16, activation="relu")(y)
        else:
            a = keras.layers.MultiHeadAttention(2, 4)(x, x, attention_mask=m)
            y = keras.layers.Dense(4)(a)
        return keras.Model([x, m], y, name=name)

    for name in [n for n in ["mha_causal", "mha_padding"] if not only or n in only]:
        model = build(name)
        r = rng("weights:" + name)
        model.set_weights([(r.normal(0, 0.5, w.shape)).astype(np.float32)
                           for w in model.get_weights()])
        r = rng("input:" + name)
        x = r.normal(0, 1, (BATCH, SEQ, 16)).astype(np.float32)
        lens = [8, 5, 0] if name == "mha_padding" else LENS
        m = np.array([[[1.0 if j < n else 0.0 for j in range(SEQ)]] for n in lens], np.float32)
        y = model.predict([x, m], verbose=0)
        for ext in ["keras", "h5"]:
            case = f"{name}.{ext}"
            model.save(os.path.join(OUT, case))
            cases.append({
                "name": case, "model": case, "seq": SEQ, "lens": lens,
                "inputs": [{"name": "x", "file": save(case, 0, "in", x)},
                           {"name": "mask", "file": save(case, 1, "in", m)}],
                "outputs": [{"name": "y", "file": save(case, 0, "out", y)}],
            })
    merge_manifest(cases)


def variable_case(name, model, x, inputs=("x",), short=True):
    """Saves `model` as .keras and .h5 with its outputs on `x` ([batch, 8, ..]) and, with
    `short`, on the first 5 positions of `x` alone."""
    y = model.predict(x, verbose=0)
    cases = []
    for ext in ["keras", "h5"]:
        case = f"{name}.{ext}"
        model.save(os.path.join(OUT, case))
        c = {
            "name": case, "model": case, "seq": SEQ, "lens": LENS,
            "inputs": [{"name": inputs[0], "file": save(case, 0, "in", x)}],
            "outputs": [{"name": "y", "file": save(case, 0, "out", y)}],
        }
        if short:
            xs = np.ascontiguousarray(x[:, :5])
            ys = model.predict(xs, verbose=0)
            c["short"] = {"seq": 5,
                          "inputs": [{"name": inputs[0], "file": save(case, 0, "short_in", xs)}],
                          "outputs": [{"name": "y", "file": save(case, 0, "short_out", ys)}]}
        cases.append(c)
    return cases


def padded_ids(name):
    """Token ids of LENS lengths padded with 0, and one 0 inside the first sequence."""
    r = rng("input:" + name)
    x = np.array([[r.integers(1, 50) if j < n else 0 for j in range(SEQ)] for n in LENS],
                 np.int32)
    x[0, 3] = 0
    return x


def randomized(model, name):
    r = rng("weights:" + name)
    model.set_weights([(r.normal(0, 0.5, w.shape)).astype(np.float32)
                       for w in model.get_weights()])
    return model


def keras_variable(keras):
    name = "mha_variable"
    x = keras.Input((None, 16), name="x")
    a = keras.layers.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)
    y = keras.layers.LayerNormalization()(keras.layers.Add()([x, a]))
    y = keras.layers.Dense(8)(y)
    model = randomized(keras.Model(x, y, name=name), name)
    x = rng("input:" + name).normal(0, 1, (BATCH, SEQ, 16)).astype(np.float32)
    return variable_case(name, model, x)


def keras_text_avg(keras):
    name = "text_avg"
    ids = keras.Input((None,), dtype="int32", name="ids")
    e = keras.layers.Embedding(50, 8, mask_zero=True)(ids)
    h = keras.layers.Dense(8, activation="relu")(e)
    p = keras.layers.GlobalAveragePooling1D()(h)
    y = keras.layers.Dense(3)(p)
    model = randomized(keras.Model(ids, y, name=name), name)
    return variable_case(name, model, padded_ids(name), ("ids",))


def keras_einsum(keras):
    name = "einsum"
    x = keras.Input((None, 16), name="x")
    h = keras.layers.EinsumDense("abc,cd->abd", (None, 12), bias_axes="d",
                                 activation="relu")(x)
    y = keras.layers.EinsumDense("abc,cd->abd", (None, 4))(h)
    model = randomized(keras.Model(x, y, name=name), name)
    x = rng("input:" + name).normal(0, 1, (BATCH, SEQ, 16)).astype(np.float32)
    return variable_case(name, model, x)


def keras_text_mha(keras):
    name = "text_mha"
    ids = keras.Input((None,), dtype="int32", name="ids")
    e = keras.layers.Embedding(50, 16, mask_zero=True)(ids)
    a = keras.layers.MultiHeadAttention(2, 8)(e, e)
    h = keras.layers.LayerNormalization()(keras.layers.Add()([e, a]))
    p = keras.layers.GlobalAveragePooling1D()(h)
    y = keras.layers.Dense(3)(p)
    model = randomized(keras.Model(ids, y, name=name), name)
    return variable_case(name, model, padded_ids(name), ("ids",))


def onnx_part():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    name, width = "attention3d", 8
    nodes = [helper.make_node("MatMul", ["x", w], [o]) for w, o in
             [("wq", "q"), ("wk", "k"), ("wv", "v")]]
    nodes += [helper.make_node("Attention", ["q", "k", "v"], ["a"], q_num_heads=2,
                               kv_num_heads=2, is_causal=1, scale=0.3),
              helper.make_node("MatMul", ["a", "wo"], ["y"])]
    r = rng("weights:" + name)
    inits = [helper.make_tensor(w, TensorProto.FLOAT, [width, width],
                                r.normal(0, 0.5, (width, width)).astype(np.float32).ravel())
             for w in ["wq", "wk", "wv", "wo"]]
    io = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT,
                                                 ["batch", "sequence", width])
    g = helper.make_graph(nodes, name, [io("x")], [io("y")], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    case = name + ".onnx"
    onnx.save(model, os.path.join(OUT, case))
    run = ort.InferenceSession(model.SerializeToString()).run
    x = rng("input:" + name).normal(0, 1, (BATCH, SEQ, width)).astype(np.float32)
    short = np.ascontiguousarray(x[:, :5])
    merge_manifest([{
        "name": case, "model": case, "seq": SEQ, "lens": LENS,
        "inputs": [{"name": "x", "file": save(case, 0, "in", x)}],
        "outputs": [{"name": "y", "file": save(case, 0, "out", run(None, {"x": x})[0])}],
        "short": {"seq": 5,
                  "inputs": [{"name": "x", "file": save(case, 0, "short_in", short)}],
                  "outputs": [{"name": "y", "file": save(case, 0, "short_out",
                                                       run(None, {"x": short})[0])}]},
    }])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1] == "keras":
        keras_part(sys.argv[2:])
    elif sys.argv[1] == "onnx":
        onnx_part()
    else:
        torch_part()
