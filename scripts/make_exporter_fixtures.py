#!/usr/bin/env python3
"""Golden-test fixtures for sinter's ONNX loader on files written by the REAL exporters:
torch.onnx (TorchScript exporter and the dynamo / torch.export exporter), Keras 3
model.export(format="onnx"), tf2onnx.convert.from_keras on tf_keras (Keras 2) models, and
skl2onnx on scikit-learn MLPs. Every expected output is the framework's OWN result (torch
forward, Keras predict, sklearn predict / predict_proba), not onnxruntime's; onnxruntime is
only run as a cross-check and its distance to the framework is recorded.
Same conventions as scripts/make_legacy_fixtures.py.

What it makes (all in tests/fixtures/exporters/; nothing else is touched):
  CASE.onnx         the file the exporter wrote, byte for byte; only when the exporter put the
                    weights in external data (the dynamo exporter writes CASE.onnx.data by
                    default) it is reloaded and re-saved with every tensor inline (noted in the
                    case's "notes" and "resaved_inline")
  CASE.in<i>.npy    float32 C-order input i, batch of 4, N(0, 1) from a NumPy generator seeded
                    by crc32("input:CASE:<i>")
  CASE.out<k>.npy   the framework's value of graph output k (graph order): float32, or int64
                    for class labels; absent for an output the framework has no tensor for
                    (the ZipMap sequence of skl_mlp_classifier_zipmap)
  manifest.json     {"generated_by", "batch", "versions": {"torch": {...}, "sklearn": {...},
                    "tf": {...}}, "cases": [{"name", "part", "model", "exporter", "producer",
                    "ir_version", "opset", "opset_imports", "ops", "inputs": [{"name", "file",
                    "shape", "onnx_shape", "dtype", "layout"}], "outputs": [{"name", "file",
                    "dtype", "shape", "onnx_shape"}], "max_abs_ort_vs_framework", "notes",
                    ...}], "export_failures": [{"case", "part", "exporter", "error"}]}
                    "ops" is the sorted unique op_type list, "domain:op_type" for ops outside
                    the default ai.onnx domain (e.g. "ai.onnx.ml:ArrayFeatureExtractor");
                    "onnx_shape" is the declared shape (ints, strings for symbolic dims, null
                    for unknown); "max_abs_ort_vs_framework" has one entry per output (null
                    where there is no file); labels must match exactly, floats within 1e-3.

Cases (torch ones exported twice, NAME.ts = torch.onnx.export(dynamo=False), the TorchScript
exporter at its default opset, and NAME.dynamo = torch.onnx.export(dynamo=True) with its
default opset and optimize=True; failures are recorded under "export_failures"):
  torch_mlp            [4,16] Linear(16,32) GELU(erf) LayerNorm(32) Linear(32,32) SiLU Linear(32,4)
                       (also torch_mlp.ts17: the TorchScript exporter at opset_version=17, which
                       writes GELU as Div/Erf/Add/Mul/Mul instead of the opset-20 Gelu op)
  torch_mlp_tanh       [4,16] Linear(16,32) GELU(tanh) Linear(32,32) Hardswish Linear(32,4)
                       (also torch_mlp_tanh.ts17)
  torch_conv1d_ncw     [4,8,24] NCW: Conv1d(8,8,k,padding=k//2) for k in 3,5,7, cat(dim=1), ReLU,
                       Flatten (channel-major, as PyTorch flattens), Linear(576,10)
  torch_conv1d_nwc     [4,24,8] NWC: permute(0,2,1) Conv1d(8,12,3,p=1) ReLU MaxPool1d(2)
                       Conv1d(12,8,3) permute(0,2,1) mean(dim=1) Linear(8,3)
  torch_conv1d_bn      [4,8,24] NCW: Conv1d(8,16,5) BatchNorm1d(16) ReLU AdaptiveAvgPool1d(1)
                       Flatten Linear(16,5). Both exporters fold the BatchNorm into the Conv
                       by default, so also torch_conv1d_bn.ts_nofold (do_constant_folding=
                       False) and torch_conv1d_bn.dynamo_noopt (optimize=False), which keep
                       the BatchNormalization node
  torch_lenet          [4,1,28,28] NCHW LeNet-5: Conv2d(1,6,5,padding=2) ReLU MaxPool2d(2)
                       Conv2d(6,16,5) ReLU MaxPool2d(2) Flatten Linear(400,120) ReLU
                       Linear(120,84) ReLU Linear(84,10)
  torch_resblock       [4,8,16,16] NCHW torchvision-style BasicBlock with a downsample:
                       Conv2d(8,16,3,stride 2,padding 1,no bias) BatchNorm2d ReLU
                       Conv2d(16,16,3,padding 1,no bias) BatchNorm2d, + Conv2d(8,16,1,stride 2)
                       BatchNorm2d, ReLU, AdaptiveAvgPool2d(1) Flatten Linear(16,5); the
                       batch norms' statistics from 5 training-mode passes
  torch_decoder        [4,4,5,6] NCHW: ConvTranspose2d(4,6,3,stride 2,padding 1) ReLU
                       ConvTranspose2d(6,2,4,stride 2,padding 1) Flatten Linear(792,3)
  torch weights: torch.manual_seed(crc32("weights:NAME")) then the default init (Linear/Conv1d
  biases are non-zero by default); LayerNorm weight 1 + N(0, 0.2), bias N(0, 0.1);
  BatchNorm1d weight U(0.5, 1.5), bias N(0, 0.2), running stats from 5 seeded train-mode
  batches of 2 * N(0, 1) + 0.5 (momentum 0.1) before eval(). One torch thread.
  keras_conv1d.export  Keras 3 (TF backend) Input((24,6)) Conv1D(8,3,same,relu) MaxPooling1D(2)
                       Conv1D(8,3) GlobalAveragePooling1D Dense(3,softmax);
                       model.export(path, format="onnx") (Keras calls tf2onnx.convert.from_function)
  tf2onnx_conv1d       the same architecture in tf_keras, tf2onnx.convert.from_keras (default opset)
  tf2onnx_mlp_ln       tf_keras Input((16,)) Dense(32,relu) LayerNormalization Dense(4), from_keras
  Keras weights (as in make_legacy_fixtures.py): every variable set with set_weights from a
  NumPy generator seeded by crc32("weights:NAME"): kernels N(0, 1/sqrt(fan_in)) (fan_in =
  k * cin for Conv1D), biases N(0, 0.1), LayerNormalization gamma U(0.5, 1.5), beta N(0, 0.2).
  TF_ENABLE_ONEDNN_OPTS=0, one TensorFlow thread.
  skl_mlp_classifier         MLPClassifier((16,), max_iter=300, random_state=0) on a 3-class
                             make_classification problem (10 features, float32), zipmap=False:
                             outputs label (int64) and probabilities (float32)
  skl_mlp_classifier_zipmap  the same fitted model, default options: output_probability is a
                             ZipMap seq(map(int64, float)); only label has an expected file
  skl_mlp_regressor          MLPRegressor((16,), max_iter=500, random_state=0), 10 features,
                             standardised target; output variable float32 [N,1]
  skl_mlp_classifier_binary  MLPClassifier((16,), max_iter=300, random_state=0), 2 classes,
                             zipmap=False (skl2onnx's binary path)
  skl2onnx.to_onnx(model, X[:1]) at skl2onnx's default target opset; input name "X".

Run (from the repo root), one part per Python environment; each part rewrites only its own
cases' files and merges them into manifest.json (the others are kept as they are):
    /tmp/tvenv/bin/python scripts/make_exporter_fixtures.py --part torch
    /tmp/venv/bin/python  scripts/make_exporter_fixtures.py --part sklearn
    /tmp/kvenv/bin/python scripts/make_exporter_fixtures.py --part tf
The environments: tvenv = torch 2.15.0 (CUDA build, run on CPU), onnxscript 0.7.2, onnx
1.23.2, onnxruntime 1.32.0; venv = scikit-learn 1.9.1, skl2onnx 1.20.0, onnx 1.23.2,
onnxruntime 1.32.0; kvenv = tensorflow-cpu 2.21.0, keras 3.15.1, tf_keras 2.21.0, onnx 1.23.2,
onnxruntime 1.32.0 plus `pip install tf2onnx==1.17.0` (which changed nothing else there). The
versions actually used are recorded per part in manifest.json.
Each run also writes a readable dump of every case in the manifest (opset imports, inputs,
outputs, initializer shapes, nodes with inputs / outputs / attributes) to --graphs
(default /tmp/exporter_graphs.txt); `--graphs-only` writes just that (any env with onnx).

Reruns write the same bytes. No exporter here stamps a time, the .npy/.json files are fixed,
and the script re-executes itself with PYTHONHASHSEED=0. The torch and skl2onnx files come
out byte-identical from a clean directory every time. tf2onnx does not: the names it gives
folded constants (const_fold_opt__N, const_axes__N) and the order of its initializer list
change from run to run. And the dynamo exporter's per-node metadata_props carry stack traces
with this script's path and line numbers, so an edit here would change those files. So an
existing CASE.onnx is kept when the fresh export is the same graph up to such things: same
ops, attributes, wiring, initializer contents, graph input / output names and types, opsets
and producer (node names, doc strings and metadata are ignored; see canonical()). Reruns then
leave the committed files alone unless what the exporter wrote really changed. Delete the
directory first to take every file fresh from the exporters. Within the tf part the tf2onnx
cases run before Keras's model.export: that calls Keras's patch_tf2onnx(), which monkeypatches
tf2onnx for the rest of the process.
"""

import argparse
import importlib.metadata as md
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

# tf2onnx's graph optimizers walk Python sets of node / tensor names, so the names and order of
# the constants they fold follow str hash randomisation: pin it (re-exec once with it set).
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "PYTHONHASHSEED": "0"})

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "exporters"
BATCH = 4
TOL = 1e-3

TORCH_MODELS = ["torch_mlp", "torch_mlp_tanh", "torch_conv1d_ncw", "torch_conv1d_nwc",
                "torch_conv1d_bn", "torch_lenet", "torch_resblock", "torch_decoder"]
# extra exports beyond NAME.ts / NAME.dynamo: the TorchScript exporter at opset 17 (GELU
# decomposed), and the conv+BN model with the BatchNormalization node kept (both exporters
# fold it into the Conv weights by default)
EXTRA = {"torch_mlp": ["ts17", "ts16"], "torch_mlp_tanh": ["ts17"],
         "torch_conv1d_bn": ["ts_nofold", "dynamo_noopt"]}
# ts16: opset 16, before LayerNormalization existed: the exporter writes it as ReduceMean, Sub,
# Pow, ReduceMean, Add, Sqrt, Div, Mul, Add
TORCH_EXPORTS = ["ts", "dynamo", "ts17", "ts16", "ts_nofold", "dynamo_noopt"]
PARTS = {
    "torch": [f"{m}.{e}" for m in TORCH_MODELS for e in ("ts", "dynamo")]
    + [f"{m}.{e}" for m in TORCH_MODELS for e in EXTRA.get(m, [])],
    "sklearn": ["skl_mlp_classifier", "skl_mlp_classifier_zipmap", "skl_mlp_regressor",
                "skl_mlp_classifier_binary"],
    "tf": ["keras_conv1d.export", "tf2onnx_conv1d", "tf2onnx_mlp_ln"],
}
ORDER = [c for p in ("torch", "tf", "sklearn") for c in PARTS[p]]

CASES = []
FAILURES = []
PREVIOUS = {}  # CASE.onnx file name -> its bytes before this run


def seed_of(name):
    return zlib.crc32(name.encode())


def make_input(case, i, shape):
    rng = np.random.default_rng(seed_of(f"input:{case}:{i}"))
    return np.ascontiguousarray(rng.standard_normal((BATCH,) + tuple(shape)).astype(np.float32))


def dist_version(d):
    try:
        return md.version(d)
    except md.PackageNotFoundError:
        return None


def common_versions():
    import onnxruntime
    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__, "protobuf": dist_version("protobuf"),
            "python": sys.version.split()[0]}


# ------------------------------------------------------------------------------ onnx helpers
ELEM = {v: np.dtype(k).name for k, v in {
    np.float32: onnx.TensorProto.FLOAT, np.float64: onnx.TensorProto.DOUBLE,
    np.int64: onnx.TensorProto.INT64, np.int32: onnx.TensorProto.INT32,
    np.bool_: onnx.TensorProto.BOOL, np.float16: onnx.TensorProto.FLOAT16}.items()}


def elem_name(t):
    return ELEM.get(t, onnx.TensorProto.DataType.Name(t).lower())


def type_str(tp):
    k = tp.WhichOneof("value")
    if k == "tensor_type":
        return elem_name(tp.tensor_type.elem_type)
    if k == "sequence_type":
        return f"seq({type_str(tp.sequence_type.elem_type)})"
    if k == "map_type":
        return f"map({elem_name(tp.map_type.key_type)},{type_str(tp.map_type.value_type)})"
    return str(k)


def onnx_shape(tp):
    if tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in tp.tensor_type.shape.dim:
        k = d.WhichOneof("value")
        dims.append(d.dim_value if k == "dim_value" else d.dim_param if k == "dim_param"
                    else None)
    return dims


def all_nodes(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(a.g)
            for g in a.graphs:
                yield from all_nodes(g)


def op_list(model):
    ops = set()
    for n in all_nodes(model.graph):
        ops.add(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}")
    for f in model.functions:
        for n in f.node:
            ops.add(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}")
    return sorted(ops)


def graph_inputs(model):
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def has_external_data(model):
    return any(t.data_location == onnx.TensorProto.EXTERNAL
               for t in onnx.external_data_helper._get_all_tensors(model))


def canonical(model):
    """The graph with every exporter-made name replaced: initializers by their content, node
    outputs by (node index, output index), node names dropped; graph inputs / outputs keep
    their names. Two exports with equal canonical() differ only in such names and in the
    order of the initializer list."""
    g = model.graph
    keep = {v.name for v in list(g.input) + list(g.output)}
    names = {n: n for n in keep}
    for t in g.initializer:
        t2 = onnx.TensorProto()
        t2.CopyFrom(t)
        t2.name = ""
        names[t.name] = "init:" + str(zlib.crc32(t2.SerializeToString(deterministic=True)))
    inits = sorted(names[t.name] for t in g.initializer)
    nodes = []
    for k, n in enumerate(g.node):
        for j, o in enumerate(n.output):
            names.setdefault(o, f"n{k}:{j}")
        attrs = []
        for a in n.attribute:
            a2 = onnx.AttributeProto()
            a2.CopyFrom(a)
            attrs.append(a2.SerializeToString(deterministic=True))
        nodes.append((n.domain, n.op_type, tuple(names.get(i, i) for i in n.input),
                      tuple(names[o] for o in n.output), tuple(sorted(attrs))))
    io = [(v.name, v.type.SerializeToString(deterministic=True))
          for v in list(g.input) + list(g.output)]
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    return (model.ir_version, model.producer_name, model.producer_version, opsets, io,
            inits, nodes)


def place_model(src, dst, previous=None):
    """Copy the exported file to dst as is; inline external data if the exporter wrote any.
    If `previous` (the bytes this case had before the run) is the same graph up to the
    exporter's made-up names (canonical()), those bytes are written instead, so that an
    exporter that names its folded constants differently on every run (tf2onnx) does not
    churn the committed file. Returns True when the model had to be re-saved inline."""
    m = onnx.load(str(src), load_external_data=False)
    resaved = has_external_data(m)
    if resaved:
        m = onnx.load(str(src))  # pulls the external tensors in and marks them DEFAULT
        onnx.save(m, str(dst))
    else:
        shutil.copyfile(src, dst)
    if previous is not None:
        old = onnx.load_from_string(previous)
        if canonical(old) == canonical(onnx.load(str(dst))):
            if dst.read_bytes() != previous:
                print(f"{dst.name}: same graph as before up to exporter-made names; kept")
                dst.write_bytes(previous)
        else:
            print(f"{dst.name}: the export changed")
    return resaved


def run_ort(path, feeds, names):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(names, feeds)


def graph_notes(m):
    """Observations about the exported graph that a loader has to cope with."""
    g = m.graph
    consts = {i.name for i in g.initializer} | {
        o for n in g.node if n.op_type == "Constant" for o in n.output}
    out = []
    for n in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type in ("Conv", "MaxPool", "AveragePool") and len(attrs.get(
                "kernel_shape", [])) == 2 and 1 in attrs["kernel_shape"]:
            out.append(f"{n.op_type} {n.name} is 2-D with kernel_shape "
                       f"{list(attrs['kernel_shape'])} (1-D op written as 2-D)")
        if n.op_type == "BatchNormalization" and any(i not in consts for i in n.input[1:]):
            out.append(f"BatchNormalization {n.name} has computed (non-initializer) "
                       "scale/bias/mean/var inputs")
    for v in list(graph_inputs(m)) + list(g.output):
        dims = onnx_shape(v.type) or []
        sym = [d for d in dims if not isinstance(d, int)]
        if sym:
            out.append(f"{v.name} has symbolic / unknown dims {sym}")
    return out


def record(case, part, inputs, expected, exporter, notes, resaved=False, **extra):
    """inputs: [(array, layout)], expected: {graph output name: array}; CASE.onnx in place."""
    path = OUT / f"{case}.onnx"
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    gins = graph_inputs(m)
    assert len(gins) == len(inputs), (case, [i.name for i in gins])
    ins, feeds = [], {}
    for i, (gi, (x, layout)) in enumerate(zip(gins, inputs)):
        f = f"{case}.in{i}.npy"
        np.save(OUT / f, x)
        feeds[gi.name] = x
        ins.append({"name": gi.name, "file": f, "shape": list(x.shape),
                    "onnx_shape": onnx_shape(gi.type), "dtype": type_str(gi.type),
                    "layout": layout})
    outs, names = [], []
    for k, go in enumerate(m.graph.output):
        y = expected.get(go.name)
        f = None
        if y is not None:
            f = f"{case}.out{k}.npy"
            np.save(OUT / f, np.ascontiguousarray(y))
            names.append(go.name)
        outs.append({"name": go.name, "file": f, "dtype": type_str(go.type),
                     "shape": None if y is None else list(y.shape),
                     "onnx_shape": onnx_shape(go.type)})
    unknown = set(expected) - {o["name"] for o in outs}
    assert not unknown, (case, unknown)
    got = dict(zip(names, run_ort(path, feeds, names)))
    diffs = []
    for o in outs:
        if o["file"] is None:
            diffs.append(None)
            continue
        y, r = expected[o["name"]], np.asarray(got[o["name"]])
        assert y.dtype == np.dtype(o["dtype"]), (case, o["name"], y.dtype, o["dtype"])
        r = r.reshape(y.shape) if r.size == y.size else r
        assert r.shape == y.shape, (case, o["name"], r.shape, y.shape)
        if y.dtype.kind in "iu":
            assert np.array_equal(r, y), (case, o["name"], r, y)
            diffs.append(0.0)
        else:
            d = float(np.max(np.abs(r.astype(np.float64) - y.astype(np.float64))))
            assert d <= TOL, (case, o["name"], d)
            diffs.append(d)
    opsets = {(o.domain or "ai.onnx"): o.version for o in m.opset_import}
    CASES.append({
        "name": case, "part": part, "model": path.name, "exporter": exporter,
        "producer": f"{m.producer_name} {m.producer_version}".strip(),
        "ir_version": m.ir_version, "opset": opsets.get("ai.onnx"),
        "opset_imports": dict(sorted(opsets.items())), "ops": op_list(m),
        "inputs": ins, "outputs": outs, "max_abs_ort_vs_framework": diffs,
        "resaved_inline": resaved,
        "notes": "; ".join([notes] * bool(notes) + graph_notes(m)), **extra})
    print(f"{case}: opset {opsets} ops {op_list(m)} ort diff {diffs}", flush=True)


def fail(case, part, exporter, err):
    msg = f"{type(err).__name__}: {err}"
    FAILURES.append({"case": case, "part": part, "exporter": exporter, "error": msg[:2000]})
    print(f"{case}: EXPORT FAILED {msg[:300]}", flush=True)


def check_nontrivial(case, y):
    """Outputs must not be all zero / constant / saturated softmax."""
    y = np.asarray(y, dtype=np.float64)
    assert np.std(y) > 1e-3, (case, "constant output")
    assert np.mean(np.abs(y) < 1e-7) < 0.5, (case, "mostly zero output")


# -------------------------------------------------------------------------------- torch
def part_torch():
    import torch
    from torch import nn

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import logging
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("onnxscript").setLevel(logging.ERROR)

    class NWC(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(8, 12, 3, padding=1)
            self.pool = nn.MaxPool1d(2)
            self.c2 = nn.Conv1d(12, 8, 3)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            h = x.permute(0, 2, 1)
            h = self.pool(torch.relu(self.c1(h)))
            h = self.c2(h).permute(0, 2, 1)
            return self.fc(h.mean(dim=1))

    class NCW(nn.Module):
        def __init__(self):
            super().__init__()
            self.branches = nn.ModuleList(nn.Conv1d(8, 8, k, padding=k // 2) for k in (3, 5, 7))
            self.flat = nn.Flatten()
            self.fc = nn.Linear(24 * 24, 10)

        def forward(self, x):
            h = torch.cat([b(x) for b in self.branches], dim=1)
            return self.fc(self.flat(torch.relu(h)))

    class ResBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(16)
            self.down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False),
                                      nn.BatchNorm2d(16))
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            return self.head(torch.relu(h + self.down(x)))

    def build(name):
        torch.manual_seed(seed_of(f"weights:{name}"))
        if name == "torch_mlp":
            m = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 32),
                              nn.SiLU(), nn.Linear(32, 4))
            shape, layout = (16,), "features"
        elif name == "torch_mlp_tanh":
            m = nn.Sequential(nn.Linear(16, 32), nn.GELU(approximate="tanh"), nn.Linear(32, 32),
                              nn.Hardswish(), nn.Linear(32, 4))
            shape, layout = (16,), "features"
        elif name == "torch_conv1d_ncw":
            m, shape, layout = NCW(), (8, 24), "NCW"
        elif name == "torch_conv1d_nwc":
            m, shape, layout = NWC(), (24, 8), "NWC"
        elif name == "torch_lenet":
            m = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                              nn.Linear(84, 10))
            shape, layout = (1, 28, 28), "NCHW"
        elif name == "torch_decoder":
            m = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                              nn.ConvTranspose2d(6, 2, 4, stride=2, padding=1), nn.Flatten(),
                              nn.Linear(2 * 18 * 22, 3))
            shape, layout = (4, 5, 6), "NCHW"
        elif name == "torch_resblock":
            m, shape, layout = ResBlock(), (8, 16, 16), "NCHW"
        elif name == "torch_conv1d_bn":
            m = nn.Sequential(nn.Conv1d(8, 16, 5), nn.BatchNorm1d(16), nn.ReLU(),
                              nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 5))
            shape, layout = (8, 24), "NCW"
        else:
            raise KeyError(name)
        g = torch.Generator().manual_seed(seed_of(f"norms:{name}"))
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, nn.LayerNorm):
                    mod.weight.copy_(1 + 0.2 * torch.randn(mod.weight.shape, generator=g))
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
                if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    mod.weight.copy_(0.5 + torch.rand(mod.weight.shape, generator=g))
                    mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
            if any(isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) for mod in m.modules()):
                m.train()
                for _ in range(5):
                    m(2 * torch.randn((16,) + shape, generator=g) + 0.5)
        return m.eval(), shape, layout

    tv = torch.__version__.split("+")[0]
    exporters = {
        "ts": (f"torch {tv} TorchScript exporter (torch.onnx.export dynamo=False, default "
               "opset)", dict(dynamo=False)),
        "ts17": (f"torch {tv} TorchScript exporter (torch.onnx.export dynamo=False, "
                 "opset_version=17)", dict(dynamo=False, opset_version=17)),
        "ts16": (f"torch {tv} TorchScript exporter (torch.onnx.export dynamo=False, "
                 "opset_version=16)", dict(dynamo=False, opset_version=16)),
        "dynamo": (f"torch {tv} dynamo exporter (torch.onnx.export dynamo=True, default "
                   "opset, optimize=True)", dict(dynamo=True)),
        "ts_nofold": (f"torch {tv} TorchScript exporter (torch.onnx.export dynamo=False, "
                      "default opset, do_constant_folding=False)",
                      dict(dynamo=False, do_constant_folding=False)),
        "dynamo_noopt": (f"torch {tv} dynamo exporter (torch.onnx.export dynamo=True, "
                         "default opset, optimize=False)", dict(dynamo=True, optimize=False)),
    }
    for name in TORCH_MODELS:
        m, shape, layout = build(name)
        for ex in TORCH_EXPORTS:
            case = f"{name}.{ex}"
            if case not in PARTS["torch"]:
                continue
            x = make_input(case, 0, shape)
            with torch.no_grad():
                y = m(torch.from_numpy(x)).numpy().astype(np.float32)
            check_nontrivial(case, y)
            desc, kw = exporters[ex]
            with tempfile.TemporaryDirectory() as td:
                tmp = Path(td) / f"{case}.onnx"
                try:
                    torch.onnx.export(m, (torch.from_numpy(x),), str(tmp), **kw)
                except Exception as e:  # noqa: BLE001
                    fail(case, "torch", desc, e)
                    continue
                extra_files = sorted(p.name for p in Path(td).iterdir() if p.name != tmp.name)
                resaved = place_model(tmp, OUT / f"{case}.onnx", PREVIOUS.get(f"{case}.onnx"))
            onnx_model = onnx.load(str(OUT / f"{case}.onnx"))
            out_names = [o.name for o in onnx_model.graph.output]
            notes = []
            if resaved:
                notes.append(f"the exporter wrote external data ({', '.join(extra_files)}); "
                             "re-saved with onnx.save, every tensor inline")
            if name == "torch_conv1d_ncw":
                notes.append("layout-critical: Flatten of [N, 24 channels, 24 steps] is "
                             "channel-major (index c * 24 + w) before Linear(576, 10)")
            if name == "torch_conv1d_nwc":
                notes.append("input is NWC; the model transposes to NCW itself")
            if name == "torch_conv1d_bn":
                notes.append("BatchNorm1d in eval mode with running stats from 5 train batches"
                             + ("; the exporter folded it into the Conv weights" if
                                "BatchNormalization" not in op_list(onnx_model) else
                                "; BatchNormalization node kept"))
            record(case, "torch", [(x, layout)], {out_names[0]: y}, desc, "; ".join(notes),
                   resaved)
    return {"torch": torch.__version__, "onnxscript": dist_version("onnxscript"),
            "onnx_ir": dist_version("onnx-ir"), **common_versions()}


# ------------------------------------------------------------------------------ sklearn
def part_sklearn():
    import sklearn
    import skl2onnx
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification, make_regression
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    warnings.filterwarnings("ignore")

    def cls_data(name, n_classes):
        X, y = make_classification(n_samples=300, n_features=10, n_informative=6,
                                   n_redundant=2, n_classes=n_classes,
                                   n_clusters_per_class=1,
                                   random_state=seed_of(f"data:{name}") % 2**31)
        return X.astype(np.float32), y

    def save(onx, case):
        (OUT / f"{case}.onnx").write_bytes(onx.SerializeToString())

    desc = f"skl2onnx {skl2onnx.__version__} to_onnx (scikit-learn {sklearn.__version__})"

    X, y = cls_data("skl_mlp_classifier", 3)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0).fit(X, y)
    for case, opts in (("skl_mlp_classifier", {id(clf): {"zipmap": False}}),
                       ("skl_mlp_classifier_zipmap", None)):
        x = make_input(case, 0, (10,))
        label = clf.predict(x).astype(np.int64)
        proba = clf.predict_proba(x).astype(np.float32)
        check_nontrivial(case, proba)
        save(to_onnx(clf, X[:1], options=opts), case)
        outs = [o.name for o in onnx.load(str(OUT / f"{case}.onnx")).graph.output]
        if opts:
            exp = {outs[0]: label, outs[1]: proba}
            notes = (f"zipmap=False; train accuracy {clf.score(X, y):.3f}; classes "
                     f"{clf.classes_.tolist()}; labels of the 4 inputs {label.tolist()}")
        else:
            exp = {outs[0]: label}
            notes = (f"default options: outputs {outs}; {outs[1]} is a ZipMap "
                     "seq(map(int64, float)) with no expected file: the runtime must refuse "
                     f"that output by name, but may serve {outs[0]} when only it is "
                     "requested; "
                     f"labels {label.tolist()}")
        record(case, "sklearn", [(x, "features")], exp, desc + (
            ", options zipmap=False" if opts else ", default options (ZipMap)"), notes,
            classes=clf.classes_.tolist(), framework_probabilities=proba.tolist())

    case = "skl_mlp_regressor"
    Xr, yr = make_regression(n_samples=300, n_features=10, n_informative=8, noise=0.5,
                             random_state=seed_of(f"data:{case}") % 2**31)
    Xr = Xr.astype(np.float32)
    yr = ((yr - yr.mean()) / yr.std()).astype(np.float32)
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=500, random_state=0).fit(Xr, yr)
    x = make_input(case, 0, (10,))
    onx = to_onnx(reg, Xr[:1])
    save(onx, case)
    go = onnx.load(str(OUT / f"{case}.onnx")).graph.output[0]
    p = reg.predict(x).astype(np.float32)
    dims = onnx_shape(go.type)
    y = p.reshape(BATCH, 1) if dims is not None and len(dims) == 2 else p
    check_nontrivial(case, y)
    record(case, "sklearn", [(x, "features")], {go.name: y}, desc,
           f"target standardised; train R^2 {reg.score(Xr, yr):.3f}; reg.predict gives "
           f"shape {list(p.shape)}, written as {list(y.shape)} (the declared ONNX shape "
           f"{dims})")

    case = "skl_mlp_classifier_binary"
    Xb, yb = cls_data(case, 2)
    clfb = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0).fit(Xb, yb)
    x = make_input(case, 0, (10,))
    label = clfb.predict(x).astype(np.int64)
    proba = clfb.predict_proba(x).astype(np.float32)
    check_nontrivial(case, proba)
    save(to_onnx(clfb, Xb[:1], options={id(clfb): {"zipmap": False}}), case)
    outs = [o.name for o in onnx.load(str(OUT / f"{case}.onnx")).graph.output]
    record(case, "sklearn", [(x, "features")], {outs[0]: label, outs[1]: proba},
           desc + ", options zipmap=False",
           f"binary: MLP has one logistic output unit; train accuracy {clfb.score(Xb, yb):.3f}; "
           f"labels {label.tolist()}", classes=clfb.classes_.tolist(),
           framework_probabilities=proba.tolist())
    return {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
            "scipy": dist_version("scipy"), **common_versions()}


# ----------------------------------------------------------------------------------- tf
def part_tf():
    import logging

    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.get_logger().setLevel("ERROR")
    import keras
    import tf2onnx
    import tf_keras

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    def randomize(model, name):
        rng = np.random.default_rng(seed_of(f"weights:{name}"))
        for layer in model.layers:
            ws = layer.get_weights()
            if not ws:
                continue
            kind = type(layer).__name__
            new = []
            for v, w in zip(layer.weights, ws):
                vn = v.name.split("/")[-1].split(":")[0]
                if vn == "kernel":
                    fan_in = int(np.prod(w.shape[:-1]))
                    a = rng.normal(0, 1 / np.sqrt(fan_in), w.shape)
                elif vn == "bias":
                    a = rng.normal(0, 0.1, w.shape)
                elif vn == "gamma":
                    a = rng.uniform(0.5, 1.5, w.shape)
                elif vn == "beta":
                    a = rng.normal(0, 0.2, w.shape)
                else:
                    raise ValueError(f"{kind} weight {v.name}")
                new.append(a.astype(np.float32))
            layer.set_weights(new)

    def conv_model(lib):
        L = lib.layers
        inp = lib.Input((24, 6))
        h = L.Conv1D(8, 3, padding="same", activation="relu")(inp)
        h = L.MaxPooling1D(2)(h)
        h = L.Conv1D(8, 3)(h)
        h = L.GlobalAveragePooling1D()(h)
        return lib.Model(inp, L.Dense(3, activation="softmax")(h))

    def mlp_ln_model(lib):
        L = lib.layers
        inp = lib.Input((16,))
        h = L.Dense(32, activation="relu")(inp)
        h = L.LayerNormalization()(h)
        return lib.Model(inp, L.Dense(4)(h))

    def framework_out(model, x):
        y = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
        check_nontrivial("tf", y)
        return y

    # 7./8. tf_keras + tf2onnx.convert.from_keras. These run first: Keras's model.export
    # calls keras.src.export.tf2onnx_lib.patch_tf2onnx(), which monkeypatches tf2onnx
    # for the rest of the process, and tf2onnx's name counters (unk__N, const_fold_opt__N)
    # run on across conversions in one process.
    for case, arch, builder, shape, layout in (
            ("tf2onnx_conv1d", "conv", conv_model, (24, 6), "NWC"),
            ("tf2onnx_mlp_ln", "mlp_ln", mlp_ln_model, (16,), "features")):
        desc = (f"tf2onnx {tf2onnx.__version__} convert.from_keras (tf_keras "
                f"{tf_keras.__version__}, TF {tf.__version__}, default opset)")
        tf_keras.backend.clear_session()
        m = builder(tf_keras)
        randomize(m, arch)
        x = make_input(case, 0, shape)
        y = framework_out(m, x)
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td) / f"{case}.onnx"
            try:
                tf2onnx.convert.from_keras(m, output_path=str(tmp))
            except Exception as e:  # noqa: BLE001
                fail(case, "tf", desc, e)
                continue
            resaved = place_model(tmp, OUT / f"{case}.onnx", PREVIOUS.get(f"{case}.onnx"))
        outs = [o.name for o in onnx.load(str(OUT / f"{case}.onnx")).graph.output]
        record(case, "tf", [(x, layout)], {outs[0]: y}, desc,
               f"tf_keras Functional model ({arch}); expected = model.predict"
               + ("; same weights as keras_conv1d.export" if arch == "conv" else ""), resaved)

    # 6. Keras 3 model.export(format="onnx")
    case = "keras_conv1d.export"
    desc = (f"keras {keras.__version__} model.export(format='onnx') (TF backend "
            f"{tf.__version__}, via tf2onnx {tf2onnx.__version__} convert.from_function)")
    keras.backend.clear_session()
    km = conv_model(keras)
    randomize(km, "conv")
    x = make_input(case, 0, (24, 6))
    y = framework_out(km, x)
    ok = True
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / f"{case}.onnx"
        try:
            km.export(str(tmp), format="onnx", verbose=False)
        except Exception as e:  # noqa: BLE001
            fail(case, "tf", desc, e)
            ok = False
        if ok:
            resaved = place_model(tmp, OUT / f"{case}.onnx", PREVIOUS.get(f"{case}.onnx"))
    if ok:
        outs = [o.name for o in onnx.load(str(OUT / f"{case}.onnx")).graph.output]
        record(case, "tf", [(x, "NWC")], {outs[0]: y}, desc,
               "Keras 3 Functional model, Input((24, 6)), softmax output, same weights as "
               "tf2onnx_conv1d; expected = model.predict; Keras applies its own "
               "patch_tf2onnx() (numpy 2 fixes) before calling tf2onnx", resaved)

    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "tf_keras": tf_keras.__version__, "tf2onnx": tf2onnx.__version__,
            "dist:tensorflow-cpu": dist_version("tensorflow-cpu"),
            "dist:tensorflow": dist_version("tensorflow"), **common_versions()}


# ------------------------------------------------------------------------------- graphs
def fmt_attr(a):
    v = onnx.helper.get_attribute_value(a)
    if a.type == onnx.AttributeProto.TENSOR:
        arr = numpy_helper.to_array(v)
        body = arr.tolist() if arr.size <= 8 else f"... {arr.size} elements"
        return f"{a.name}=tensor({arr.dtype},{list(arr.shape)},{body})"
    if a.type == onnx.AttributeProto.GRAPH:
        return f"{a.name}=<graph {len(v.node)} nodes>"
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if isinstance(v, list):
        v = [x.decode(errors="replace") if isinstance(x, bytes) else x for x in v]
        if len(v) > 12:
            v = v[:12] + [f"... {len(v)} values"]
    if isinstance(v, float):
        v = float(np.float32(v))
    return f"{a.name}={v}"


def dump_graph(case, path):
    m = onnx.load(str(path))
    g = m.graph
    lines = [f"==== {case['name']}  ({case['exporter']})",
             f"file {path.name} ({path.stat().st_size} bytes), producer {case['producer']}, "
             f"ir_version {m.ir_version}, opset_import "
             f"{[(o.domain or 'ai.onnx', o.version) for o in m.opset_import]}"]
    inits = {i.name: i for i in g.initializer}
    for i in g.input:
        tag = " (initializer)" if i.name in inits else ""
        lines.append(f"  input  {i.name!r}: {type_str(i.type)} {onnx_shape(i.type)}{tag}")
    for o in g.output:
        lines.append(f"  output {o.name!r}: {type_str(o.type)} {onnx_shape(o.type)}")
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        val = f" = {arr.ravel().tolist()}" if arr.size <= 8 else ""
        lines.append(f"  init   {t.name!r}: {arr.dtype} {list(arr.shape)}{val}")
    for n in g.node:
        dom = f"{n.domain}:" if n.domain else ""
        attrs = ", ".join(fmt_attr(a) for a in n.attribute)
        lines.append(f"  {dom}{n.op_type} [{n.name}] {list(n.input)} -> {list(n.output)}"
                     + (f"  {{{attrs}}}" if attrs else ""))
    if m.functions:
        lines.append(f"  functions: {[f.domain + ':' + f.name for f in m.functions]}")
    if m.metadata_props:
        lines.append(f"  model metadata_props: {[p.key for p in m.metadata_props]}")
    keys = sorted({p.key for n in g.node for p in n.metadata_props})
    if keys:
        lines.append(f"  node metadata_props keys: {keys}")
    return "\n".join(lines) + "\n"


def write_graphs(manifest, dest):
    parts = []
    for c in manifest["cases"]:
        parts.append(dump_graph(c, OUT / c["model"]))
    for f in manifest.get("export_failures", []):
        parts.append(f"==== EXPORT FAILURE {f['case']} ({f['exporter']}): {f['error']}\n")
    Path(dest).write_text("\n".join(parts))
    print(f"graphs -> {dest}")


# --------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=sorted(PARTS))
    ap.add_argument("--graphs", default="/tmp/exporter_graphs.txt")
    ap.add_argument("--graphs-only", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    mpath = OUT / "manifest.json"
    old = json.loads(mpath.read_text()) if mpath.exists() else {}
    if args.graphs_only:
        write_graphs(old, args.graphs)
        return
    if not args.part:
        ap.error("--part is required (or --graphs-only)")
    part = args.part
    mine = set(PARTS[part])
    for p in sorted(OUT.iterdir()):
        if any(p.name.startswith(c + ".") and
               re.fullmatch(r"onnx|(in|out)\d+\.npy", p.name[len(c) + 1:]) for c in mine):
            if p.suffix == ".onnx":
                PREVIOUS[p.name] = p.read_bytes()
            p.unlink()
    versions = {"torch": part_torch, "sklearn": part_sklearn, "tf": part_tf}[part]()
    cases = [c for c in old.get("cases", []) if c["name"] not in mine] + CASES
    cases.sort(key=lambda c: ORDER.index(c["name"]) if c["name"] in ORDER else len(ORDER))
    failures = [f for f in old.get("export_failures", []) if f["case"] not in mine] + FAILURES
    failures.sort(key=lambda f: ORDER.index(f["case"]) if f["case"] in ORDER else len(ORDER))
    manifest = {
        "generated_by": "scripts/make_exporter_fixtures.py (run once per part: --part torch "
                        "in /tmp/tvenv, --part sklearn in /tmp/venv, --part tf in /tmp/kvenv)",
        "batch": BATCH,
        "tolerance": TOL,
        "versions": dict(sorted({**old.get("versions", {}), part: versions}.items())),
        "cases": cases,
        "export_failures": failures,
    }
    mpath.write_text(json.dumps(manifest, indent=1) + "\n")
    write_graphs(manifest, args.graphs)
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
