"""A MiniLM-L6-shaped BERT encoder (hidden 384, 6 layers, 12 heads, intermediate 1536, vocab
30522; random weights: no model hub is reachable) exported by torch, for benchmarks.

    python3 scripts/make_minilm.py OUT_DIR [--dynamo]

writes OUT_DIR/minilm.onnx (about 90 MB: never commit it) with inputs input_ids,
attention_mask, token_type_ids of shape [batch, sequence] (int64) and output
last_hidden_state.
"""
import os
import sys

import torch
import transformers


class Encoder(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, ids, mask, tt):
        return self.m(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state


def main():
    out = sys.argv[1]
    dynamo = "--dynamo" in sys.argv
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
        intermediate_size=1536, max_position_embeddings=512)
    model = Encoder(transformers.BertModel(cfg, add_pooling_layer=False).eval()).eval()
    ids = torch.randint(0, 30522, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    tt = torch.zeros(2, 16, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    path = os.path.join(out, "minilm.onnx")
    if dynamo:
        dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=512)}
        torch.onnx.export(model, (ids, mask, tt), path, input_names=names,
                          output_names=["last_hidden_state"], dynamic_shapes=(dims,) * 3,
                          opset_version=18, dynamo=True, external_data=False)
    else:
        torch.onnx.export(model, (ids, mask, tt), path, input_names=names,
                          output_names=["last_hidden_state"],
                          dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names},
                          opset_version=17, dynamo=False)
    print(path)


if __name__ == "__main__":
    main()
