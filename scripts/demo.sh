#!/usr/bin/env bash
# The README's main job: a local cluster on the bundled demo checkpoint answering questions.
# Starts `mambaformer up` (router, gateway, 1 EMamba + 1 ET5 expert), asks two questions
# through the gateway with `mambaformer ask`, prints the routing trace, and stops the cluster.
# The questions give no cost weight: the router uses the checkpoint's default_cost_weight (0.25,
# the gate's best point on the validation split, written by `eval --write-default`); at 0.5
# this passage question would go to EMamba. MAMBAFORMER_DEMO_COST_WEIGHT=W asks at W instead.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-.build/release/mambaformer}
PORT=${MAMBAFORMER_DEMO_PORT:-8080}
URL="http://127.0.0.1:$PORT"
LOG=$(mktemp -t mambaformer-demo.XXXXXX)

"$BIN" up --model models/demo --http "127.0.0.1:$PORT" >"$LOG" 2>&1 &
UP=$!
trap 'kill -TERM $UP 2>/dev/null || true; wait $UP 2>/dev/null || true; rm -f "$LOG"' EXIT

for _ in $(seq 1 600); do
  if grep -q "cluster ready" "$LOG"; then break; fi
  if ! kill -0 $UP 2>/dev/null; then echo "demo: the cluster failed to start:"; cat "$LOG"; exit 1; fi
  sleep 0.2
done
grep "cluster ready" "$LOG" || { echo "demo: the cluster did not become ready:"; cat "$LOG"; exit 1; }

echo
WEIGHT_FLAGS=()
SHOWN=""
if [ -n "${MAMBAFORMER_DEMO_COST_WEIGHT:-}" ]; then
  WEIGHT_FLAGS=(--cost-weight "$MAMBAFORMER_DEMO_COST_WEIGHT")
  SHOWN="--cost-weight $MAMBAFORMER_DEMO_COST_WEIGHT "
fi
echo "\$ mambaformer ask $SHOWN\"What is gingivitis?\""
"$BIN" ask --url "$URL" "${WEIGHT_FLAGS[@]}" "What is gingivitis?"
echo
PASSAGE="Pulpitis is inflammation of the dental pulp. Gingivitis is inflammation of the gums. \
Halitosis is offensive breath. Caries is a tooth decay that destroys the enamel and dentine. \
Periodontitis is an inflammation of the tissues around the teeth. Bruxism is grinding the teeth."
echo "\$ mambaformer ask $SHOWN--context \"<a passage of six glosses>\" \"What is halitosis?\""
"$BIN" ask --url "$URL" "${WEIGHT_FLAGS[@]}" --context "$PASSAGE" "What is halitosis?"
