"""Median latency of ONNX Runtime (default session options) on an encoder with int64
input_ids / attention_mask / token_type_ids, as `sinter bench` draws them (ids in the
vocabulary, every position kept).

    python3 scripts/ort_time_encoder.py MODEL.onnx --seq 128 --batch 1,8 --threads 1 [--seconds 3]

One JSON line per batch: {"batch":..,"seq":..,"threads":..,"ort_us":..}.
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", default="1,8")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--vocab", type=int, default=30522)
    a = p.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    rng = np.random.default_rng(0)
    for b in [int(x) for x in a.batch.split(",")]:
        feed = {}
        for n in names:
            if "mask" in n:
                feed[n] = np.ones((b, a.seq), np.int64)
            elif "type" in n:
                feed[n] = np.zeros((b, a.seq), np.int64)
            else:
                feed[n] = rng.integers(0, a.vocab, (b, a.seq), dtype=np.int64)
        for _ in range(3):
            s.run(None, feed)
        times = []
        end = time.perf_counter() + a.seconds
        while time.perf_counter() < end or len(times) < 5:
            t0 = time.perf_counter()
            s.run(None, feed)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"batch": b, "seq": a.seq, "threads": a.threads,
                          "ort_us": round(float(np.median(times)) * 1e6, 1)}))


if __name__ == "__main__":
    main()
