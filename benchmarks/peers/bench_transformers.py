#!/usr/bin/env python3
"""transformers (eager, f32, torch CPU) on the random checkpoints engine-bench wrote: its cells.

    OMP_NUM_THREADS=1 $PEERS_VENV/bin/python benchmarks/peers/bench_transformers.py DIR --threads 1

DIR is engine-bench's `write-t5small` or `write-mamba130m` folder, loaded as it is (no
conversion). Cells, as engine-bench measures them:
- prefill: Mamba, one forward over --prompt tokens; T5, the encoder over --prompt tokens
  plus the first decoder step (everything before the first generated token). Batch 1.
- decode per step at each batch size, with the model's own cache: Mamba after a 16-token
  prompt per sequence; T5 after encoding 16-token sources. Greedy, --steps steps, one token
  per sequence per step; the prompt / encoder and the first step are not timed.
- peak RSS of this process (ru_maxrss).
Median of --repeat runs (best too), after one warm-up run of each shape. Prints JSON lines
with the keys of engine-bench and the other peers' scripts.
"""
import os
import time

import cells

p = cells.arguments("a folder engine-bench wrote (write-t5small or write-mamba130m)")
a = p.parse_args()
a.dir = a.model
os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402  (after OMP_NUM_THREADS)
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM  # noqa: E402

torch.set_num_threads(a.threads)
config = AutoConfig.from_pretrained(a.dir)
seq2seq = config.is_encoder_decoder
loader = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
model = loader.from_pretrained(a.dir, dtype=torch.float32).eval()
vocab = config.vocab_size
generator = torch.Generator().manual_seed(0)
cells.emit(impl="transformers", version=transformers.__version__, torch=torch.__version__,
           threads=a.threads, model_type=config.model_type)


def tokens(batch, length):
    return torch.randint(3, vocab, (batch, length), generator=generator)


def prefill():
    ids = tokens(1, a.prompt)
    t = time.perf_counter()
    if seq2seq:
        start = torch.full((1, 1), config.decoder_start_token_id, dtype=torch.long)
        model(input_ids=ids, decoder_input_ids=start, use_cache=True)
    else:
        model(ids, use_cache=True)
    return time.perf_counter() - t


def decode_step_seconds(batch):
    """Seconds per greedy step over `a.steps` steps, cache primed and the first step untimed."""
    if seq2seq:
        encoded = model.get_encoder()(input_ids=tokens(batch, 16))
        start = torch.full((batch, 1), config.decoder_start_token_id, dtype=torch.long)
        out = model(encoder_outputs=encoded, decoder_input_ids=start, use_cache=True)

        def step(tok, out):
            return model(encoder_outputs=encoded, decoder_input_ids=tok, past_key_values=out.past_key_values,
                         use_cache=True)
    else:
        prompt = tokens(batch, 16)
        out = model(prompt, use_cache=True)
        position = prompt.shape[1]

        def step(tok, out):
            nonlocal position
            # Mamba's cache needs the position of the new token (its conv state's slot).
            result = model(tok, cache_params=out.cache_params, use_cache=True,
                           cache_position=torch.tensor([position]))
            position += 1
            return result
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    t = time.perf_counter()
    for _ in range(a.steps):
        out = step(tok, out)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
    return (time.perf_counter() - t) / a.steps


with torch.no_grad():
    cells.prefill_line(a.prompt, *cells.timed(prefill, a.repeat))
    for batch in cells.batches(a):
        cells.decode_line(batch, a.steps, *cells.timed(lambda: decode_step_seconds(batch), a.repeat))
cells.rss_line()
