#!/usr/bin/env python3
"""transformers (eager, f32, CPU) on the same random checkpoint as engine-bench, same shapes.

    OPENBLAS_CORETYPE=SkylakeX OMP_NUM_THREADS=1 /opt/refenv/bin/python benchmarks/engine/bench_transformers.py DIR --threads 1

Prints JSON lines like engine-bench: prefill of --prompt tokens, then --steps decode steps at
each batch size (cache reused, one token per sequence per step), best of --repeat.
Pinned versions: tools/fixtures/requirements.txt.
"""
import argparse
import json
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--prompt", type=int, default=256)
p.add_argument("--steps", type=int, default=32)
p.add_argument("--batches", default="1,8")
p.add_argument("--repeat", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
model = AutoModelForCausalLM.from_pretrained(a.dir, dtype=torch.float32).eval()
vocab = model.config.vocab_size
print(json.dumps({"impl": "transformers", "threads": a.threads}))
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    ids = torch.randint(1, vocab, (1, a.prompt), generator=g)
    best = float("inf")
    for _ in range(a.repeat):
        t = time.perf_counter(); model(ids, use_cache=True); best = min(best, time.perf_counter() - t)
    print(json.dumps({"bench": "prefill", "tokens": a.prompt, "ms": round(best * 1000, 1)}))
    for batch in [int(b) for b in a.batches.split(",")]:
        best = float("inf")
        for _ in range(a.repeat):
            out = model(torch.randint(1, vocab, (batch, 16), generator=g), use_cache=True)
            cache = out.cache_params if hasattr(out, "cache_params") else out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            t = time.perf_counter()
            for _ in range(a.steps):
                out = model(tok, cache_params=cache, use_cache=True) if hasattr(out, "cache_params") else model(tok, past_key_values=cache, use_cache=True)
                cache = out.cache_params if hasattr(out, "cache_params") else out.past_key_values
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
            best = min(best, (time.perf_counter() - t) / a.steps)
        print(json.dumps({"bench": "decode", "batch": batch, "steps": a.steps, "ms_per_step": round(best * 1000, 2),
                          "ms_per_token": round(best * 1000 / batch, 2)}))
print(json.dumps({"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
