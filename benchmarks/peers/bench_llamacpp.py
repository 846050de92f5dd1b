#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python's low-level API) on a GGUF of the random mamba-130m.

    OMP_NUM_THREADS=1 $PEERS_VENV/bin/python benchmarks/peers/bench_llamacpp.py GGUF --threads 1

Cells, as engine-bench's Mamba run:
- prefill: --prompt random tokens into an empty sequence, one llama_decode (logits of the last).
- decode per step at each batch size: B sequences each prefilled with 16 tokens, then
  --steps steps; one step is ONE llama_decode of a llama_batch holding one token for each of
  the B sequences (seq ids 0…B−1, i.e. continuous batching over B recurrent states), then a
  greedy argmax per sequence. If llama.cpp refuses the batched step (non-zero return), the
  B sequences are stepped one after another instead and the line says "mode": "sequential".
- peak RSS of this process (ru_maxrss; the GGUF is memory-mapped, as our safetensors).
Median of --repeat runs (best too), after one warm-up run. Prints JSON lines.
"""
import ctypes
import os
import random
import statistics
import sys
import time

import cells

p = cells.arguments("the mamba-130m GGUF")
p.add_argument("--verbose", action="store_true", help="keep llama.cpp's own log on stderr")
a = p.parse_args()
a.gguf = a.model
os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
import numpy as np  # noqa: E402
import llama_cpp as L  # noqa: E402

if not a.verbose:
    @L.llama_log_callback
    def _quiet(level, text, user_data):
        pass
    L.llama_log_set(_quiet, ctypes.c_void_p())

max_batch = max(int(b) for b in a.batches.split(","))
L.llama_backend_init()
mp = L.llama_model_default_params()
mp.n_gpu_layers = 0
model = L.llama_model_load_from_file(a.gguf.encode(), mp)
if not model:
    sys.exit(f"llama.cpp could not load {a.gguf} (run with --verbose for its log)")
cp = L.llama_context_default_params()
cp.n_ctx = max(1024, a.prompt + a.steps + 32)
cp.n_batch = cp.n_ubatch = max(a.prompt, 16 * max_batch, 512)
cp.n_seq_max = max_batch                    # one recurrent state per sequence
cp.n_threads = cp.n_threads_batch = a.threads
ctx = L.llama_init_from_model(model, cp)
if not ctx:
    sys.exit("llama.cpp could not create a context (run with --verbose for its log)")
n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
memory = L.llama_get_memory(ctx)
batch = L.llama_batch_init(cp.n_batch, 0, 1)
rng = random.Random(0)
cells.emit(impl="llama.cpp", llama_cpp_python=L.__version__, threads=a.threads,
           n_vocab=n_vocab, gguf_mib=round(os.path.getsize(a.gguf) / 2**20),
           system_info=L.llama_print_system_info().decode(errors="replace").strip())


def decode(entries):
    """One llama_decode of (token, pos, seq, want_logits) entries; returns llama.cpp's code."""
    batch.n_tokens = len(entries)
    for i, (tok, pos, seq, want) in enumerate(entries):
        batch.token[i] = tok
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = want
    return L.llama_decode(ctx, batch)


def argmax(i):
    return int(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).argmax())


def checked(code, what):
    if code != 0:
        sys.exit(f"llama_decode failed ({code}) during {what}")


def prefill():
    L.llama_memory_clear(memory, True)
    ids = [rng.randrange(1, n_vocab) for _ in range(a.prompt)]
    t = time.perf_counter()
    checked(decode([(tok, pos, 0, pos == a.prompt - 1) for pos, tok in enumerate(ids)]), "prefill")
    argmax(a.prompt - 1)
    return time.perf_counter() - t


def decode_steps(b, batched):
    """Seconds per step for --steps steps of b sequences, and how many tokens were produced."""
    L.llama_memory_clear(memory, True)
    for seq in range(b):
        checked(decode([(rng.randrange(1, n_vocab), pos, seq, pos == 15) for pos in range(16)]), "prefill 16")
    tokens = [rng.randrange(1, n_vocab) for _ in range(b)]
    produced = 0
    t = time.perf_counter()
    for step in range(a.steps):
        pos = 16 + step
        if batched:
            code = decode([(tokens[seq], pos, seq, True) for seq in range(b)])
            if code != 0:
                return None, code
            tokens = [argmax(seq) for seq in range(b)]
        else:
            for seq in range(b):
                checked(decode([(tokens[seq], pos, seq, True)]), "sequential step")
                tokens[seq] = argmax(0)
        produced += b
    dt = (time.perf_counter() - t) / a.steps
    if produced != b * a.steps:
        sys.exit(f"expected {b * a.steps} tokens, produced {produced}")
    return dt, tokens


cells.prefill_line(a.prompt, *cells.timed(prefill, a.repeat))
for b in cells.batches(a):
    mode = "batched"
    first, code = decode_steps(b, True)  # warm-up, and whether batched steps work
    if first is None:
        cells.emit(note=f"llama_decode refused a batch of {b} sequences (code {code}): stepping them one after another")
        mode = "sequential"
    runs = [decode_steps(b, mode == "batched") for _ in range(a.repeat)]
    times = [dt for dt, _ in runs]
    cells.decode_line(b, a.steps, statistics.median(times), min(times), mode=mode, last_tokens=runs[-1][1])
cells.rss_line()
L.llama_batch_free(batch)
L.llama_free(ctx)
L.llama_model_free(model)
