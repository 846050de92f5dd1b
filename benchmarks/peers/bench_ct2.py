#!/usr/bin/env python3
"""CTranslate2 (T5) on a converted random t5-small checkpoint: the cells of engine-bench's T5 run.

    OMP_NUM_THREADS=1 $PEERS_VENV/bin/python benchmarks/peers/bench_ct2.py DIR --threads 1

DIR is a `ct2-transformers-converter` output (fp32, or `--quantization int8`); the model is
loaded with `compute_type="default"` (what was converted).

Cells (greedy, beam 1, every run decodes exactly N tokens: min = max decoding length):
- prefill: encoder over --prompt tokens + 1 decoder step (everything before the first
  generated token), batch 1; as engine-bench's T5 "prefill".
- decode per step at each batch size: sources of 16 tokens (as engine-bench), 1 + --steps
  decoded tokens; translate_batch's per-step callback timestamps each step, and a step's
  time is (last stamp − first stamp) / steps, so the encoder and the first decoder step
  are left out (as engine-bench times only `step` calls). Every output length is checked.
- peak RSS of this process (ru_maxrss).
Median of --repeat runs (best too), after one warm-up run of each shape. Prints JSON lines.
"""
import json
import os
import random
import time

import cells

p = cells.arguments("a ct2-transformers-converter output folder")
a = p.parse_args()
a.dir = a.model
os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
import ctranslate2  # noqa: E402  (after OMP_NUM_THREADS)

translator = ctranslate2.Translator(a.dir, device="cpu", compute_type="default",
                                    inter_threads=1, intra_threads=a.threads)
# The vocabulary as strings (CTranslate2 takes tokens, not ids); skip <pad> </s> <unk>.
with open(os.path.join(a.dir, "shared_vocabulary.json")) as f:
    vocab = json.load(f)
words = vocab[3:]
rng = random.Random(0)
weights = os.path.getsize(os.path.join(a.dir, "model.bin"))
cells.emit(impl="ctranslate2", version=ctranslate2.__version__, threads=a.threads,
           compute_type=translator.compute_type, model_bin_mib=round(weights / 2**20))


def run(batch, source_len, new_tokens):
    """One translate_batch of `batch` random sources decoding exactly `new_tokens` each:
    (total seconds, seconds per decoder step after the first)."""
    sources = [[rng.choice(words) for _ in range(source_len)] for _ in range(batch)]
    stamps = []

    def on_step(result):  # called once per example per step, after the step; stamp once per step
        if result.batch_id == 0:
            stamps.append(time.perf_counter())

    t = time.perf_counter()
    out = translator.translate_batch(sources, beam_size=1, max_decoding_length=new_tokens,
                                     min_decoding_length=new_tokens, return_end_token=True,
                                     callback=on_step)
    dt = time.perf_counter() - t
    lengths = [len(r.hypotheses[0]) for r in out]
    if lengths != [new_tokens] * batch or len(stamps) != new_tokens:
        raise SystemExit(f"expected {new_tokens} tokens per sequence, got {lengths} ({len(stamps)} steps)")
    per_step = (stamps[-1] - stamps[0]) / (new_tokens - 1) if new_tokens > 1 else None
    global last_tokens
    last_tokens = [r.hypotheses[0][-1] for r in out]
    return dt, per_step


med, best = cells.timed(lambda: run(1, a.prompt, 1)[0], a.repeat)
cells.prefill_line(a.prompt, med, best)
for batch in cells.batches(a):
    med, best = cells.timed(lambda: run(batch, 16, 1 + a.steps)[1], a.repeat)
    cells.decode_line(batch, a.steps, med, best, last_tokens=last_tokens)
cells.rss_line()
# Release the translator's worker threads before the interpreter shuts down (otherwise its
# thread pool can abort the process at exit after a run with a Python callback).
del translator
