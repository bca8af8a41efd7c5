#!/usr/bin/env python3
"""The server a user might otherwise pick, for the README's side-by-side load test: FastAPI +
uvicorn wrapping ONNX Runtime, answering KServe v2 `infer` (the subset examples/loadtest.rs
sends). Run by hand:

    pip install fastapi uvicorn onnxruntime numpy
    python scripts/fastapi_ort_server.py MODEL.onnx --port 8001
    cargo run --release --example loadtest -- 8001 64 10 --no-check --model m --input-name input
"""
import argparse

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--port", type=int, default=8001)
args = ap.parse_args()

opts = ort.SessionOptions()
sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
out_name = sess.get_outputs()[0].name
app = FastAPI()


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    body = await request.json()
    t = body["inputs"][0]
    x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
    y = sess.run(None, {t["name"]: x})[0]
    return {"model_name": name, "outputs": [
        {"name": out_name, "datatype": "FP32", "shape": list(y.shape), "data": y.ravel().tolist()}]}


uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
