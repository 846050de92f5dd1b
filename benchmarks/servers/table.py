"""Prints the server-versus-server table from the load generator's report.json files.

    python table.py RESULTS_DIR "1 4 8 16"

RESULTS_DIR holds one folder per run, NAME-cCLIENTS/report.json, with NAME "ours-FORMAT" or
"llama-FORMAT" (what benchmarks/servers/run.sh writes). For each client count: tokens/s, latency
p50/p99, time to first token p50/p99, errors, and our tokens/s over llama-server's best.
"""
import json
import os
import sys


def load(results, name, clients):
    path = os.path.join(results, f"{name}-c{clients}", "report.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def main(results, clients):
    names = sorted({d.rsplit("-c", 1)[0] for d in os.listdir(results) if os.path.isdir(os.path.join(results, d))},
                   key=lambda n: (not n.startswith("ours"), n))
    print("| clients | server | tokens/s | latency p50 / p99 (ms) | first token p50 / p99 (ms) | prompt tokens | errors | tokens/s ÷ llama-server's best |")
    print("|---|---|---|---|---|---|---|---|")
    for c in clients:
        reports = {n: load(results, n, c) for n in names}
        llama = [r["throughput"]["tokens_per_s"] for n, r in reports.items() if r and n.startswith("llama")]
        best = max(llama) if llama else None
        for n, r in reports.items():
            if r is None:
                print(f"| {c} | {n} | failed | | | | | |")
                continue
            tps = r["throughput"]["tokens_per_s"]
            lat, ttft = r["latency_ms"], r.get("ttfs_ms") or {}
            prompt = r["tokens"]["prompt"] / max(1, r["ok"])
            ratio = f"{tps / best:.2f}×" if best and n.startswith("ours") else ""
            print(f"| {c} | {n} | {tps:,.1f} | {lat['p50']:,.0f} / {lat['p99']:,.0f} | "
                  f"{ttft.get('p50', 0):,.0f} / {ttft.get('p99', 0):,.0f} | {prompt:.0f} | {r['errors']} | {ratio} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], [int(c) for c in sys.argv[2].split()])
