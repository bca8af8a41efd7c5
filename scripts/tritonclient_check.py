#!/usr/bin/env python3
"""Talks to `sinter serve` with NVIDIA's `tritonclient[http]` (PyPI), unchanged: server and
model readiness, metadata, and three infers whose answers must equal `sinter run` of the same
input bit for bit: the client's defaults (binary tensors both ways), JSON tensors both ways,
and a versioned request with a binary input and a JSON output. Run by hand (needs Python with
tritonclient[http] and numpy):

    cargo run --release -- serve builtin:mnist-mlp --port 8000 &
    python scripts/tritonclient_check.py --port 8000

It writes the input to /tmp/sinter_tc_in.npy, runs `target/release/sinter run` on it for the
reference, and exits non-zero on any difference.
"""
import argparse
import subprocess
import sys

import numpy as np
import tritonclient.http as httpclient


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model", default="mnist-mlp")
    ap.add_argument("--spec", default="builtin:mnist-mlp", help="what `sinter run` loads")
    ap.add_argument("--sinter", default="target/release/sinter")
    args = ap.parse_args()

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{args.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(args.model)
    meta = client.get_model_metadata(args.model)
    inp, out = meta["inputs"][0], meta["outputs"][0]
    print("metadata:", inp, out)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *[d for d in inp["shape"][1:]])).astype(np.float32)
    np.save("/tmp/sinter_tc_in.npy", x)
    subprocess.run([args.sinter, "run", args.spec, "--input", "/tmp/sinter_tc_in.npy",
                    "--output", "/tmp/sinter_tc_out.npy"], check=True)
    want = np.load("/tmp/sinter_tc_out.npy")

    def infer(binary_in, binary_out, version=""):
        t = httpclient.InferInput(inp["name"], list(x.shape), "FP32")
        if binary_in is None:
            t.set_data_from_numpy(x)  # the default: binary
        else:
            t.set_data_from_numpy(x, binary_data=binary_in)
        outputs = None if binary_out is None else [
            httpclient.InferRequestedOutput(out["name"], binary_data=binary_out)]
        res = client.infer(args.model, [t], outputs=outputs, model_version=version)
        return res.as_numpy(out["name"]).astype(np.float32)

    same = True
    for label, got in [
        ("defaults (binary both ways)", infer(None, None)),
        ("JSON both ways", infer(False, False)),
        ("version 1, binary in, JSON out", infer(True, False, "1")),
    ]:
        ok = got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32))
        print(f"tritonclient infer, {label}: shape {got.shape}, bit-identical to `sinter run`: {ok}")
        same &= ok
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
