#!/usr/bin/env python3
"""Benchmark models for issue 29's targets, made at benchmark time (not committed): PyTorch
recurrent nets with random weights, exported by torch.onnx.export (TorchScript exporter,
dynamic batch), into OUTDIR:

  lstm128.onnx   nn.LSTM(64, 128, batch_first=True) over 50 steps; output: every step's h
  bigru64.onnx   nn.GRU(64, 64, num_layers=2, bidirectional=True, batch_first=True) over
                 100 steps; output: every step's h (both directions)

Usage: python3 scripts/make_recurrent_bench.py OUTDIR
Then, for example: sinter bench OUTDIR/lstm128.onnx --batch 1 --threads 1
"""

import sys
from pathlib import Path

import torch


class Seq(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    nets = {
        "lstm128": (torch.nn.LSTM(64, 128, batch_first=True), 50),
        "bigru64": (torch.nn.GRU(64, 64, num_layers=2, bidirectional=True, batch_first=True), 100),
    }
    for name, (rnn, steps) in nets.items():
        m = Seq(rnn).eval()
        x = torch.randn(2, steps, 64)
        torch.onnx.export(m, (x,), out / f"{name}.onnx", dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}}, opset_version=17)
        print(out / f"{name}.onnx")


if __name__ == "__main__":
    main()
