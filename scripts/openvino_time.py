"""Median latency of an ONNX model under OpenVINO (CPU, one InferRequest per batch size).

Usage: python scripts/openvino_time.py MODEL.onnx FEATURES BATCHES THREADS [PRECISION]
  FEATURES: 784 or 128x16; BATCHES: 1,8,64,256; PRECISION: f32 (default) or bf16.
Prints one JSON line per batch, like inproc. Python's per-call overhead (~1-3 us) is included.

On CPUs with AVX512-BF16 (this Zen 4) OpenVINO's default inference precision is bfloat16, not
float32: pass bf16 to time that default; f32 compares like with like.
"""
import json
import sys
import time

import numpy as np
import openvino as ov


def median_us(f, budget=1.0):
    for _ in range(5):
        f()
    v = []
    start = time.perf_counter()
    while len(v) < 20 or time.perf_counter() - start < budget:
        t = time.perf_counter()
        f()
        v.append((time.perf_counter() - t) * 1e6)
    v.sort()
    return v[len(v) // 2]


def main():
    path, feat, batches, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    precision = sys.argv[5] if len(sys.argv) > 5 else "f32"
    feat = [int(d) for d in feat.split("x")]
    core = ov.Core()
    for b in [int(x) for x in batches.split(",")]:
        model = core.read_model(path)
        model.reshape({model.inputs[0].any_name: [b] + feat})
        compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": precision,
            },
        )
        req = compiled.create_infer_request()
        n = b * int(np.prod(feat))
        x = ((np.arange(n) * 2654435761) % 1000 / 500.0 - 1.0).astype(np.float32).reshape([b] + feat)
        us = median_us(lambda: req.infer({0: x}))
        print(json.dumps({"model": path.rsplit("/", 1)[-1], "batch": b, "threads": threads,
                          "precision": precision, "openvino_us": round(us, 2)}))


if __name__ == "__main__":
    main()
