#!/usr/bin/env python3
"""Can the ET5 shape learn to copy? A diagnostic with no data: random token sequences in, the
same sequence out, for a few minutes, with the LM head untied (T5 v1.1, the demo's default) or
tied to the embedding (the original T5, `train.py --tie-embeddings`).

    $REF_PYTHON tools/train/probes/copy_probe.py --minutes 8            # untied
    $REF_PYTHON tools/train/probes/copy_probe.py --minutes 8 --tied

With `--out DIR` (a folder holding the ET5 tokenizer.json) the trained weights are exported as
an ET5 folder, so that `train.py et5 --resume DIR` starts from a model that already copies:
synthetic pre-training for the copy half of reading, which the real rows teach only slowly
(a gloss repeats "of" and "the", so following it position by position is ambiguous at first).

Reading a passage is finding the term and then copying what follows it. The copying has to work
on text the model has never seen, and this measures exactly that: every sequence is new, so
token accuracy above chance (1 / vocab) is copying and nothing else.

`--task recall` is the finding half, as associative recall: a query key, then 2 to `--pairs`
random "key : value ." pairs; the answer is the query's value. The first answer token is the
choice of the pair (chance 1 / pairs once the model copies some value). `--resume DIR` starts
from an exported ET5 folder, e.g. the copy task's:

    copy_probe.py --tied --minutes 18 --max-length 24 --out COPY
    copy_probe.py --tied --task recall --resume COPY --minutes 25 --out RECALL

Recall has a phase change, as copying has, but a later one: the first answer token stayed at
chance for the first 25 minutes (2,050 steps) and reached 0.97-1.00 only after about 80
minutes in all (runs of 25 + 30 + 45 minutes, each resumed from the last). Passages trained
after that find the asked gloss; passages trained after 55 minutes of recall do not.
"""

import argparse
import os
import random
import sys
import time

import torch
from torch.nn.utils.rnn import pad_sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/train
from train import build_et5, earlier_runs, export, learning_rate, load_previous, optimizer_for  # noqa: E402


def copy_batch(args, rng):
    """Random ids in, the same ids out."""
    length = rng.randint(5, args.max_length)
    source = torch.randint(3, args.vocab, (args.batch, length))  # ids 0-2: pad, </s>, <unk>
    source = torch.cat([source, torch.ones(args.batch, 1, dtype=torch.long)], 1)
    return source, torch.ones_like(source), source.clone()


# Marker ids of the recall task (real vocabulary entries, used here only as separators).
QUERY_END, KEY_END, VALUE_END = 3, 4, 5


def recall_batch(args, rng):
    """Associative recall, the find half of reading: "k : v . k : v . …" after a query key; the
    answer is the query's value. Keys of 1-2 random ids, values of 3-8, 2 to --pairs pairs."""
    sources, targets = [], []
    for _ in range(args.batch):
        pairs = [([rng.randrange(6, args.vocab) for _ in range(rng.randint(1, 2))],
                  [rng.randrange(6, args.vocab) for _ in range(rng.randint(3, 8))])
                 for _ in range(rng.randint(2, args.pairs))]
        key, value = rng.choice(pairs)
        passage = [t for k, v in pairs for t in k + [KEY_END] + v + [VALUE_END]]
        sources.append(key + [QUERY_END] + passage + [1])
        targets.append(value + [1])
    def pad(rows, value):
        return pad_sequence([torch.tensor(r) for r in rows], batch_first=True, padding_value=value)
    source = pad(sources, 0)
    return source, (source != 0).long(), pad(targets, -100)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=("copy", "recall"), default="copy")
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--tied", action="store_true")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=20, help="copy: longest random sequence (from 5)")
    parser.add_argument("--pairs", type=int, default=6, help="recall: most key-value pairs (from 2)")
    parser.add_argument("--resume", default=None, help="start from an exported ET5 folder (e.g. a copy run)")
    parser.add_argument("--out", default=None, help="export the weights here (holds tokenizer.json)")
    args = parser.parse_args()
    if args.out:
        from tokenizers import Tokenizer
        args.vocab = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json")).get_vocab_size()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    model = build_et5(args.vocab, tied=args.tied)
    earlier = load_previous(model, "et5", args.resume) if args.resume else None
    optimizer = optimizer_for(model, args.lr)
    budget = args.minutes * 60
    start, step = time.time(), 0
    make_batch = copy_batch if args.task == "copy" else recall_batch
    while time.time() - start < budget:
        source, mask, labels = make_batch(args, rng)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args.lr, (time.time() - start) / budget)
        out = model(input_ids=source, attention_mask=mask, labels=labels)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0:
            # Teacher-forced accuracy on this batch, the final </s> left out; and on the first
            # answer token alone, which in recall is the choice of the pair.
            hits = out.logits.argmax(-1) == labels
            answer = (labels != -100) & (labels != 1)
            accuracy = (hits & answer).sum().item() / answer.sum().item()
            print(f"step {step} t={(time.time() - start) / 60:.1f}min loss={out.loss.item():.3f} "
                  f"token accuracy={accuracy:.2f} first token={hits[:, 0].float().mean().item():.2f}",
                  flush=True)
    if args.out:
        # `training` as train.py writes it, so a resumed run lists this one under earlier_runs.
        record = {"expert": "et5", "training": {"synthetic_pretraining": args.task} | {k: getattr(args, k) for k in (
            "vocab", "minutes", "tied", "lr", "batch", "max_length", "pairs", "resume")},
                  "progress": {"steps": step, "minutes": args.minutes, "finished": True}}
        if earlier:
            record["earlier_runs"] = earlier_runs(earlier)
        model.eval()
        export(model, "et5", args.out, os.path.join(args.out, "tokenizer.json"), record)


if __name__ == "__main__":
    main()
