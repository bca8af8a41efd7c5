#!/usr/bin/env python3
"""Talks to `sinter serve --grpc-port` with NVIDIA's `tritonclient[grpc]` (PyPI), unchanged:
server liveness and readiness, model readiness, server and model metadata, infers whose
answers must equal `sinter run` of the same input bit for bit (raw tensors, as the client
sends them; a versioned request with an id; a requested output), and bad calls that must fail
with the right gRPC status. Run by hand (needs Python with tritonclient[grpc] and numpy):

    cargo run --release -- serve builtin:mnist-mlp --port 8000 --grpc-port 8001 &
    python scripts/tritonclient_grpc_check.py --port 8001

It writes the input to /tmp/sinter_tcg_in.npy, runs `target/release/sinter run` on it for the
reference, and exits non-zero on any difference.
"""
import argparse
import subprocess
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--model", default="mnist-mlp")
    ap.add_argument("--spec", default="builtin:mnist-mlp", help="what `sinter run` loads")
    ap.add_argument("--sinter", default="target/release/sinter")
    args = ap.parse_args()

    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{args.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(args.model)
    assert not client.is_model_ready("no-such-model")
    print("server metadata:", client.get_server_metadata(as_json=True))
    meta = client.get_model_metadata(args.model, as_json=True)
    inp, out = meta["inputs"][0], meta["outputs"][0]
    print("model metadata:", inp, out)

    rng = np.random.default_rng(0)
    dims = [int(d) for d in inp["shape"][1:]]
    x = rng.standard_normal((3, *dims)).astype(np.float32)
    np.save("/tmp/sinter_tcg_in.npy", x)
    subprocess.run([args.sinter, "run", args.spec, "--input", "/tmp/sinter_tcg_in.npy",
                    "--output", "/tmp/sinter_tcg_out.npy"], check=True)
    want = np.load("/tmp/sinter_tcg_out.npy")

    def infer(version="", request_id="", outputs=None, data=x):
        t = grpcclient.InferInput(inp["name"], list(data.shape), "FP32")
        t.set_data_from_numpy(data)
        outs = None if outputs is None else [grpcclient.InferRequestedOutput(o) for o in outputs]
        res = client.infer(args.model, [t], model_version=version, request_id=request_id,
                           outputs=outs)
        return res

    same = True
    for label, res in [
        ("defaults", infer()),
        ("version 1 with an id", infer("1", "req-7")),
        ("the output requested by name", infer(outputs=[out["name"]])),
    ]:
        got = res.as_numpy(out["name"]).astype(np.float32)
        ok = got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32))
        print(f"tritonclient.grpc infer, {label}: shape {got.shape}, id {res.get_response().id!r}, "
              f"bit-identical to `sinter run`: {ok}")
        same &= ok

    def status_of(f):
        try:
            f()
        except InferenceServerException as e:
            return e.status()
        return "OK"

    for label, f, want_status in [
        ("unknown model", lambda: client.infer("nope", [grpcclient.InferInput("x", [1], "FP32")]),
         "StatusCode.NOT_FOUND"),
        ("wrong shape", lambda: infer(data=x[:, :3]), "StatusCode.INVALID_ARGUMENT"),
        ("metadata of an unknown model", lambda: client.get_model_metadata("nope"),
         "StatusCode.NOT_FOUND"),
    ]:
        got = status_of(f)
        print(f"{label}: {got}")
        same &= got == want_status
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
