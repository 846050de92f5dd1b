#!/usr/bin/env bash
# Installs the peer engines (CTranslate2, llama.cpp through llama-cpp-python) and the
# converters' needs (transformers + CPU torch) into their own venv, from PyPI, pinned.
#
#   benchmarks/peers/setup.sh [VENV]        VENV defaults to $PEERS_VENV or /opt/benchenv
#
# Idempotent: an existing venv that already imports everything at the pinned versions is
# left alone. llama-cpp-python is built from its sdist (it compiles the vendored llama.cpp:
# several minutes on 2 cores); the build is CPU-only with the host's native instruction set.
# Never used by CI's test path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${PEERS_VENV:-/opt/benchenv}}"
python="${PEERS_PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

# torch: a CPU-only wheel when pip can find one (this machine image keeps torch 2.13.0+cpu in
# pip's find-links); otherwise PyPI's default torch (a large CUDA build that also runs on CPU).
torch_pin="${PEERS_TORCH:-}"
if [ -z "$torch_pin" ]; then
  if ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then torch_pin="torch==2.13.0+cpu"; else torch_pin="torch==2.15.0"; fi
fi

check() {
  "$venv/bin/python" - "$here/requirements.txt" <<'PY'
import sys, importlib.metadata as md
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line: continue
    name, version = line.split("==")
    if md.version(name) != version: sys.exit(f"{name} {md.version(name)} != {version}")
import ctranslate2, llama_cpp, torch, transformers, gguf  # noqa: F401
PY
  [ -f "$venv/share/llama.cpp/convert_hf_to_gguf.py" ]
}

if [ -x "$venv/bin/python" ] && check 2>/dev/null; then
  echo "setup.sh: $venv is ready"; exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install "$torch_pin"
# CPU-only llama.cpp; GGML_NATIVE (the default) compiles for this CPU's instruction set.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAMA_CURL=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  "$venv/bin/pip" install --no-cache-dir -r "$here/requirements.txt"

# The GGUF converter is not in the wheel: take it (and the gguf-py and the built-in GPT-NeoX
# vocabulary it uses) from the same sdist's vendored llama.cpp, so converter and runtime match.
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python -d "$tmp" "$(grep '^llama-cpp-python==' "$here/requirements.txt")"
tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
src="$(echo "$tmp"/llama_cpp_python-*/vendor/llama.cpp)"
rm -rf "$venv/share/llama.cpp"; mkdir -p "$venv/share/llama.cpp/models"
cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$venv/share/llama.cpp/"
cp "$src/models/ggml-vocab-gpt-neox.gguf" "$venv/share/llama.cpp/models/"
check
echo "setup.sh: $venv is ready"
