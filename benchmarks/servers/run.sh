#!/usr/bin/env bash
# Server against server: our cluster and llama.cpp's `llama-server` on the SAME random
# mamba-130m, the same prompts, the same 2 cores, driven one after the other by the same
# client (`mambaformer loadgen --api openai`, streaming, closed loop, every answer
# --max-tokens long). Prints one table; each run's report.json and report.html stay in
# $SERVERS_WORK/results/.
#
#   benchmarks/servers/setup.sh        # once: llama-server and the GGUF converter's venv
#   benchmarks/servers/run.sh          # from the repository root
#
# Environment (all optional):
#   SERVERS_LLAMA=/opt/llama-server   what servers/setup.sh built (and its venv)
#   SERVERS_WORK=/tmp/servers         checkpoints, GGUF files, results
#   SERVERS_CLIENTS="1 4 8 16"        closed-loop client counts
#   SERVERS_TOKENS=64                 tokens per answer
#   SERVERS_ROUNDS=4                  requests per client per cell (at least 8 per cell)
#   SERVERS_OURS="f32 bf16 w8a8"      our expert weight formats ("" skips our side)
#   SERVERS_GGUF="f32 q8_0"           llama-server's model formats ("" skips it)
#   SERVERS_EMAMBA=2                  our EMamba replicas (one per core)
#   SERVERS_LLAMA_THREADS=2           llama-server's threads (all the cores)
#   SERVERS_BUILD=1                   0: use the release binaries already built (e.g. by
#                                     `make test`, whose flags differ: no rebuild of both)
#
# Never part of CI's test path: a whole run takes about half an hour.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/benchmarks/servers"
llama="${SERVERS_LLAMA:-/opt/llama-server}"
venv="$llama/venv"
work="${SERVERS_WORK:-/tmp/servers}"
clients="${SERVERS_CLIENTS:-1 4 8 16}"
tokens="${SERVERS_TOKENS:-64}"
rounds="${SERVERS_ROUNDS:-4}"
ours_formats="${SERVERS_OURS-f32 bf16 w8a8}"
gguf_formats="${SERVERS_GGUF-f32 q8_0}"
emamba="${SERVERS_EMAMBA:-2}"
llama_threads="${SERVERS_LLAMA_THREADS:-2}"
py="$venv/bin/python"
mf="$root/.build/release/mambaformer"
bench="$root/.build/release/engine-bench"
port=18090
log() { echo "run.sh: $*" >&2; }

[ -x "$llama/bin/llama-server" ] || { log "no $llama/bin/llama-server: run benchmarks/servers/setup.sh first"; exit 1; }
mkdir -p "$work/results"

# 1. Our binaries (release).
if [ "${SERVERS_BUILD:-1}" != 0 ]; then
  (cd "$root" && swift build -c release --product mambaformer >&2 && swift build -c release --product engine-bench >&2)
fi

# 2. The random mamba-130m (seed 1, as benchmarks/peers) and its GGUF files.
[ -f "$work/mamba130m/model.safetensors" ] || { log "writing $work/mamba130m"; "$bench" write-mamba130m "$work/mamba130m" >&2; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ ! -f "$work/mamba130m-f32.gguf" ]; then
  log "converting mamba130m to GGUF f32"
  "$root/benchmarks/peers/mamba-gguf.sh" "$py" "$llama/share/llama.cpp/convert_hf_to_gguf.py" "$work/mamba130m" "$work/mamba130m-f32.gguf"
fi
for f in $gguf_formats; do
  [ "$f" = f32 ] || [ -f "$work/mamba130m-$f.gguf" ] || \
    "$llama/bin/llama-quantize" "$work/mamba130m-f32.gguf" "$work/mamba130m-$f.gguf" "$(echo "$f" | tr a-z A-Z)" >&2
done

# 3. Our checkpoint around the same weights, with the same tokenizer: the GPT-NeoX vocabulary
# and merges read back out of the GGUF into a tokenizer.json, so both servers see the same
# prompt tokens (llama-server adds its chat template's). ET5 is the demo's; every request
# is sent to EMamba (`expert: emamba`).
ckpt="$work/cluster"
if [ ! -f "$ckpt/emamba/tokenizer.json" ]; then
  rm -rf "$ckpt"; mkdir -p "$ckpt/emamba"
  ln -s "$work/mamba130m/model.safetensors" "$ckpt/emamba/model.safetensors"
  cp "$work/mamba130m/config.json" "$ckpt/emamba/config.json"
  ln -s "$root/models/demo/et5" "$ckpt/et5"
  echo '{"format": 1, "emamba": "emamba", "et5": "et5"}' > "$ckpt/mambaformer.json"
  "$py" "$here/gguf_tokenizer.py" "$work/mamba130m-f32.gguf" "$ckpt/emamba/tokenizer.json"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_ready() {  # wait_ready URL PID
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || { log "the server exited before it was ready"; return 1; }
    sleep 0.5
  done
  log "not ready in 300 s: $1"; return 1
}

measure() {  # measure NAME [extra loadgen flags...]: every client count against :$port
  local name="$1"; shift
  # Warm-up (page-in, first allocations): not reported.
  "$mf" loadgen --api openai --url "http://127.0.0.1:$port" --stream --ignore-eos --max-tokens "$tokens" \
    --concurrency 2 --requests 4 --quiet "$@" > /dev/null
  for c in $clients; do
    local n=$((c * rounds)); [ "$n" -ge 8 ] || n=8
    log "$name, $c client(s), $n requests"
    "$mf" loadgen --api openai --url "http://127.0.0.1:$port" --stream --ignore-eos --max-tokens "$tokens" \
      --concurrency "$c" --requests "$n" --seed 7 --timeout 600s --quiet \
      --report "$work/results/$name-c$c" "$@" >&2
  done
}

# 4. Ours: `up` with EMamba replicas (one BLAS thread each), every answer --max-tokens long.
for f in $ours_formats; do
  log "our cluster, EMamba $f × $emamba"
  MAMBAFORMER_EXPERT_WEIGHTS="$f" MAMBAFORMER_EXPERT_IGNORE_EOS=true \
    "$mf" up --model "$ckpt" --emamba "$emamba" --et5 1 --gate rule --http "127.0.0.1:$port" \
    --log-level warning > "$work/results/ours-$f.log" 2>&1 &
  pids=($!)
  wait_ready "http://127.0.0.1:$port/readyz" "${pids[0]}"
  measure "ours-$f" --expert emamba
  cleanup; pids=()
done

# 5. llama-server: continuous batching over one slot per client of the largest count.
max_clients=$(echo $clients | tr ' ' '\n' | sort -n | tail -1)
for f in $gguf_formats; do
  log "llama-server, $f, $llama_threads threads, $max_clients slots"
  "$llama/bin/llama-server" -m "$work/mamba130m-$f.gguf" --host 127.0.0.1 --port "$port" \
    --threads "$llama_threads" --threads-batch "$llama_threads" --parallel "$max_clients" --cont-batching \
    --ctx-size $((max_clients * 1024)) --no-webui --alias mamba-130m > "$work/results/llama-$f.log" 2>&1 &
  pids=($!)
  wait_ready "http://127.0.0.1:$port/health" "${pids[0]}"
  measure "llama-$f"
  cleanup; pids=()
done

"$py" "$here/table.py" "$work/results" "$clients"
