#!/usr/bin/env python3
"""Materialises the ONNX backend node tests (onnx.backend.test.case.node, onnx 1.23) of the
ops sinter claims into tests/fixtures/onnx_node/, for tests/onnx_node.rs.

The onnx wheel ships the test generators, not their data, so each case is built here from
`collect_testcases`: NAME.onnx (the model as the generator wrote it, opset included) and
NAME.in<i>.npy / NAME.out<i>.npy for its first data set. Every case whose graph is made only of
claimed ops is written (pass or refuse): the Rust test requires each to either match the expected outputs
or be refused with an error naming the op; the cases listed in `must_pass` of manifest.json
must match. The recurrent ops' weights, fed as inputs by the tests, are stored as
initializers (`FROZEN`; listed per case under "frozen"). Cases with inputs or outputs that are not float32/int32/int64, or with more than
4096 elements in a tensor, are skipped (listed in the manifest with the reason).

Run from the repo root:  /tmp/venv/bin/python scripts/make_onnx_node_fixtures.py
"""
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx.backend.test.case import node as node_cases

warnings.filterwarnings("ignore")
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx_node"

# The ops sinter's ONNX loader claims (the OPS table of src/io/onnx/ops/mod.rs).
OPS = {
    "Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Softplus", "Softsign", "Exp", "Mish", "Gelu", "Softmax", "LogSoftmax", "Transpose",
    "Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "Concat", "Gemm",
    "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Mean", "Max", "Min", "BatchNormalization",
    "LayerNormalization", "Gather", "ArgMax", "Identity", "Dropout", "Flatten", "Reshape",
    "Constant", "Cast", "Squeeze", "Unsqueeze", "Sqrt", "Pow", "Neg", "Abs", "Clip", "Erf",
    "Reciprocal", "Floor", "Ceil", "Round", "LSTM", "GRU", "RNN",
    # shape arithmetic folded at load time
    "Shape", "Slice", "ConstantOfShape",
    # the opset-23 attention op (its masks and the encoders' mask arithmetic fold or probe)
    "Attention",
}
KINDS = {np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)}
# Inputs the tests feed that are a model's weights as every exporter writes them
# (initializers): sinter packs weights when it compiles, so these cases store their data set's
# values for them as initializers. Per op, the input positions: the recurrent ops' W, R, B
# and P (X, sequence_lens and the initial states stay inputs).
FROZEN = {"LSTM": {1, 2, 3, 7}, "GRU": {1, 2, 3}, "RNN": {1, 2, 3}}


def freeze(model, inputs):
    """The model with the graph inputs its single node reads at FROZEN positions turned into
    initializers holding the data set's values; the inputs left. (model, inputs, frozen)."""
    graph = model.graph
    if len(graph.node) != 1 or graph.node[0].op_type not in FROZEN:
        return model, inputs, []
    node = graph.node[0]
    names = {node.input[i] for i in FROZEN[node.op_type] if i < len(node.input)} - {""}
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    kept, frozen = [], []
    for vi, value in zip(list(graph.input), inputs):
        if vi.name in names:
            graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), vi.name))
            frozen.append(vi.name)
        else:
            kept.append(value)
    for vi in [vi for vi in graph.input if vi.name in names]:
        graph.input.remove(vi)
    return model, kept, frozen
MAX_ELEMS = 4096


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = OUT / "manifest.json"
    # The must_pass list is kept: it is set from a run of tests/onnx_node.rs
    # (ONNX_NODE_LIST=1 prints the cases that pass).
    old = json.loads(manifest.read_text()) if manifest.exists() else {}
    for p in OUT.iterdir():
        p.unlink()
    cases, skipped = [], []
    for case in sorted(node_cases.collect_testcases(None), key=lambda c: c.name):
        ops = {n.op_type for n in case.model.graph.node}
        # Only graphs made of claimed ops (an `_expanded` test of an unclaimed op is skipped).
        if not case.model.graph.node or not ops <= OPS:
            continue
        if not case.data_sets:
            skipped.append({"name": case.name, "why": "no data set"})
            continue
        inputs, outputs = case.data_sets[0]
        arrays = [np.asarray(a) for a in list(inputs) + list(outputs)]
        why = None
        for a in arrays:
            if a.dtype not in KINDS:
                why = f"dtype {a.dtype}"
            elif a.size > MAX_ELEMS:
                why = f"{a.size} elements"
        if why:
            skipped.append({"name": case.name, "why": why})
            continue
        model, inputs, frozen = freeze(case.model, list(inputs))
        onnx.save(model, OUT / f"{case.name}.onnx")
        for i, a in enumerate(inputs):
            np.save(OUT / f"{case.name}.in{i}.npy", np.ascontiguousarray(a))
        for i, a in enumerate(outputs):
            np.save(OUT / f"{case.name}.out{i}.npy", np.ascontiguousarray(a))
        opset = next(o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx"))
        entry = {"name": case.name, "op": case.model.graph.node[0].op_type,
                 "ops": sorted(ops), "opset": opset, "inputs": len(inputs),
                 "outputs": len(outputs), "rtol": case.rtol, "atol": case.atol}
        if frozen:
            entry["frozen"] = frozen
        cases.append(entry)
    manifest.write_text(json.dumps({
        "generated_by": "scripts/make_onnx_node_fixtures.py",
        "onnx": onnx.__version__, "numpy": np.__version__,
        "cases": cases, "skipped": skipped,
        "must_pass": old.get("must_pass", []),
    }, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(cases)} cases, {len(skipped)} skipped, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
