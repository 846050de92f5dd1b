#!/usr/bin/env python3
"""Per-replica throughput of each expert pool, for the capacity guide in README.md.

Starts `mambaformer up` with one EMamba and one ET5 replica, then for each pool drives the
gateway closed-loop (C concurrent clients, every request forced onto that pool with
"expert": POOL) for D seconds and reports answers/s, generated tokens/s and latency
percentiles, as JSON on stdout. Standard library only; run it on a quiet machine:

    python3 Deploy/measure-capacity.py --binary .build/release/mambaformer --seconds 20
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

QUESTIONS = [
    "What is gingivitis?",
    "How is periodontitis treated?",
    "What causes tooth decay in children?",
    "Which antibiotics are used for a dental abscess?",
    "What is the difference between a crown and a bridge?",
    "How often should an adult visit the dentist?",
]


def post(url, body, timeout=120):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_ready(url, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                body = json.loads(r.read())
                if body["replicas"]["emamba"] >= 1 and body["replicas"]["et5"] >= 1:
                    return
        except (urllib.error.URLError, ConnectionError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit("cluster not ready")


def drive(url, pool, clients, seconds, max_tokens):
    latencies, tokens, errors = [], [0], [0]
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def client(index):
        i = index
        while time.time() < stop_at:
            body = {"question": QUESTIONS[i % len(QUESTIONS)], "max_tokens": max_tokens, "expert": pool}
            i += clients
            start = time.time()
            try:
                answer = post(url + "/v1/answer", body)
            except Exception:  # counted, the run goes on
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(time.time() - start)
                tokens[0] += answer["usage"]["completion_tokens"]

    began = time.time()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - began
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else None

    return {
        "pool": pool, "clients": clients, "seconds": round(elapsed, 1), "answers": len(latencies),
        "errors": errors[0], "answers_per_s": round(len(latencies) / elapsed, 2),
        "tokens_per_s": round(tokens[0] / elapsed, 1),
        "tokens_per_answer": round(tokens[0] / max(1, len(latencies)), 1),
        "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/release/mambaformer")
    parser.add_argument("--model", default="models/demo")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--stop-at-eos", action="store_true",
                        help="let answers end at EOS (default: every answer runs to --max-tokens, so that "
                             "tokens/s measure decoding whatever the model says)")
    args = parser.parse_args()

    url = f"http://127.0.0.1:{args.port}"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if not args.stop_at_eos:
        env["MAMBAFORMER_EXPERT_IGNORE_EOS"] = "true"   # [expert] ignore_eos, through the environment
    up = subprocess.Popen([args.binary, "up", "--model", args.model, "--emamba", "1", "--et5", "1",
                           "--http", f"127.0.0.1:{args.port}", "--log-level", "warning"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, 120)
        results = []
        for pool in ["emamba", "et5"]:
            for clients in args.clients:
                result = drive(url, pool, clients, args.seconds, args.max_tokens)
                print(json.dumps(result), file=sys.stderr)
                results.append(result)
        print(json.dumps({"cpu_count": os.cpu_count(), "max_tokens": args.max_tokens,
                          "ignore_eos": not args.stop_at_eos, "runs": results}, indent=2))
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


if __name__ == "__main__":
    main()
