#!/usr/bin/env bash
# Converts a Hugging Face Mamba checkpoint (as `engine-bench write-mamba130m` writes it) to a
# GGUF f32 file with llama.cpp's converter. Shared by benchmarks/peers and benchmarks/servers.
#
#   mamba-gguf.sh PYTHON CONVERTER CHECKPOINT_DIR OUT.gguf
#
# The converter needs a numeric time_step_rank (our config says "auto", as transformers
# accepts) and, without tokenizer.json, uses the GPT-NeoX vocabulary it ships: mamba-130m's.
set -euo pipefail
py="$1" converter="$2" checkpoint="$3" out="$4"
src="$out.src"
rm -rf "$src"; mkdir -p "$src"
ln -s "$(cd "$checkpoint" && pwd)/model.safetensors" "$src/model.safetensors"
"$py" - "$checkpoint/config.json" "$src/config.json" <<'PY'
import json, math, sys
c = json.load(open(sys.argv[1]))
if c.get("time_step_rank", "auto") == "auto":
    c["time_step_rank"] = math.ceil(c["hidden_size"] / 16)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$py" "$converter" "$src" --outtype f32 --outfile "$out" >&2
rm -rf "$src"
