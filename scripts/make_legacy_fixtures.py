#!/usr/bin/env python3
"""Golden-test fixtures for sinter's legacy Keras loaders: whole-model HDF5 written by
tf_keras (Keras 2) and by Keras 3's legacy HDF5 writer, tf_keras's own .keras zip, and
tf_keras model.to_json() + legacy HDF5 weights; plus hostile HDF5 files a loader must refuse.
Same conventions as scripts/make_fixtures.py and scripts/make_graph_fixtures.py.

What it makes (all in tests/fixtures/legacy/; nothing else is touched):
  NAME.tfk.h5            tf_keras model.save("NAME.tfk.h5"): whole-model HDF5 (root attrs
                         model_config / keras_version / backend, weights under model_weights/)
  NAME.tfk.keras         tf_keras model.save("NAME.tfk.keras"): tf_keras's own .keras zip
                         (metadata.json, config.json, model.weights.h5)
  NAME.tfk.json          tf_keras model.to_json()
  NAME.tfk.weights.h5    tf_keras model.save_weights() in the LEGACY HDF5 weights layout
                         (layer_names / weight_names attributes, NAME/NAME/kernel:0 datasets).
                         tf_keras 2.21 writes its new (saving_lib) layout for any path ending
                         in ".weights.h5", so the file is saved as ".tmp-NAME.tfk.h5" (legacy
                         writer, chosen by the plain ".h5" suffix) and renamed; tf_keras's own
                         load_weights() would pick the new-layout reader for this file name, so
                         to reload it in Python copy it to a name ending in plain ".h5" first.
  NAME.tfk.latest.h5     (deep only) tf_keras model.save(h5py.File("...", "w", libver="latest")):
                         the same whole-model layout with object header v2 and, past eight
                         layers, model_weights/ in dense link storage
  NAME.k3.h5             Keras 3 keras.saving.save_model(model, "NAME.k3.h5") (legacy HDF5
                         writer) of a Keras 3 twin holding the same weights
  NAME.in0.npy           float32 input, batch of 8, 2 * N(0, 1), seeded by crc32("input:NAME:0")
  NAME.<format>.out0.npy producer output, model.predict(x, verbose=0), float32, for format in
                         tfk.h5, tfk.keras, tfk.json (all three from the same tf_keras model)
                         and k3.h5 (the Keras 3 twin)
  hostile_*.h5           HDF5 files a loader must refuse, made by editing a tf_keras .h5 with
                         h5py (listed under "hostile" in the manifest with the reason)
  manifest.json          {"generated_by", "versions", "env", "batch", "cases": [{"name",
                         "model", "format", "weights" (tfk.json only), "input", "expected",
                         "producer", ...}], "hostile": [{"file", "why"}]}

Models: seed (784 -> Dense 32 tanh -> Activation relu -> Dense 8 softmax) as Functional
(`seed`), Sequential starting with Input (`seed_seq`) and Sequential whose first Dense has
input_shape=(784,) (`seed_seq_shape`, batch_input_shape in the tf_keras config); acts (Dense
chain relu, elu, selu, gelu, sigmoid, softmax); conv (Conv1D same/relu, MaxPooling1D,
Conv1D valid, GlobalAveragePooling1D, Dense); bn (Dense, BatchNormalization, relu, Dense
softmax) as Functional (`bn`) and Sequential (`bn_seq`); deep (10 Dense(12) cycling tanh,
relu, sigmoid, elu, linear, then Dense(3) softmax), also saved as tfk.latest.h5; norms
(Normalization with set mean/variance/count, Dense relu, LayerNormalization, Dense); embed
(Sequential: Embedding(20, 8) over 6 ids given as whole floats in [0, 20), LayerNormalization,
GlobalAveragePooling1D, Dense softmax).

Weights are not Keras's default init; every variable is set with set_weights from a NumPy
generator seeded by crc32("weights:MODEL"), in model.layers order and each layer's weights
order: Dense / Conv1D kernels N(0, 1/sqrt(fan_in)) (fan_in = k * cin for Conv1D), biases
N(0, 0.1), BatchNormalization gamma U(0.5, 1.5), beta N(0, 0.2), moving_mean N(0, 0.5),
moving_variance U(0.3, 2.0), embeddings N(0, 0.5), Normalization mean N(0, 0.5), variance
U(0.5, 2.0), count 100. MODEL is the architecture: seed_seq and seed_seq_shape use the
generator of seed, bn_seq that of bn, so the variants hold the same weights (their inputs
differ: each NAME has its own). The Keras 3 twin gets the very same float32 arrays.

Run (from the repo root; regenerates everything, deterministic):
    /tmp/kvenv/bin/python scripts/make_legacy_fixtures.py [--notes /tmp/legacy_notes.md]
The venv: tensorflow-cpu 2.21.0, keras 3.15.1, h5py 3.14.0, numpy 2.4.6, plus
`pip install tf_keras==2.21.0` (which also pulls the `tensorflow` 2.21.0 distribution into the
same site-packages); the versions actually used are recorded in manifest.json.
TF_ENABLE_ONEDNN_OPTS=0 and one TensorFlow thread (inter and intra op), for determinism.
Each saved file is reloaded by its producer (tf_keras / Keras 3) and must reproduce the
written output exactly.

Reruns are byte-identical: the .npy/.json files and the HDF5 files written by tf_keras,
Keras 3 and h5py here carry no timestamps or ids (h5py does not track object times by default,
and the configs of these models hold no Python id()s). A .keras zip does change on every save
(metadata.json's date_saved and the zip timestamp of model.weights.h5), so an existing
NAME.tfk.keras is kept when a fresh model.save() differs only in those.

With --notes PATH it also writes a Markdown file for whoever writes the Rust loader: the HDF5
trees of seed.tfk.h5, seed_seq.tfk.h5, seed.k3.h5, seed.tfk.weights.h5 and bn.tfk.h5 with
every attribute's HDF5 type (string class, fixed / variable length, char set, padding,
dataspace, size), object header versions and attribute storage, superblock versions, the root
model_config JSON of seed.tfk.h5, seed_seq_shape.tfk.h5 and seed.k3.h5, config.json and
metadata.json of seed.tfk.keras, one layer's inbound_nodes per dialect, and cross-loads
(tf_keras reading Keras 3's .h5 and the other way round).
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["KERAS_BACKEND"] = "tensorflow"

import argparse  # noqa: E402
import importlib.metadata as md  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)

import tf_keras  # noqa: E402
import keras  # noqa: E402

tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore", message=".*HDF5 file.*")  # "legacy format" nags on .h5 save
warnings.filterwarnings("ignore", message=".*input_shape.*")  # Keras 3 on Dense(input_shape=)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "legacy"
BATCH = 8
INPUT_SCALE = 2.0
LIBS = {"tfk": tf_keras, "k3": keras}
FORMATS = ["tfk.h5", "tfk.keras", "tfk.json", "k3.h5"]
# Dense(16, gelu) in acts if tf_keras knows gelu, else swish (recorded in the manifest)
ACTS_4 = "gelu" if hasattr(tf_keras.activations, "gelu") else "swish"

CASES = []
HOSTILE = []


def seed_of(name):
    return zlib.crc32(name.encode())


# ----------------------------------------------------------------------------- models
# NAME -> (architecture whose weight generator it uses, input shape, graph kind)
MODELS = {
    "seed": ("seed", (784,), "functional"),
    "seed_seq": ("seed", (784,), "sequential, Input first"),
    "seed_seq_shape": ("seed", (784,), "sequential, first Dense has input_shape=(784,)"),
    "acts": ("acts", (16,), "functional"),
    "conv": ("conv", (24, 6), "functional"),
    "bn": ("bn", (32,), "functional"),
    "bn_seq": ("bn", (32,), "sequential, Input first"),
    "deep": ("deep", (12,), "functional, 11 Dense layers"),
    "norms": ("norms", (10,), "functional"),
    "embed": ("embed", (6,), "sequential, Input first"),
}
# Models also saved through h5py.File(..., libver="latest") (format tfk.latest.h5): more than
# eight layers, so model_weights/ is a group in dense link storage (fractal heap + v2 B-tree).
LATEST = {"deep"}


def build(lib, name):
    """The model NAME built with `lib` (tf_keras or keras), after a clear_session so layer
    names restart at dense, dense_1, ..."""
    lib.backend.clear_session()
    L = lib.layers
    if name == "seed":
        i = lib.Input((784,))
        h = L.Dense(32, activation="tanh")(i)
        h = L.Activation("relu")(h)
        return lib.Model(i, L.Dense(8, activation="softmax")(h))
    if name == "seed_seq":
        return lib.Sequential([lib.Input((784,)), L.Dense(32, activation="tanh"),
                               L.Activation("relu"), L.Dense(8, activation="softmax")])
    if name == "seed_seq_shape":
        return lib.Sequential([L.Dense(32, activation="tanh", input_shape=(784,)),
                               L.Activation("relu"), L.Dense(8, activation="softmax")])
    if name == "acts":
        i = lib.Input((16,))
        h = i
        for act in ("relu", "elu", "selu", ACTS_4):
            h = L.Dense(16, activation=act)(h)
        h = L.Dense(8, activation="sigmoid")(h)
        return lib.Model(i, L.Dense(4, activation="softmax")(h))
    if name == "conv":
        i = lib.Input((24, 6))
        h = L.Conv1D(8, 3, padding="same", activation="relu")(i)
        h = L.MaxPooling1D(2)(h)
        h = L.Conv1D(8, 3)(h)
        h = L.GlobalAveragePooling1D()(h)
        return lib.Model(i, L.Dense(3)(h))
    if name == "bn":
        i = lib.Input((32,))
        h = L.Dense(64)(i)
        h = L.BatchNormalization()(h)
        h = L.Activation("relu")(h)
        return lib.Model(i, L.Dense(10, activation="softmax")(h))
    if name == "deep":
        i = lib.Input((12,))
        h = i
        for k in range(10):
            h = L.Dense(12, activation=("tanh", "relu", "sigmoid", "elu", "linear")[k % 5])(h)
        return lib.Model(i, L.Dense(3, activation="softmax")(h))
    if name == "norms":
        i = lib.Input((10,))
        h = L.Normalization()(i)
        h = L.Dense(16, activation="relu")(h)
        h = L.LayerNormalization()(h)
        return lib.Model(i, L.Dense(4)(h))
    if name == "embed":
        return lib.Sequential([lib.Input((6,)), L.Embedding(20, 8), L.LayerNormalization(),
                               L.GlobalAveragePooling1D(), L.Dense(3, activation="softmax")])
    if name == "bn_seq":
        return lib.Sequential([lib.Input((32,)), L.Dense(64), L.BatchNormalization(),
                               L.Activation("relu"), L.Dense(10, activation="softmax")])
    raise ValueError(name)


def var_name(v):
    """'dense/kernel:0' (tf_keras) or 'kernel' (Keras 3) -> 'kernel'."""
    return v.name.split("/")[-1].split(":")[0]


def draw(rng, layer, v):
    shape = tuple(int(d) for d in v.shape)
    n = var_name(v)
    if n == "kernel":
        return rng.standard_normal(shape) / math.sqrt(int(np.prod(shape[:-1])))
    if n == "bias":
        return rng.standard_normal(shape) * 0.1
    if n == "gamma":
        return rng.uniform(0.5, 1.5, shape)
    if n == "beta":
        return rng.standard_normal(shape) * 0.2
    if n == "moving_mean":
        return rng.standard_normal(shape) * 0.5
    if n == "moving_variance":
        return rng.uniform(0.3, 2.0, shape)
    if n == "embeddings":
        return rng.standard_normal(shape) * 0.5
    if n == "mean":
        return rng.standard_normal(shape) * 0.5
    if n == "variance":
        return rng.uniform(0.5, 2.0, shape)
    if n == "count":
        return np.full(shape, 100)
    raise ValueError(f"no distribution for {type(layer).__name__}.{n}")


def weighted(model):
    return [layer for layer in model.layers if layer.weights]


def randomize(model, arch):
    """Sets every variable from the generator of `arch`; returns [[arrays] per layer]."""
    rng = np.random.default_rng(seed_of("weights:" + arch))
    out = []
    for layer in weighted(model):
        vals = [draw(rng, layer, v).astype(np.float32) for v in layer.weights]
        layer.set_weights(vals)
        out.append(vals)
    return out


def copy_weights(model, params):
    layers = weighted(model)
    assert len(layers) == len(params), (len(layers), len(params))
    for layer, vals in zip(layers, params):
        want = [tuple(int(d) for d in v.shape) for v in layer.weights]
        assert want == [v.shape for v in vals], (layer.name, want)
        layer.set_weights(vals)
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # Keras 3 computes mean/variance from the adapt state here


def make_input(name, shape):
    rng = np.random.default_rng(seed_of(f"input:{name}:0"))
    if name == "embed":  # token ids as whole floats, as Keras casts them
        x = np.ascontiguousarray(rng.integers(0, 20, (BATCH, *shape)).astype(np.float32))
    else:
        x = np.ascontiguousarray((rng.standard_normal((BATCH, *shape)) * INPUT_SCALE)
                                 .astype(np.float32))
    np.save(OUT / f"{name}.in0.npy", x)
    return x


def predict(model, x):
    return np.ascontiguousarray(np.asarray(model.predict(x, verbose=0), dtype=np.float32))


def maxabs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ----------------------------------------------------------------------------- saving
def _keras_zip_key(path):
    """A .keras zip minus what changes on every save: metadata.json's date_saved, zip
    member timestamps, and (if any) config.json shared_object_id numbers."""
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


def save_keras_zip(model, fname):
    """model.save() to a .keras zip, keeping an existing file if only volatile parts differ."""
    path = OUT / fname
    tmp = OUT / f".tmp-{fname}"
    model.save(tmp)
    if path.exists() and _keras_zip_key(path) == _keras_zip_key(tmp):
        tmp.unlink()
    else:
        tmp.replace(path)


def save_legacy_weights(model, fname):
    """tf_keras save_weights in the legacy HDF5 layout under a name ending in .weights.h5."""
    tmp = OUT / f".tmp-{fname.removesuffix('.weights.h5')}.h5"
    model.save_weights(tmp)  # plain ".h5" -> legacy hdf5_format writer
    with h5py.File(tmp, "r") as f:
        assert "layer_names" in f.attrs, "expected the legacy weights layout"
    tmp.replace(OUT / fname)


def load_legacy_weights(model, path):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.h5"
        shutil.copyfile(path, p)
        model.load_weights(p)


def record(name, fmt, model_file, producer, y, arch, kind, **extra):
    expected = f"{name}.{fmt}.out0.npy"
    np.save(OUT / expected, y)
    entry = {"name": f"{name}.{fmt}", "model": model_file, "format": fmt}
    if fmt == "tfk.json":
        entry["weights"] = f"{name}.tfk.weights.h5"
    entry.update({"input": f"{name}.in0.npy", "expected": expected, "producer": producer,
                  "architecture": arch, "graph": kind,
                  "input_shape": [BATCH, *MODELS[name][1]], "output_shape": list(y.shape)})
    entry.update(extra)
    CASES.append(entry)


def case(name):
    arch, in_shape, kind = MODELS[name]
    x = make_input(name, in_shape)
    tv = tf_keras.__version__
    extra = {"activation_4": ACTS_4} if name == "acts" else {}

    # ---- tf_keras: .h5, .keras, .json + legacy weights
    m = build(tf_keras, name)
    params = randomize(m, arch)
    y = predict(m, x)
    m.save(OUT / f"{name}.tfk.h5")
    save_keras_zip(m, f"{name}.tfk.keras")
    (OUT / f"{name}.tfk.json").write_text(m.to_json())
    save_legacy_weights(m, f"{name}.tfk.weights.h5")

    got = predict(tf_keras.models.load_model(OUT / f"{name}.tfk.h5"), x)
    assert maxabs(got, y) == 0.0, (name, "tfk.h5 reload", maxabs(got, y))
    record(name, "tfk.h5", f"{name}.tfk.h5", f"tf_keras {tv} model.save (HDF5)", y, arch,
           kind, **extra)

    got = predict(tf_keras.models.load_model(OUT / f"{name}.tfk.keras"), x)
    assert maxabs(got, y) == 0.0, (name, "tfk.keras reload", maxabs(got, y))
    record(name, "tfk.keras", f"{name}.tfk.keras", f"tf_keras {tv} model.save (.keras zip)",
           y, arch, kind, **extra)

    tf_keras.backend.clear_session()
    m2 = tf_keras.models.model_from_json((OUT / f"{name}.tfk.json").read_text())
    load_legacy_weights(m2, OUT / f"{name}.tfk.weights.h5")
    got = predict(m2, x)
    assert maxabs(got, y) == 0.0, (name, "tfk.json reload", maxabs(got, y))
    record(name, "tfk.json", f"{name}.tfk.json",
           f"tf_keras {tv} model.to_json + model.save_weights (legacy HDF5 layout)", y, arch,
           kind, **extra)

    if name in LATEST:
        with h5py.File(OUT / f"{name}.tfk.latest.h5", "w", libver="latest") as f:
            m.save(f)
        got = predict(tf_keras.models.load_model(OUT / f"{name}.tfk.latest.h5"), x)
        assert maxabs(got, y) == 0.0, (name, "tfk.latest.h5 reload", maxabs(got, y))
        record(name, "tfk.latest.h5", f"{name}.tfk.latest.h5",
               f"tf_keras {tv} model.save into h5py.File(libver='latest')", y, arch, kind,
               **extra)

    # ---- Keras 3 twin, same weights, legacy HDF5 writer
    k = build(keras, name)
    copy_weights(k, params)
    yk = predict(k, x)
    keras.saving.save_model(k, OUT / f"{name}.k3.h5")
    got = predict(keras.saving.load_model(OUT / f"{name}.k3.h5"), x)
    assert maxabs(got, yk) == 0.0, (name, "k3.h5 reload", maxabs(got, yk))
    record(name, "k3.h5", f"{name}.k3.h5",
           f"keras {keras.__version__} keras.saving.save_model (legacy HDF5)", yk, arch, kind,
           max_abs_vs_tfk=maxabs(yk, y), **extra)


# ---------------------------------------------------------------------------- hostile
def hostile_truncated_config():
    src, dst = OUT / "acts.tfk.h5", OUT / "hostile_truncated_config.h5"
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        cfg = f.attrs["model_config"]
        cfg = cfg.decode() if isinstance(cfg, bytes) else cfg
        cut = cfg[: len(cfg) // 2]
        json_ok = True
        try:
            json.loads(cut)
        except json.JSONDecodeError:
            json_ok = False
        assert not json_ok
        before = type_desc(f.attrs.get_id("model_config").get_type())
        f.attrs["model_config"] = cut.encode()  # same HDF5 type as tf_keras writes (bytes)
        assert type_desc(f.attrs.get_id("model_config").get_type()) == before
    HOSTILE.append({"file": dst.name, "why": (
        f"acts.tfk.h5 whose root model_config attribute is cut to its first {len(cut)} of "
        f"{len(cfg)} characters: truncated JSON, must be a parse error, not a panic")})


def hostile_kernel_shape():
    src, dst = OUT / "seed.tfk.h5", OUT / "hostile_kernel_shape.h5"
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        assert cfg["config"]["layers"][1]["config"]["units"] == 32
        path = "model_weights/dense/dense/kernel:0"
        k = f[path][()]
        assert k.shape == (784, 32)
        del f[path]
        f.create_dataset(path, data=np.ascontiguousarray(k[:, :31]))
    HOSTILE.append({"file": dst.name, "why": (
        "seed.tfk.h5 whose model_weights/dense/dense/kernel:0 is 784x31 while the config "
        "says Dense(32) and the bias is 32: weight shape does not match the config")})


def hostile_no_layer_names():
    src, dst = OUT / "acts.tfk.h5", OUT / "hostile_no_layer_names.h5"
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        del f["model_weights"].attrs["layer_names"]
    HOSTILE.append({"file": dst.name, "why": (
        "acts.tfk.h5 with the layer_names attribute of model_weights/ removed: layer_names "
        "is what says which groups under model_weights/ are layers (top_level_model_weights "
        "is not); the loader must refuse with a clear error")})


# ------------------------------------------------------------------------- versions
def dist_version(d):
    try:
        return md.version(d)
    except md.PackageNotFoundError:
        return None


def tool_versions():
    return {
        "tf_keras": tf_keras.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "dist:tensorflow": dist_version("tensorflow"),
        "dist:tensorflow-cpu": dist_version("tensorflow-cpu"),
        "dist:tf_keras": dist_version("tf_keras"),
    }


# ------------------------------------------------------------------------------ notes
H5T_CLASS = {getattr(h5py.h5t, n): n for n in (
    "INTEGER", "FLOAT", "TIME", "STRING", "BITFIELD", "OPAQUE", "COMPOUND", "REFERENCE",
    "ENUM", "VLEN", "ARRAY")}
CSET = {h5py.h5t.CSET_ASCII: "ASCII", h5py.h5t.CSET_UTF8: "UTF-8"}
STRPAD = {h5py.h5t.STR_NULLTERM: "NULLTERM", h5py.h5t.STR_NULLPAD: "NULLPAD",
          h5py.h5t.STR_SPACEPAD: "SPACEPAD"}
SPACE = {h5py.h5s.SCALAR: "scalar", h5py.h5s.SIMPLE: "simple", h5py.h5s.NULL: "null"}
LAYOUT = {h5py.h5d.COMPACT: "compact", h5py.h5d.CONTIGUOUS: "contiguous",
          h5py.h5d.CHUNKED: "chunked"}


def type_desc(t):
    cls = t.get_class()
    d = {"class": H5T_CLASS.get(cls, str(cls)), "size": t.get_size()}
    if cls == h5py.h5t.STRING:
        d["vlen"] = bool(t.is_variable_str())
        d["cset"] = CSET.get(t.get_cset(), t.get_cset())
        d["strpad"] = STRPAD.get(t.get_strpad(), t.get_strpad())
    elif cls in (h5py.h5t.INTEGER, h5py.h5t.FLOAT):
        d["order"] = "LE" if t.get_order() == h5py.h5t.ORDER_LE else "BE"
    return d


def short(v, n=160):
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v.tolist()]
    s = repr(v)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


def attr_lines(obj, indent):
    out = []
    for name in obj.attrs:
        aid = obj.attrs.get_id(name)
        t = type_desc(aid.get_type())
        sp = aid.get_space()
        kind = SPACE.get(sp.get_simple_extent_type(), "?")
        shape = aid.shape
        if t["class"] == "STRING":
            ty = (f"STRING {'variable-length' if t['vlen'] else 'fixed-length'} "
                  f"cset={t['cset']} strpad={t['strpad']} type_size={t['size']}")
        else:
            ty = f"{t['class']} size={t['size']} {t.get('order', '')}".rstrip()
        try:
            ssize = f"{aid.get_storage_size()} B"
        except RuntimeError:  # H5Aget_storage_size returns 0 (an error to h5py) for no data
            ssize = "0 B (empty)"
        pyval = obj.attrs[name]
        pyty = type(pyval).__name__ + (f"[{pyval.dtype}]" if isinstance(pyval, np.ndarray)
                                       else "")
        out.append(f"{indent}@{name}: {ty}; dataspace {kind} shape={shape}; "
                   f"storage_size={ssize}; h5py value {pyty} = "
                   f"{short(pyval)}")
    return out


MSG_NAMES = {0x00: "NIL", 0x01: "dataspace", 0x02: "link-info", 0x03: "datatype",
             0x04: "fill-old", 0x05: "fill", 0x06: "link", 0x08: "layout", 0x0A: "group-info",
             0x0B: "filters", 0x0C: "attribute", 0x0D: "comment", 0x10: "continuation",
             0x11: "symbol-table", 0x12: "mtime", 0x15: "attr-info", 0x16: "refcount"}
DT_CLASS = {0: "fixed-point", 1: "float", 3: "string", 9: "vlen"}


class Raw:
    """Just enough of the on-disk format (superblock 0/1, object header v1) to list the
    messages of an object header; h5py does not expose message types or group storage."""

    def __init__(self, raw):
        self.b = raw
        assert raw[:8] == b"\x89HDF\r\n\x1a\n"
        self.sb = raw[8]
        if self.sb in (0, 1):
            self.so, self.sl = raw[13], raw[14]
        else:
            self.so, self.sl = raw[9], raw[10]

    def uint(self, at, n):
        return int.from_bytes(self.b[at:at + n], "little")

    def messages(self, addr):
        """[(type, size, flags, data_offset)] of the v1 object header at addr, or None."""
        b = self.b
        if b[addr] != 1:
            return None
        nmesgs = self.uint(addr + 2, 2)
        hsize = self.uint(addr + 8, 4)
        chunks = [(addr + 16, hsize)]
        out = []
        while chunks and len(out) < nmesgs:
            at, size = chunks.pop(0)
            end = at + size
            while at + 8 <= end and len(out) < nmesgs:
                mtype, msize, mflags = self.uint(at, 2), self.uint(at + 2, 2), b[at + 4]
                data = at + 8
                out.append((mtype, msize, mflags, data))
                if mtype == 0x10:
                    chunks.append((self.uint(data, self.so), self.uint(data + self.so, self.sl)))
                at = data + msize
        return out

    def attribute(self, data):
        """(message version, name, datatype class, datatype version, element size) of an
        attribute message starting at data (version 1 layout: fields padded to 8)."""
        b = self.b
        ver = b[data]
        nlen = self.uint(data + 2, 2)
        if ver == 1:
            name_at = data + 8
            dt = name_at + ((nlen + 7) // 8) * 8
        else:
            name_at = data + (9 if ver == 3 else 8)
            dt = name_at + nlen
        name = b[name_at:name_at + nlen].rstrip(b"\0").decode("utf-8", "replace")
        cls, dver = b[dt] & 0x0F, b[dt] >> 4
        esize = self.uint(dt + 4, 4)
        extra = ""
        if cls == 9:  # vlen: bits 0-3 type (1 = string), 4-7 padding, 8-11 cset
            bits = self.uint(dt + 1, 3)
            extra = (f" vlen-{'string' if bits & 0x0F == 1 else 'sequence'} "
                     f"pad={(bits >> 4) & 0x0F} cset={(bits >> 8) & 0x0F}")
        elif cls == 3:
            bits = self.uint(dt + 1, 3)
            extra = f" pad={bits & 0x0F} cset={(bits >> 4) & 0x0F}"
        return ver, name, f"{DT_CLASS.get(cls, cls)}(class {cls}, dt v{dver}){extra}", esize


def obj_header(obj, raw):
    info = h5py.h5o.get_info(obj.id)
    hdr = info.hdr
    ms = info.meta_size
    dense = ms.attr.heap_size > 0 or ms.attr.index_size > 0
    s = (f"ohdr v{hdr.version} @{info.addr}, {hdr.nmesgs} msgs in {hdr.nchunks} chunk(s), "
         f"{info.num_attrs} attrs ("
         f"{'DENSE attribute storage' if dense else 'attribute messages in the header'})")
    msgs = raw.messages(info.addr)
    if msgs is not None:
        s += "; messages: " + ", ".join(
            f"{MSG_NAMES.get(t, hex(t))}({n}B)" for t, n, _, _ in msgs if t != 0)
    return s, msgs


def attr_raw_lines(msgs, raw, indent):
    out = []
    for t, n, _, data in msgs or []:
        if t == 0x0C:
            ver, name, dt, esize = raw.attribute(data)
            out.append(f"{indent}  on disk: attribute message v{ver} ({n} B) '{name}': "
                       f"datatype {dt}, element size {esize} B")
    return out


def group_storage(msgs):
    if msgs is None:
        return "?"
    types = {t for t, _, _, _ in msgs}
    if 0x11 in types:
        return "symbol-table group (v1 B-tree + local heap)"
    if 0x02 in types:
        return "new-style group (link-info; compact link messages or dense fractal heap)"
    return "?"


def h5_dump(path):
    lines = []
    raw_bytes = path.read_bytes()
    raw = Raw(raw_bytes)
    with h5py.File(path, "r") as f:
        sb = f.id.get_create_plist().get_version()
        lines.append(f"file {path.name}: {len(raw_bytes)} bytes; superblock version {raw.sb} "
                     f"(byte 8; get_version() super/freelist/symtable/shared-header = {sb}); "
                     f"sizes of offsets/lengths {raw.so}/{raw.sl}; h5py libver {f.libver}")
        hdr, msgs = obj_header(f, raw)
        lines.append(f"/  group, {group_storage(msgs)}; {hdr}")
        lines.extend(attr_lines(f, "    "))
        lines.extend(attr_raw_lines(msgs, raw, "    "))

        def visit(name, o):
            hdr, msgs = obj_header(o, raw)
            if isinstance(o, h5py.Dataset):
                plist = o.id.get_create_plist()
                lay = LAYOUT.get(plist.get_layout(), "?")
                t = type_desc(o.id.get_type())
                lines.append(
                    f"/{name}  dataset shape={o.shape} dtype={o.dtype.str} "
                    f"({t['class']} size={t['size']} {t.get('order', '')}); layout {lay}, "
                    f"filters={plist.get_nfilters()}, data offset={o.id.get_offset()}, "
                    f"storage={o.id.get_storage_size()} B; {hdr}")
            else:
                lines.append(f"/{name}/  group, {group_storage(msgs)}; {hdr}")
            lines.extend(attr_lines(o, "    "))
            lines.extend(attr_raw_lines(msgs, raw, "    "))

        f.visititems(visit)
    return "\n".join(lines)


def root_config(path):
    with h5py.File(path, "r") as f:
        v = f.attrs["model_config"]
        return json.loads(v.decode() if isinstance(v, bytes) else v)


def layers_of(cfg):
    c = cfg["config"]
    return c["layers"]


def cross_loads():
    """tf_keras loading Keras 3's .h5 and Keras 3 loading tf_keras's .h5/.keras."""
    out = []
    for name in ("seed", "seed_seq", "seed_seq_shape", "acts", "conv", "bn", "bn_seq"):
        x = np.load(OUT / f"{name}.in0.npy")
        y = np.load(OUT / f"{name}.tfk.h5.out0.npy")
        for who, fn, fname in (
                ("tf_keras.models.load_model", tf_keras.models.load_model, f"{name}.k3.h5"),
                ("keras.saving.load_model", keras.saving.load_model, f"{name}.tfk.h5"),
                ("keras.saving.load_model", keras.saving.load_model, f"{name}.tfk.keras")):
            try:
                got = predict(fn(OUT / fname), x)
                res = f"loads; max |out - tfk out| = {maxabs(got, y):.3g}"
            except Exception as e:  # noqa: BLE001
                msg = str(e).strip().splitlines()
                res = f"FAILS: {type(e).__name__}: {msg[0][:200] if msg else ''}"
            out.append(f"- {who}({fname}): {res}")
    return "\n".join(out)


def attr_type_short(obj, name):
    aid = obj.attrs.get_id(name)
    t = type_desc(aid.get_type())
    shape = aid.shape
    dims = ("scalar" if shape == () else "empty 1-d array" if 0 in shape
            else f"{len(shape)}-d array")
    if t["class"] == "STRING":
        kind = "vlen" if t["vlen"] else f"fixed({t['size']})"
        return f"{kind} string {t['cset']} {t['strpad']}, {dims}"
    return f"{t['class'].lower()}{8 * t['size']} {dims}"


def attr_summary():
    seen = {}
    for p in sorted(OUT.glob("*.h5")):
        if p.name.startswith("hostile_"):
            continue
        fmt = ".".join(p.name.split(".")[1:])  # tfk.h5 / k3.h5 / tfk.weights.h5
        with h5py.File(p, "r") as f:
            wroot = f["model_weights"] if "model_weights" in f else f
            layers = {(x.decode() if isinstance(x, bytes) else x)
                      for x in wroot.attrs.get("layer_names", [])}

            def note(where, obj):
                for a in obj.attrs:
                    seen.setdefault((fmt, where, a), set()).add(attr_type_short(obj, a))

            note("/", f)
            if wroot is not f:
                note("/model_weights", wroot)
            for k in wroot:
                g = wroot[k]
                if not isinstance(g, h5py.Group):
                    continue
                if k not in layers:
                    where = f"{wroot.name.rstrip('/')}/{k} (not in layer_names)"
                elif len(g.attrs.get("weight_names", [])):
                    where = "layer group with weights"
                else:
                    where = "layer group without weights"
                note(where, g)
                g.visititems(lambda n, o: note("below a layer group", o))
    return [(k[0], k[1], k[2], v) for k, v in sorted(seen.items())]


def loader_facts():
    """Facts about the files here, each asserted over every (non-hostile) file it names."""
    facts = []
    h5s = [p for p in sorted(OUT.glob("*.h5")) if not p.name.startswith("hostile_")]
    sb = set()
    for p in h5s:
        raw = p.read_bytes()
        sb.add(raw[8])
        with h5py.File(p, "r") as f:
            whole = not p.name.endswith(".weights.h5")
            assert ("model_config" in f.attrs) == whole and ("model_weights" in f) == whole
            w = f["model_weights"] if whole else f
            names = [x.decode() if isinstance(x, bytes) else x for x in w.attrs["layer_names"]]
            assert sorted(w.keys()) == sorted(names + ["top_level_model_weights"]), p.name
            for ln in names:
                wn = [x.decode() if isinstance(x, bytes) else x
                      for x in w[ln].attrs["weight_names"]]
                for n in wn:
                    d = w[ln][n]  # weight_names are paths relative to the layer group
                    assert isinstance(d, h5py.Dataset) and d.dtype == np.dtype("<f4")
                    assert d.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
                    seq_k3 = ".k3." in p.name and "_seq" in p.name
                    assert n.startswith(("sequential/" if seq_k3 else "") + ln + "/"), (p.name, n)
                    assert n.endswith(":0") == (".tfk." in p.name), (p.name, n)
            if whole:
                cfg = root_config(p)
                cfg_names = [layer["config"]["name"] for layer in layers_of(cfg)]
                if cfg["class_name"] == "Sequential":
                    assert names == cfg_names[1:], (p.name, names, cfg_names)
                else:
                    assert names == cfg_names, (p.name, names, cfg_names)
    facts.append(f"All {len(h5s)} legacy .h5 files: superblock version(s) {sorted(sb)}, "
                 "object headers v1, symbol-table groups, float32 little-endian contiguous "
                 "datasets without filters: the subset src/io/hdf5.rs already reads.")
    facts.append("Weights live under `/model_weights/` in NAME.tfk.h5 and NAME.k3.h5 and at the "
                 "root of NAME.tfk.weights.h5; that group's `layer_names` (1-d vlen ASCII string "
                 "array) lists every layer in model.layers order and each layer has a group of "
                 "that name (plus an extra `top_level_model_weights` group with empty "
                 "weight_names, not in layer_names, to ignore).")
    facts.append("Each layer group's `weight_names` (1-d vlen ASCII string array, or an EMPTY "
                 "float64 array for a layer without weights) holds paths relative to the layer "
                 "group: dataset = `<weights root>/<layer>/<weight_name>`, e.g. "
                 "`/model_weights/dense/dense/kernel:0`. Do not derive the name from the layer: "
                 "weight_name is `<layer>/<var>` except in Keras 3 Sequential files, where it "
                 "is `sequential/<layer>/<var>` (dataset "
                 "`/model_weights/dense/sequential/dense/kernel` in seed_seq.k3.h5). "
                 "tf_keras names end in `:0` (`dense/kernel:0`), Keras 3 names do not "
                 "(`dense/kernel`); take the order from weight_names, not from the group listing "
                 "(HDF5 lists names sorted).")
    facts.append("Functional: layer_names == the config's layers (InputLayer included); "
                 "Sequential: the config's layers minus the leading InputLayer entry (both "
                 "tf_keras and Keras 3 write one, even for seed_seq_shape).")
    return facts


def write_notes(path):
    P = OUT
    N = []
    add = N.append
    add("# Legacy Keras fixtures: notes for the loader\n")
    add("Generated by scripts/make_legacy_fixtures.py --notes; files in tests/fixtures/legacy/.\n")
    add("Versions: `" + json.dumps(tool_versions()) + "`\n")

    add("## Summary: attribute types in every legacy .h5 here\n")
    add("Collected with h5py over all NAME.tfk.h5, NAME.k3.h5 and NAME.tfk.weights.h5 "
        "files (hostile files excluded). `vlen` = variable-length string (on disk a VLEN "
        "class-9 datatype whose elements are 4-byte length + global heap id), `fixed` = "
        "fixed-length string (class 3).\n")
    add("| format | where | attribute | HDF5 type(s) seen |")
    add("|---|---|---|---|")
    for fmt, where, name, types in attr_summary():
        add(f"| {fmt} | {where} | {name} | {'; '.join(sorted(types))} |")
    add("")

    add("## Checked facts for the loader\n")
    for line in loader_facts():
        add(f"- {line}")
    add("- From the tf_keras 2.21 / Keras 3.15 source (hdf5_format.save_attributes_to_hdf5_"
        "group / legacy_h5_format), NOT exercised by these small models: when layer_names or "
        "a weight_names list, as a NumPy array, exceeds 64512 bytes, it is written as "
        "`layer_names0`, `layer_names1`, ... (NumPy `|S` arrays, i.e. FIXED-length strings), "
        "and readers concatenate the chunks in order; a model that was compiled also has a "
        "root `training_config` attribute and an `optimizer_weights` group (ignore both).")
    add("")

    add("## HDF5 trees\n")
    add("Legend: `@name` is an attribute; `type_size` is the HDF5 datatype size (for a "
        "variable-length string that is the size of the vlen descriptor, the text itself "
        "lives in a global heap collection); `storage_size` is what H5Aget_storage_size "
        "reports for the attribute's data. Object header v1 has no dense attribute storage: "
        "all its attributes are messages in the header (possibly spread over continuation "
        "chunks).\n")
    for fname in ("seed.tfk.h5", "seed_seq.tfk.h5", "seed.k3.h5", "seed.tfk.weights.h5",
                  "bn.tfk.h5"):
        add(f"### {fname}\n\n```\n{h5_dump(P / fname)}\n```\n")

    add("## Root model_config JSON\n")
    for fname in ("seed.tfk.h5", "seed_seq_shape.tfk.h5", "seed.k3.h5"):
        add(f"### {fname}\n\n```json\n{json.dumps(root_config(P / fname), indent=2)}\n```\n")

    add("## seed.tfk.keras (tf_keras's own .keras zip)\n")
    with zipfile.ZipFile(P / "seed.tfk.keras") as z:
        add("Members:\n\n```")
        for i in z.infolist():
            add(f"{i.filename}  {i.file_size} bytes  compress_type={i.compress_type}  "
                f"date_time={i.date_time}")
        add("```\n")
        add("metadata.json (exact bytes; date_saved changes every save):\n\n```json\n"
            + z.read("metadata.json").decode() + "\n```\n")
        add("config.json (pretty-printed here; the file is one line):\n\n```json\n"
            + json.dumps(json.loads(z.read("config.json")), indent=2) + "\n```\n")
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            tree = []
            f.visititems(lambda n, o: tree.append(
                f"/{n}  " + (f"dataset shape={o.shape} dtype={o.dtype.str}"
                             if isinstance(o, h5py.Dataset) else "group")
                + "".join(f"  @{k}={short(v, 60)}" for k, v in o.attrs.items())))
            add("model.weights.h5 inside it (same layout as Keras 3's .keras, NOT the legacy "
                "layout):\n\n```\n" + "\n".join(tree) + "\n```\n")

    add("## inbound_nodes, one layer per dialect (the last Dense)\n")
    with zipfile.ZipFile(P / "seed.tfk.keras") as z:
        zcfg = json.loads(z.read("config.json"))
    for label, cfg in (("seed.tfk.h5 model_config", root_config(P / "seed.tfk.h5")),
                       ("seed.k3.h5 model_config", root_config(P / "seed.k3.h5")),
                       ("seed.tfk.keras config.json", zcfg),
                       ("seed.tfk.json", json.loads((P / "seed.tfk.json").read_text()))):
        last = layers_of(cfg)[-1]
        add(f"- {label}: layer `{last.get('name', last['config'].get('name'))}` "
            f"inbound_nodes = `{json.dumps(last.get('inbound_nodes'))}`; model "
            f"input_layers = `{json.dumps(cfg['config'].get('input_layers'))}`, "
            f"output_layers = `{json.dumps(cfg['config'].get('output_layers'))}`")
    add("- Sequential configs (seed_seq.*) have no inbound_nodes / input_layers: layers "
        "are a plain list; see the InputLayer / batch_input_shape below.\n")

    add("## Sequential dialects (first two layer entries)\n")
    for fname in ("seed_seq.tfk.h5", "seed_seq_shape.tfk.h5", "seed_seq.k3.h5",
                  "seed_seq_shape.k3.h5", "bn_seq.tfk.h5"):
        cfg = root_config(P / fname)
        add(f"### {fname}\n\n```json\n" + json.dumps(
            {"class_name": cfg["class_name"],
             "config": {k: v for k, v in cfg["config"].items() if k != "layers"},
             "layers[:2]": layers_of(cfg)[:2]}, indent=2) + "\n```\n")

    add("## Dense config keys, tf_keras vs Keras 3 (.h5 model_config)\n")
    t = layers_of(root_config(P / "seed.tfk.h5"))[1]
    k = layers_of(root_config(P / "seed.k3.h5"))[1]
    add(f"- tf_keras layer entry keys: {sorted(t)}; config keys: {sorted(t['config'])}")
    add(f"- Keras 3 layer entry keys: {sorted(k)}; config keys: {sorted(k['config'])}")
    add(f"- only in tf_keras: {sorted(set(t['config']) - set(k['config']))}; only in Keras 3: "
        f"{sorted(set(k['config']) - set(t['config']))}")
    for key in ("dtype", "kernel_initializer", "activation"):
        add(f"- `{key}`: tf_keras `{json.dumps(t['config'].get(key))}` vs Keras 3 "
            f"`{json.dumps(k['config'].get(key))}`")
    for fname in ("bn.tfk.h5", "bn.k3.h5", "conv.tfk.h5", "conv.k3.h5"):
        for layer in layers_of(root_config(P / fname)):
            if layer["class_name"] in ("BatchNormalization", "Conv1D", "MaxPooling1D"):
                add(f"- {fname} {layer['class_name']} config: `{json.dumps(layer['config'])}`")
    add("")

    add("## layer_names / weight_names\n")
    for fname, grp in (("seed.tfk.h5", "model_weights"), ("seed.tfk.weights.h5", "/"),
                       ("seed.k3.h5", "model_weights"), ("bn.tfk.h5", "model_weights")):
        with h5py.File(P / fname, "r") as f:
            g = f[grp]
            aid = g.attrs.get_id("layer_names")
            add(f"- {fname}: `layer_names` on `{g.name}`: {type_desc(aid.get_type())}, shape "
                f"{aid.shape}, values {short(g.attrs['layer_names'], 400)}")
            for ln in g.attrs["layer_names"]:
                ln = ln.decode() if isinstance(ln, bytes) else ln
                wg = g[ln]
                aid = wg.attrs.get_id("weight_names")
                wn = [w.decode() if isinstance(w, bytes) else w for w in wg.attrs["weight_names"]]
                ds = [f"{g.name.rstrip('/')}/{ln}/{w}" for w in wn]
                add(f"  - group `{wg.name}` `weight_names`: {type_desc(aid.get_type())}, shape "
                    f"{aid.shape}, values {wn} -> datasets "
                    + ", ".join(f"`{d}` {f[d].shape}" for d in ds))
    add("")

    add("## What tf_keras itself does with the hostile files\n")
    for h in HOSTILE:
        try:
            tf_keras.models.load_model(P / h["file"])
            res = "loads (!)"
        except Exception as e:  # noqa: BLE001
            msg = str(e).strip().splitlines()
            res = f"{type(e).__name__}: {msg[0][:200] if msg else ''}"
        add(f"- {h['file']}: {res}")
    add("")

    add("## Cross-loads\n")
    add(cross_loads() + "\n")
    Path(path).write_text("\n".join(N) + "\n")


# ------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--notes", help="also write Markdown notes for the loader to this path")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        case(name)
    hostile_truncated_config()
    hostile_kernel_shape()
    hostile_no_layer_names()

    manifest = {
        "generated_by": "scripts/make_legacy_fixtures.py",
        "versions": tool_versions(),
        "env": {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3",
                "KERAS_BACKEND": "tensorflow", "tf_threads": {"inter_op": 1, "intra_op": 1}},
        "batch": BATCH,
        "notes": [
            "inputs float32 2 * N(0, 1), batch-first, C order; outputs float32 from the "
            "producer's model.predict(x, verbose=0)",
            "tfk.h5 / tfk.keras / tfk.json outputs of one NAME come from the same tf_keras "
            "model; k3.h5 from a Keras 3 twin with the same float32 weights "
            "(max_abs_vs_tfk records the difference)",
            "NAME.tfk.weights.h5 is the LEGACY HDF5 weights layout despite the .weights.h5 "
            "suffix (tf_keras's load_weights would choose its new-layout reader by that "
            "suffix)",
            "seed_seq / seed_seq_shape share seed's weights, bn_seq shares bn's; inputs are "
            "per NAME",
            f"acts uses Dense(16, {ACTS_4}) as its fourth layer",
        ],
        "cases": CASES,
        "hostile": HOSTILE,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    print(json.dumps(manifest["versions"]))
    print(f"{'case':<28} {'out shape':<10} {'max|k3 - tfk|':>14}")
    for c in CASES:
        v = c.get("max_abs_vs_tfk")
        print(f"{c['name']:<28} {str(tuple(c['output_shape'])):<10} "
              f"{'' if v is None else f'{v:.2e}':>14}")
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"tests/fixtures/legacy: {len(list(OUT.iterdir()))} files, {total / 1024:.1f} KiB")
    if args.notes:
        write_notes(args.notes)
        print("notes:", args.notes)


if __name__ == "__main__":
    main()
