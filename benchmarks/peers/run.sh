#!/usr/bin/env bash
# Our engine against transformers (both models), CTranslate2 (T5) and llama.cpp (Mamba) on the
# SAME random checkpoints,
# back to back, at each thread count; prints one table (ours, each peer, ratio).
#
#   benchmarks/peers/setup.sh                 # once: the peers' venv (default /opt/benchenv)
#   benchmarks/peers/run.sh                   # from the repository root
#
# Environment (all optional):
#   PEERS_VENV=/opt/benchenv   the venv setup.sh made
#   PEERS_WORK=/tmp/peers      checkpoints, converted models and results/*.jsonl
#   PEERS_THREADS="1 2"        thread counts (each engine gets the same count)
#   PEERS_REPEAT=3             timed repeats per cell (medians are reported)
#   PEERS_STEPS=32             decode steps per timed run
#   PEERS_TIMEOUT=600          seconds allowed to each benchmark process
#   PEERS_NICE=0               nice level of every benchmark process
#   OPENBLAS_CORETYPE          ours only; default SkylakeX where the CPU has AVX-512
#                              (OpenBLAS 0.3.21 takes Zen 5 for Haswell)
#
# Bounded runtime: every benchmark process is killed after PEERS_TIMEOUT seconds, so the
# whole run is at most 11 × |threads| × PEERS_TIMEOUT plus the one-off work (release build,
# writing and converting the checkpoints: about a minute). With the defaults the whole
# run took about 4 minutes on the 2-core machine while two training jobs held both cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/benchmarks/peers"
venv="${PEERS_VENV:-/opt/benchenv}"
work="${PEERS_WORK:-/tmp/peers}"
threads="${PEERS_THREADS:-1 2}"
repeat="${PEERS_REPEAT:-3}"
steps="${PEERS_STEPS:-32}"
limit="${PEERS_TIMEOUT:-600}"
nicelevel="${PEERS_NICE:-0}"
py="$venv/bin/python"
bench="$root/.build/release/engine-bench"

[ -x "$py" ] || { echo "run.sh: no venv at $venv: run benchmarks/peers/setup.sh first" >&2; exit 1; }
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then coretype=SkylakeX; else coretype="${OPENBLAS_CORETYPE:-}"; fi
mkdir -p "$work/results"
log() { echo "run.sh: $*" >&2; }

# 1. Our benchmark tool (release).
if [ ! -x "$bench" ] || [ "$root/benchmarks/engine/main.swift" -nt "$bench" ]; then
  log "building engine-bench (release)"
  (cd "$root" && swift build -c release --product engine-bench >&2)
fi

# 2. The random checkpoints, written once by our own tool (seed 1): every engine reads these.
[ -f "$work/t5small/model.safetensors" ] || { log "writing $work/t5small"; "$bench" write-t5small "$work/t5small" >&2; }
[ -f "$work/mamba130m/model.safetensors" ] || { log "writing $work/mamba130m"; "$bench" write-mamba130m "$work/mamba130m" >&2; }

# 3. Conversions into each peer's format.
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
for q in float32 int8; do
  out="$work/t5small-ct2-$q"
  if [ ! -f "$out/model.bin" ]; then
    log "converting t5small with CTranslate2 ($q)"
    "$venv/bin/ct2-transformers-converter" --model "$work/t5small" --output_dir "$out" --quantization "$q" --force >&2
  fi
done
gguf="$work/mamba130m-f32.gguf"
if [ ! -f "$gguf" ]; then
  log "converting mamba130m to GGUF f32"
  "$here/mamba-gguf.sh" "$py" "$venv/share/llama.cpp/convert_hf_to_gguf.py" "$work/mamba130m" "$gguf"
fi

# 4. Back to back, per thread count: ours, then the peers, on the same files. A cell that
# fails or times out is logged (stderr kept in results/NAME.err) and left empty in the table.
rm -f "$work/results/"*.jsonl "$work/results/"*.err
cell() {  # cell NAME THREADS COMMAND...
  local name="$1" t="$2"; shift 2
  if ! OMP_NUM_THREADS="$t" nice -n "$nicelevel" timeout "$limit" "$@" > "$work/results/$name.jsonl" 2> "$work/results/$name.err"; then
    log "$name FAILED or timed out after ${limit}s (see $work/results/$name.err)"; rm -f "$work/results/$name.jsonl"
  fi
}
ours=(env); [ -z "$coretype" ] || ours+=(OPENBLAS_CORETYPE="$coretype")
common=(--steps "$steps" --repeat "$repeat")
for t in $threads; do
  log "T5, $t thread(s)"
  cell "t5-ours-t$t" "$t" "${ours[@]}" "$bench" run "$work/t5small" --threads "$t" "${common[@]}"
  cell "t5-ours_bf16-t$t" "$t" "${ours[@]}" "$bench" run "$work/t5small" --threads "$t" --weights bf16 "${common[@]}"
  cell "t5-ours_int8-t$t" "$t" "${ours[@]}" "$bench" run "$work/t5small" --threads "$t" --weights int8 "${common[@]}"
  cell "t5-ours_w8a8-t$t" "$t" "${ours[@]}" "$bench" run "$work/t5small" --threads "$t" --weights w8a8 "${common[@]}"
  cell "t5-ct2_f32-t$t" "$t" "$py" "$here/bench_ct2.py" "$work/t5small-ct2-float32" --threads "$t" "${common[@]}"
  cell "t5-ct2_int8-t$t" "$t" "$py" "$here/bench_ct2.py" "$work/t5small-ct2-int8" --threads "$t" "${common[@]}"
  cell "t5-transformers-t$t" "$t" "$py" "$here/bench_transformers.py" "$work/t5small" --threads "$t" "${common[@]}"
  log "Mamba, $t thread(s)"
  cell "mamba-ours-t$t" "$t" "${ours[@]}" "$bench" run "$work/mamba130m" --threads "$t" "${common[@]}"
  cell "mamba-ours_bf16-t$t" "$t" "${ours[@]}" "$bench" run "$work/mamba130m" --threads "$t" --weights bf16 "${common[@]}"
  cell "mamba-ours_int8-t$t" "$t" "${ours[@]}" "$bench" run "$work/mamba130m" --threads "$t" --weights int8 "${common[@]}"
  cell "mamba-ours_w8a8-t$t" "$t" "${ours[@]}" "$bench" run "$work/mamba130m" --threads "$t" --weights w8a8 "${common[@]}"
  cell "mamba-llamacpp-t$t" "$t" "$py" "$here/bench_llamacpp.py" "$gguf" --threads "$t" "${common[@]}"
  cell "mamba-transformers-t$t" "$t" "$py" "$here/bench_transformers.py" "$work/mamba130m" --threads "$t" "${common[@]}"
done

# 5. One table.
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); OPENBLAS_CORETYPE=${coretype:-default} (ours)"
"$py" "$here/table.py" "$work/results"
