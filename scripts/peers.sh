#!/usr/bin/env bash
# Side-by-side latency, one run: sinter vs ONNX Runtime and tract (in-process, ../shared/peers/
# inproc) and, for the conv model, OpenVINO in float32 (scripts/openvino_time.py) on the same
# shapes and weights-free-equivalent ONNX models from ../shared/peers/make_models.py.
# Needs: a venv with onnxruntime onnx numpy openvino (VENV, default /tmp/venv); inproc built
# (cargo build --release in a copy of ../shared/peers/inproc; INPROC=path to its binary).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/venv}
PEERS=${PEERS:-/tmp/peers}
INPROC=${INPROC:-/tmp/inproc/target/release/inproc}
THREADS=${THREADS:-1}
BATCHES=${BATCHES:-1,8,64,256}
mkdir -p "$PEERS"
[ -f "$PEERS/conv1d_concat.onnx" ] || "$VENV/bin/python" ../shared/peers/make_models.py "$PEERS"
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$("$VENV/bin/python" -c "import onnxruntime,os,glob;print(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__),'capi','libonnxruntime.so.*'))[0])")}
cargo build --release -q
for pair in seed:seed_mlp:784 mnist-mlp:mnist_mlp:784 ffn:ffn:1024 conv1d:conv1d_concat:128x16; do
  IFS=: read -r builtin onnx feat <<<"$pair"
  ./target/release/sinter bench "builtin:$builtin" --batch "$BATCHES" --threads "$THREADS" --json
  "$INPROC" "$PEERS/$onnx.onnx" "$feat" "$BATCHES" "$THREADS"
done
"$VENV/bin/python" scripts/openvino_time.py "$PEERS/conv1d_concat.onnx" 128x16 "$BATCHES" "$THREADS" f32
