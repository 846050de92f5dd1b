"""Does a trained ET5 use its encoder? Compares the loss on training rows with their own
prompt against the loss with another row's prompt (encoder inputs rotated by one). A model
that has only learned the distribution of answers scores the same on both; one that reads
its input scores much worse when the input is wrong.

    OMP_NUM_THREADS=1 python tools/train/encoder_probe.py models/demo/et5 [--rows 32]
"""
import argparse
import json
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import train  # noqa: E402  (Et5Examples: the exact encoding used in training)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--data", default="data/train.jsonl")
    parser.add_argument("--rows", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration
    model = T5ForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    examples = train.Et5Examples(Tokenizer.from_file(os.path.join(args.model, "tokenizer.json")))
    with open(args.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rng = random.Random(0)
    kinds = sorted({r["kind"] for r in rows})
    print(f"{'kind':<14} {'own prompt':>10} {'wrong prompt':>12} {'gap':>6}")
    for kind in kinds:
        chosen = [r for r in rows if r["kind"] == kind]
        rng.shuffle(chosen)
        pairs = [examples.encode(r) for r in chosen[:args.rows]]
        rotated = [(pairs[(i + 1) % len(pairs)][0], pairs[i][1]) for i in range(len(pairs))]
        with torch.no_grad():
            own = model(**examples.collate(pairs)).loss.item()
            wrong = model(**examples.collate(rotated)).loss.item()
        print(f"{kind:<14} {own:>10.3f} {wrong:>12.3f} {wrong - own:>6.3f}")


if __name__ == "__main__":
    main()
