#!/usr/bin/env python3
"""The other server a user might pick, for the README's side-by-side load test: KServe's Python
model server (`kserve` from PyPI) with a model class wrapping ONNX Runtime, answering KServe v2
REST `infer` (JSON or binary tensors). Run by hand:

    pip install kserve onnxruntime numpy
    python scripts/kserve_ort_server.py MODEL.onnx --port 8002 --name m
    cargo run --release --example loadtest -- 8002 64 10 --no-check --model m --input-name input [--binary]
"""
import argparse
import uuid

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class OrtModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.out_name = self.sess.get_outputs()[0].name
        self.ready = True

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        t = payload.inputs[0]
        y = self.sess.run(None, {t.name: t.as_numpy()})[0]
        binary = bool((payload.parameters or {}).get("binary_data_output", False))
        out = InferOutput(name=self.out_name, shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=binary)
        return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id or str(uuid.uuid4()),
                             use_binary_outputs=binary)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--port", type=int, default=8002)
    ap.add_argument("--name", default="m")
    args = ap.parse_args()
    ModelServer(http_port=args.port, enable_grpc=False, enable_latency_logging=False,
                workers=1).start([OrtModel(args.name, args.model)])
