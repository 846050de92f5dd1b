#!/usr/bin/env python3
"""Can the ET5 shape learn to copy? A diagnostic with no data: random token sequences in, the
same sequence out, for a few minutes, with the LM head untied (T5 v1.1, the demo's default) or
tied to the embedding (the original T5, `train.py --tie-embeddings`).

    /opt/refenv/bin/python tools/train/copy_probe.py --minutes 8            # untied
    /opt/refenv/bin/python tools/train/copy_probe.py --minutes 8 --tied

With `--out DIR` (a folder holding the ET5 tokenizer.json) the trained weights are exported as
an ET5 folder, so that `train.py et5 --resume DIR` starts from a model that already copies:
synthetic pre-training for the copy half of reading, which the real rows teach only slowly
(a gloss repeats "of" and "the", so following it position by position is ambiguous at first).

Reading a passage is finding the term and then copying what follows it. The copying has to work
on text the model has never seen, and this measures exactly that: every sequence is new, so
token accuracy above chance (1 / vocab) is copying and nothing else.
"""

import argparse
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import build_et5, export, learning_rate, optimizer_for  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--tied", action="store_true")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=20, help="longest random sequence (from 5)")
    parser.add_argument("--out", default=None, help="export the weights here (holds tokenizer.json)")
    args = parser.parse_args()
    if args.out:
        from tokenizers import Tokenizer
        args.vocab = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json")).get_vocab_size()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    model = build_et5(args.vocab, tied=args.tied)
    optimizer = optimizer_for(model, args.lr)
    budget = args.minutes * 60
    start, step = time.time(), 0
    while time.time() - start < budget:
        length = rng.randint(5, args.max_length)
        source = torch.randint(3, args.vocab, (args.batch, length))  # ids 0-2: pad, </s>, <unk>
        source = torch.cat([source, torch.ones(args.batch, 1, dtype=torch.long)], 1)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args.lr, (time.time() - start) / budget)
        out = model(input_ids=source, attention_mask=torch.ones_like(source), labels=source)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0:
            # Teacher-forced accuracy on this batch, the final </s> left out.
            hits = (out.logits.argmax(-1) == source)[:, :-1].float().mean().item()
            print(f"step {step} t={(time.time() - start) / 60:.1f}min loss={out.loss.item():.3f} "
                  f"token accuracy={hits:.2f}", flush=True)
    if args.out:
        # `training` as train.py writes it, so a resumed run lists this one under earlier_runs.
        record = {"expert": "et5", "training": {"copy_pretraining": True} | {k: getattr(args, k) for k in (
            "vocab", "minutes", "tied", "lr", "batch", "max_length")},
                  "progress": {"steps": step, "minutes": args.minutes, "finished": True}}
        model.eval()
        export(model, "et5", args.out, os.path.join(args.out, "tokenizer.json"), record)


if __name__ == "__main__":
    main()
