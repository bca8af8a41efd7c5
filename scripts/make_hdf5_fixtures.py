#!/usr/bin/env python3
"""Writes the small HDF5 fixtures that `src/io/hdf5.rs` tests read.

Run from the repository root with a Python that has h5py, numpy and keras:

    python scripts/make_hdf5_fixtures.py

Files land in tests/fixtures/hdf5/ (each well under 20 KB):

- basic.h5          nested groups, f32 datasets of rank 0..3, f64, f16, big-endian f32,
                    int32, an empty dataset, a compact dataset, fixed- and variable-length string attributes.
- chunked.h5        one chunked dataset (the reader must refuse it).
- many.h5           superblock v1; one group with 100 members and tiny B-tree K, so a
                    multi-level group B-tree over many SNOD nodes.
- latest.h5         the same kind of content written with libver='latest' (superblock 2/3,
                    object header v2); the reader may refuse it with a clear error.
- dense.h5          libver='latest' with dense storage: a group with 200 links (fractal heap
                    with an indirect root block, name index a v2 B-tree with internal nodes)
                    and a group with 24 attributes (dense attribute storage: vlen, fixed-length
                    and array string attributes, a numeric one).
- keras_tiny.weights.h5 + keras_tiny.json
                    a real Keras 3 `save_weights` file of a tiny Sequential model, with the
                    expected value of every dataset (path -> shape, values).

The layout of the Keras file (visititems, attributes included) is printed on stdout.
"""

import ctypes
import glob
import json
import os
import sys

import h5py
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "hdf5")


def arange(shape, dtype, scale=0.25, offset=-1.0):
    n = int(np.prod(shape)) if len(shape) else 1
    return (np.arange(n, dtype=np.float64) * scale + offset).astype(dtype).reshape(shape)


def write_basic(path):
    with h5py.File(path, "w", libver="earliest") as f:
        f.attrs["title"] = np.bytes_(b"fixture root")  # fixed-length ASCII string
        f.attrs["vlen_title"] = "variable root"  # variable-length UTF-8 string
        f.attrs["answer"] = np.int32(42)  # non-string attribute

        g = f.create_group("a/b/c")
        g.attrs["name"] = "deep group"
        g.create_dataset("leaf", data=np.array([1.5, -2.5], dtype=np.float32))

        d = f.create_group("data")
        d.create_dataset("scalar", data=np.float32(3.25))
        d.create_dataset("r1", data=arange((7,), np.float32))
        d.create_dataset("r2", data=arange((3, 4), np.float32))
        d.create_dataset("r3", data=arange((2, 3, 4), np.float32, scale=0.5))
        d.create_dataset("f64", data=arange((5,), np.float64, scale=0.1))
        d.create_dataset("f16", data=np.array([0.5, -1.0, 65504.0, 6.1035156e-05, 5.9604645e-08, 0.0, -0.0, 1.0 / 3.0], dtype=np.float16))
        d.create_dataset("f32be", data=arange((2, 2), ">f4"))
        d.create_dataset("f64be", data=arange((3,), ">f8"))
        d.create_dataset("i32", data=np.array([-3, 0, 7, 2**20], dtype=np.int32))
        d.create_dataset("u8", data=np.array([0, 1, 255], dtype=np.uint8))
        d.create_dataset("i64be", data=np.array([-5, 9], dtype=">i8"))
        d.create_dataset("empty", data=np.zeros((0,), dtype=np.float32))
        d.create_dataset("empty2", data=np.zeros((3, 0), dtype=np.float32))
        d.create_dataset("unwritten", shape=(4,), dtype=np.float32)  # never written: undefined address
        d.create_dataset("text", data=np.bytes_(b"not numeric"))

        # Compact layout through the low-level API.
        arr = arange((2, 3), np.float32, scale=1.0, offset=10.0)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple(arr.shape)
        dsid = h5py.h5d.create(d.id, b"compact", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, arr)

        v = f.create_group("layers/dense/vars")
        v.attrs["name"] = "dense"
        v.attrs["fixed_name"] = np.bytes_(b"dense_fixed")


def write_chunked(path):
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("chunked", data=arange((4, 4), np.float32), chunks=(2, 2))


def hdf5_library():
    """The libhdf5 h5py itself loaded (h5py does not wrap H5Pset_sym_k / H5Pset_istore_k)."""
    libs = glob.glob(os.path.join(os.path.dirname(h5py.__file__), "..", "h5py.libs", "libhdf5-*.so*"))
    if not libs:
        sys.exit("cannot find h5py's bundled libhdf5")
    return ctypes.CDLL(libs[0])


def write_many(path):
    # Small B-tree parameters (group internal-node K=2, SNOD leaf K=2) so 100 entries need a
    # multi-level group B-tree and many symbol table nodes; a non-default indexed-storage K makes
    # the library write superblock version 1. Members are hard links to a few datasets so the
    # file stays small.
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    lib = hdf5_library()
    if lib.H5Pset_sym_k(ctypes.c_int64(fcpl.id), ctypes.c_uint(2), ctypes.c_uint(2)) < 0:
        sys.exit("H5Pset_sym_k failed")
    if lib.H5Pset_istore_k(ctypes.c_int64(fcpl.id), ctypes.c_uint(64)) < 0:
        sys.exit("H5Pset_istore_k failed")
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)
    with h5py.File(fid) as f:
        g = f.create_group("many")
        targets = [g.create_dataset("m%03d" % i, data=np.array([i], dtype=np.float32)) for i in range(0, 100, 25)]
        for i in range(100):
            if i % 25:
                g["m%03d" % i] = targets[i // 25]


def write_latest(path):
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["title"] = "latest root"
        g = f.create_group("g")
        g.create_dataset("x", data=arange((2, 3), np.float32))


def write_dense(path):
    with h5py.File(path, "w", libver="latest") as f:
        g = f.create_group("wide")
        targets = [g.create_dataset("m%03d" % i, data=np.array([i], dtype=np.float32))
                   for i in range(0, 200, 50)]
        for i in range(200):
            if i % 50:
                g["m%03d" % i] = targets[i // 50]
        a = f.create_group("attrs")
        for i in range(20):
            a.attrs["s%02d" % i] = "value %d" % i
        a.attrs["fixed"] = np.bytes_("fixed-len")
        a.attrs["list"] = np.array([b"a", b"bc"])
        a.attrs["vlist"] = np.array(["x", "yz"], dtype=h5py.string_dtype())
        a.attrs["number"] = np.float32(1.5)


def visit_tree(path):
    lines = []

    def attrs_of(obj, indent):
        for k, val in obj.attrs.items():
            lines.append("%s@%s = %r" % (indent, k, val))

    with h5py.File(path, "r") as f:
        lines.append("/ (superblock v%d)" % f.id.get_create_plist().get_version()[0])
        attrs_of(f, "    ")

        def visit(name, obj):
            depth = name.count("/") + 1
            indent = "    " * depth
            if isinstance(obj, h5py.Dataset):
                lines.append("%s%s  dataset shape=%s dtype=%s layout=%s" % (
                    "    " * (depth - 1), name, obj.shape, obj.dtype, obj.id.get_create_plist().get_layout()))
            else:
                lines.append("%s%s/  group" % ("    " * (depth - 1), name))
            attrs_of(obj, indent)

        f.visititems(visit)
    return "\n".join(lines)


def write_keras(path, json_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(1234)
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(3),
        keras.layers.Dense(2, activation="relu"),
    ])
    # Non-zero biases so the test sees them.
    for layer in model.layers:
        k, b = layer.get_weights()
        layer.set_weights([k, (np.arange(b.size, dtype=np.float32) * 0.125 - 0.1).astype(np.float32)])
    model.save_weights(path)

    expected = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                expected[name] = {
                    "shape": list(a.shape),
                    "values": [float(x) for x in np.asarray(a, dtype=np.float64).ravel()],
                }
        f.visititems(visit)
    with open(json_path, "w") as fh:
        json.dump(expected, fh, indent=1, sort_keys=True)
        fh.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    write_basic(os.path.join(OUT, "basic.h5"))
    write_chunked(os.path.join(OUT, "chunked.h5"))
    write_many(os.path.join(OUT, "many.h5"))
    write_latest(os.path.join(OUT, "latest.h5"))
    write_dense(os.path.join(OUT, "dense.h5"))
    kpath = os.path.join(OUT, "keras_tiny.weights.h5")
    write_keras(kpath, os.path.join(OUT, "keras_tiny.json"))
    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        print("%-26s %6d bytes" % (name, size))
        if size >= 20 * 1024:
            sys.exit("fixture %s is too large" % name)
    print()
    print(visit_tree(kpath))


if __name__ == "__main__":
    main()
