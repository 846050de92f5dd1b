#!/usr/bin/env bash
# Soak run (issue #12): a local cluster under steady open-loop load for a bounded time,
# with one expert replica SIGKILLed and restarted every KILL_EVERY seconds, and the
# resident memory of every process sampled every 10 s. Not part of the test suite.
#
#   benchmarks/soak/soak.sh [MINUTES=5] [RATE=8] [KILL_EVERY=60]
#
# Output in .soak/ : loadgen report (report.json, report.html), rss.tsv (seconds, process,
# RSS MiB), kills.log, summary.txt. Exit status non-zero when a request failed with
# anything but a retryable 5xx, or when a process's RSS grew by more than 25 % + 16 MiB
# between the first sample after warm-up and the last.
set -euo pipefail
MINUTES=${1:-5}
RATE=${2:-8}
KILL_EVERY=${3:-60}
cd "$(dirname "$0")/../.."
BIN=${MAMBAFORMER_BIN:-.build/release/mambaformer}
[ -x "$BIN" ] || { echo "build first: swift build -c release --product mambaformer" >&2; exit 1; }
OUT=.soak; rm -rf "$OUT"; mkdir -p "$OUT"
DIR=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
FRONT="ipc://$DIR/frontend"; BACK="ipc://$DIR/backend"
pids=()
cleanup() { for p in "${pids[@]}" $(jobs -p); do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

start() {  # name, args...: starts a node, records its pid in $DIR/NAME.pid
  local name=$1; shift
  "$BIN" "$@" >"$OUT/$name.log" 2>&1 & echo $! >"$DIR/$name.pid"; pids+=($!)
}
expert() { start "$1-$2" expert --kind "$1" --model models/demo --router "$BACK" --replica-id "$1-$2" --heartbeat-ms 500 --ignore-eos; }

start router router --frontend "$FRONT" --backend "$BACK" --model models/demo --heartbeat-ms 500
for i in 1 2; do expert emamba $i; expert et5 $i; done
start gateway gateway --listen "127.0.0.1:$PORT" --router "$FRONT" --max-concurrent 32
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/readyz" | grep -q '"emamba":2.*"et5":2' && break; sleep 0.2
done

names=(router gateway emamba-1 emamba-2 et5-1 et5-2)
sample() {  # seconds since start
  for n in "${names[@]}"; do
    local pid; pid=$(cat "$DIR/$n.pid")
    awk -v t="$1" -v n="$n" '/^VmRSS/ {printf "%s\t%s\t%.1f\n", t, n, $2/1024}' "/proc/$pid/status" 2>/dev/null >>"$OUT/rss.tsv" || true
  done
}

"$BIN" loadgen --url "http://127.0.0.1:$PORT" --rate "$RATE" --duration "$((MINUTES * 60))s" --max-tokens 16 \
  --timeout 30s --report "$OUT" >"$OUT/loadgen.log" 2>&1 &
LOADGEN=$!
start_s=$SECONDS; next_kill=$KILL_EVERY; victim=0
while kill -0 "$LOADGEN" 2>/dev/null; do
  sleep 10; t=$((SECONDS - start_s)); sample "$t"
  if [ "$t" -ge "$next_kill" ]; then
    pools=(emamba-1 et5-1 emamba-2 et5-2); name=${pools[$((victim % 4))]}; victim=$((victim + 1))
    kill -9 "$(cat "$DIR/$name.pid")" 2>/dev/null || true
    echo "$t s: SIGKILL $name, restarted" >>"$OUT/kills.log"
    expert "${name%-*}" "${name##*-}"
    next_kill=$((next_kill + KILL_EVERY))
  fi
done
wait "$LOADGEN" || true

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, sys, collections
out = sys.argv[1]
r = json.load(open(f"{out}/report.json"))
bad = {k: v for k, v in r["errors_by_class"].items() if v and k != "http_5xx"}
print(f"sent {r['sent']}, ok {r['ok']}, errors {r['errors']} {r['error_codes']}, p50 {r['latency_ms']['p50']:.0f} ms, p99 {r['latency_ms']['p99']:.0f} ms")
rss = collections.defaultdict(list)
for line in open(f"{out}/rss.tsv"):
    t, n, m = line.split("\t"); rss[n].append((int(t), float(m)))
grew = []
for n, xs in sorted(rss.items()):
    xs = [x for x in xs if x[0] >= 30] or xs   # after warm-up
    first, last = xs[0][1], xs[-1][1]
    print(f"{n}: RSS {first:.0f} -> {last:.0f} MiB (max {max(m for _, m in xs):.0f})")
    if n in ("router", "gateway") and last > first * 1.25 + 16: grew.append(n)
if bad: print("FAIL: non-retryable errors", bad)
if grew: print("FAIL: memory grew:", grew)
sys.exit(1 if bad or grew else 0)
PY
