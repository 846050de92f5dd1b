#!/usr/bin/env python3
"""Reads the JSON lines that run.sh collected and prints one Markdown table per model.

    python3 benchmarks/peers/table.py RESULTS_DIR

RESULTS_DIR holds `<model>-<engine>-t<threads>.jsonl` files (engine-bench and the peers'
scripts print the same keys). Figures are medians. "ratio" is the peer's figure ÷ ours
(f32 weights, and bf16 / int8 / w8a8 weights when `ours_bf16` / `ours_int8` /
`ours_w8a8` ran): above 1 means our engine is faster (or
smaller, for RSS). Standard library only.
"""
import glob
import json
import os
import re
import sys

results = sys.argv[1] if len(sys.argv) > 1 else "/tmp/peers/results"
runs = {}
for path in sorted(glob.glob(os.path.join(results, "*.jsonl"))):
    m = re.match(r"(t5|mamba)-([a-z0-9_]+)-t(\d+)\.jsonl$", os.path.basename(path))
    if not m:
        continue
    cells = {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if d.get("bench") == "prefill":
            cells["prefill"] = d.get("ms_median", d.get("ms"))
        elif d.get("bench") == "decode":
            cells[f"decode{d['batch']}"] = d.get("ms_per_step_median", d.get("ms_per_step"))
            if d.get("mode") == "sequential":
                cells[f"decode{d['batch']}_note"] = "sequential"
        elif "peak_rss_mib" in d:
            cells["rss"] = d["peak_rss_mib"]
    runs[(m.group(1), m.group(2), int(m.group(3)))] = cells

ROWS = {
    "t5": [("prefill", "encoder 256 tokens + 1 decoder step (ms)"),
           ("decode1", "decode batch 1, per step = per token (ms)"),
           ("decode8", "decode batch 8, per step of 8 tokens (ms)"),
           ("rss", "peak RSS (MiB)")],
    "mamba": [("prefill", "prefill 256 tokens (ms)"),
              ("decode1", "decode batch 1, per step = per token (ms)"),
              ("decode8", "decode batch 8, per step of 8 tokens (ms)"),
              ("rss", "peak RSS (MiB)")],
}
PEERS = {"t5": [("ct2_f32", "CTranslate2 fp32"), ("ct2_int8", "CTranslate2 int8"),
                ("transformers", "transformers f32")],
         "mamba": [("llamacpp", "llama.cpp f32"), ("transformers", "transformers f32")]}
TITLES = {"t5": "ET5, random t5-small (f32 safetensors)", "mamba": "EMamba, random mamba-130m (f32 safetensors)"}


def fmt(v):
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


threads = sorted({t for (_, _, t) in runs})
for model in ("t5", "mamba"):
    if not any(k[0] == model for k in runs):
        continue
    peers = PEERS[model]
    variants = [v for v in (("ours", "f32"), ("ours_bf16", "bf16"), ("ours_int8", "int8"),
                                 ("ours_w8a8", "w8a8"))
                if any(k[:2] == (model, v[0]) for k in runs)]
    print(f"\n### {TITLES[model]}\n")
    head = "| threads | cell |" + "".join(f" ours {w} |" for _, w in variants)
    head += "".join(f" {name} |" + "".join(f" ÷ ours {w} |" for _, w in variants) for _, name in peers)
    print(head)
    print("|" + "---|" * (2 + len(variants) + len(peers) * (1 + len(variants))))
    for t in threads:
        ours = [runs.get((model, engine, t), {}) for engine, _ in variants]
        for key, label in ROWS[model]:
            row = f"| {t} | {label} |" + "".join(f" {fmt(o.get(key))} |" for o in ours)
            for peer, _ in peers:
                theirs = runs.get((model, peer, t), {})
                v = theirs.get(key)
                note = " (one after another)" if theirs.get(key + "_note") else ""
                row += f" {fmt(v)}{note} |"
                for o in ours:
                    row += f" {v / o[key]:.2f}× |" if v is not None and o.get(key) else " — |"
            print(row)
print("\nratio = peer ÷ ours (above 1: ours faster, or smaller for RSS); medians.")
