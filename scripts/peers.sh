#!/usr/bin/env bash
# Side-by-side latency: sinter vs ONNX Runtime (and tract) on the same shapes, one thread,
# in one run. Needs: pip install onnxruntime onnx numpy; ../shared/peers/inproc built
# (cargo build --release in a copy of it); INPROC=path/to/inproc binary.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-/tmp/peers}
INPROC=${INPROC:-/tmp/inproc/target/release/inproc}
THREADS=${THREADS:-1}
BATCHES=${BATCHES:-1,8,64,256}
mkdir -p "$PEERS"
[ -f "$PEERS/seed_mlp.onnx" ] || python3 ../shared/peers/make_models.py "$PEERS"
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(python3 -c "import onnxruntime,os;print(os.path.join(os.path.dirname(onnxruntime.__file__),'capi','libonnxruntime.so.1.32.0'))")}
cargo build --release -q
for pair in seed:seed_mlp:784 mnist-mlp:mnist_mlp:784 ffn:ffn:1024; do
  IFS=: read -r builtin onnx feat <<<"$pair"
  ./target/release/sinter bench "builtin:$builtin" --batch "$BATCHES" --threads "$THREADS" --json
  "$INPROC" "$PEERS/$onnx.onnx" "$feat" "$BATCHES" "$THREADS"
done
