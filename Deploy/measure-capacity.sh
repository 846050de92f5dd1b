#!/usr/bin/env bash
# Per-replica throughput of each expert pool, for the capacity guide in README.md, with the
# traffic generator: starts `mambaformer up` with one EMamba and one ET5 replica, then runs
# `mambaformer loadgen` closed-loop against each pool (every request forced onto it) at 1 and
# 8 concurrent clients. Answers run to --max-tokens (MAMBAFORMER_EXPERT_IGNORE_EOS, i.e.
# [expert] ignore_eos) so that tokens/s measure decoding whatever the model says.
#
#   Deploy/measure-capacity.sh [BINARY] [MODEL] [SECONDS]    (paths relative to the repository;
#   the loadgen reports go to $REPORTS, default a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-.build/release/mambaformer}"
model="${2:-models/demo}"
seconds="${3:-15}"
port=18181
out="${REPORTS:-$(mktemp -d)}"
echo "reports: $out"

MAMBAFORMER_EXPERT_IGNORE_EOS=true OPENBLAS_NUM_THREADS=1 \
  "$bin" up --model "$model" --emamba 1 --et5 1 --http "127.0.0.1:$port" --log-level warning &
up=$!
trap 'kill $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
for _ in $(seq 1 400); do
  ready=$(curl -s "127.0.0.1:$port/readyz" || true)
  [[ $ready == *'"emamba":1'* && $ready == *'"et5":1'* ]] && break
  sleep 0.3
done

for pool in emamba et5; do
  for clients in 1 8; do
    echo "== $pool, $clients concurrent clients"
    "$bin" loadgen --url "http://127.0.0.1:$port" --concurrency "$clients" --duration "${seconds}s" \
      --expert "$pool" --max-tokens 64 --report "$out/$pool-$clients" | head -3
  done
done
