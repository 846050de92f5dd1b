#!/usr/bin/env bash
# What the hospital door costs (issue 32): one cluster, two gateways side by side on the same
# router, answering the same closed-loop load in alternating rounds:
#   plain: bearer tokens only;
#   door:  bearer tokens + a [[clients]] table for the client (quotas high enough never to
#          refuse) + the audit trail (HMAC chain, a line written before each answer goes out).
# Answers are one token long, so the gateway's share of the work is as large as it gets.
# Not part of the test suite.
#
#   benchmarks/door/run.sh [ROUNDS=3] [REQUESTS=400] [CONCURRENCY=4]
#
# Prints each round's answers per second and latency, the medians, and door ÷ plain.
set -euo pipefail
ROUNDS=${1:-3}
REQUESTS=${2:-400}
CONCURRENCY=${3:-4}
cd "$(dirname "$0")/../.."
BIN=${MAMBAFORMER_BIN:-.build/release/mambaformer}
[ -x "$BIN" ] || { echo "build first: swift build -c release --product mambaformer" >&2; exit 1; }
OUT=.door; rm -rf "$OUT"; mkdir -p "$OUT"
DIR=$(mktemp -d); PLAIN=$((20000 + RANDOM % 20000)); DOOR=$((PLAIN + 1))
FRONT="ipc://$DIR/frontend"; BACK="ipc://$DIR/backend"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$DIR"; }
trap cleanup EXIT
start() { local name=$1; shift; "$BIN" "$@" >"$OUT/$name.log" 2>&1 & pids+=($!); }

TOKEN=door-bench-token-0123456789
printf 'bench:%s\n' "$TOKEN" >"$DIR/tokens"; chmod 600 "$DIR/tokens"
openssl rand -hex 32 >"$DIR/audit.key"; chmod 600 "$DIR/audit.key"
cat >"$DIR/door.toml" <<TOML
[security]
auth_tokens_file = "$DIR/tokens"
[audit]
path = "$OUT/audit.log"
hmac_key_file = "$DIR/audit.key"
[[clients]]
name = "bench"
rpm = 10000000
tpm = 1000000000
max_concurrent = 1000
TOML

start router router --frontend "$FRONT" --backend "$BACK" --model models/demo --heartbeat-ms 500
start emamba expert --kind emamba --model models/demo --router "$BACK" --replica-id emamba-1
start et5 expert --kind et5 --model models/demo --router "$BACK" --replica-id et5-1
start plain gateway --listen "127.0.0.1:$PLAIN" --router "$FRONT" --auth-tokens-file "$DIR/tokens"
start door gateway --listen "127.0.0.1:$DOOR" --router "$FRONT" --config "$DIR/door.toml"
for port in $PLAIN $DOOR; do
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/readyz" | grep -q '"emamba":1,"et5":1' && break; sleep 0.2
  done
done

run() {  # gateway name, port, round
  MAMBAFORMER_TOKEN=$TOKEN "$BIN" loadgen --url "http://127.0.0.1:$2" --concurrency "$CONCURRENCY" --requests "$REQUESTS" \
    --max-tokens 1 --quiet --report "$OUT/$1-$3" >/dev/null
}
run plain "$PLAIN" warmup; run door "$DOOR" warmup
for r in $(seq 1 "$ROUNDS"); do run plain "$PLAIN" "$r"; run door "$DOOR" "$r"; done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for name in ("plain", "door"):
    for r in range(1, rounds + 1):
        rep = json.load(open(f"{out}/{name}-{r}/report.json"))
        assert rep["errors"] == 0, f"{name} round {r}: {rep['errors']} errors"
        rows.setdefault(name, []).append((rep["throughput"]["ok_per_s"], rep["latency_ms"]["p50"], rep["latency_ms"]["p99"]))
        print(f"{name:5} round {r}: {rows[name][-1][0]:7.1f} answers/s  p50 {rows[name][-1][1]:6.2f} ms  p99 {rows[name][-1][2]:6.2f} ms")
med = {n: [statistics.median(c) for c in zip(*v)] for n, v in rows.items()}
for n, (rps, p50, p99) in med.items():
    print(f"median {n:5}: {rps:7.1f} answers/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
print(f"door / plain: throughput {med['door'][0] / med['plain'][0]:.3f}x, p50 {med['door'][1] / med['plain'][1]:.3f}x")
PY
lines=$(wc -l <"$OUT/audit.log")
echo "audit lines written: $lines"
"$BIN" audit verify --key-file "$DIR/audit.key" "$OUT"/audit.log.* "$OUT/audit.log" 2>/dev/null | head -1 || \
  "$BIN" audit verify --key-file "$DIR/audit.key" "$OUT/audit.log" | head -1
