#!/usr/bin/env bash
# Builds the peer server: llama.cpp's own C++ `llama-server` (continuous batching over
# `--parallel` slots), from the llama.cpp sources vendored in the llama-cpp-python sdist that
# benchmarks/peers pins, with Debian's cmake; CPU-only, for this CPU's instruction set. Also
# `llama-quantize` (the q8_0 GGUF), and a small venv with the same sources' GGUF converter
# (torch, gguf, tokenizers). Never used by CI's test path.
#
#   benchmarks/servers/setup.sh [DIR]      DIR defaults to $SERVERS_LLAMA or /opt/llama-server
#
# Idempotent: what exists is left alone. About 10 minutes on 2 cores (never beside another
# heavy build).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-${SERVERS_LLAMA:-/opt/llama-server}}"
requirements="$root/benchmarks/peers/requirements.txt"
pin="$(grep '^llama-cpp-python==' "$requirements")"
pinned() { grep "^$1==" "$requirements"; }

ready() {
  [ -x "$dir/bin/llama-server" ] && [ -x "$dir/bin/llama-quantize" ] && [ -f "$dir/share/llama.cpp/convert_hf_to_gguf.py" ] \
    && "$dir/venv/bin/python" -c "import torch, gguf, tokenizers, numpy" 2>/dev/null
}
if ready; then echo "setup.sh: $dir is ready"; exit 0; fi

command -v cmake >/dev/null || { apt-get update -q && apt-get install -y -q cmake; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$tmp" "$pin"
tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
src="$(echo "$tmp"/llama_cpp_python-*/vendor/llama.cpp)"

if [ ! -x "$dir/bin/llama-server" ] || [ ! -x "$dir/bin/llama-quantize" ]; then
  cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$tmp/build" --target llama-server llama-quantize -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" >&2
  mkdir -p "$dir/bin"
  cp "$tmp/build/bin/llama-server" "$tmp/build/bin/llama-quantize" "$dir/bin/"
  echo "$pin" > "$dir/VERSION"
fi

# The converter from the same sources, so converter and server match.
rm -rf "$dir/share/llama.cpp"; mkdir -p "$dir/share/llama.cpp/models"
cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$dir/share/llama.cpp/"
cp "$src/models/ggml-vocab-gpt-neox.gguf" "$dir/share/llama.cpp/models/"
[ -x "$dir/venv/bin/python" ] || python3 -m venv "$dir/venv"
torch_pin="torch==2.15.0"; ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1 && torch_pin="torch==2.13.0+cpu"
"$dir/venv/bin/pip" install --quiet "$torch_pin" "$(pinned numpy)" "$(pinned gguf)" "$(pinned tokenizers)" \
  "$(pinned safetensors)" "$(pinned sentencepiece)" "$(pinned transformers)" "$(pinned protobuf)"
ready || { echo "setup.sh: $dir is incomplete" >&2; exit 1; }
echo "setup.sh: $dir is ready"
