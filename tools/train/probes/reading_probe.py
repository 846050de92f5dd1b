#!/usr/bin/env python3
"""Can an exported expert read? Three probes on glosses it has never seen.

    $REF_PYTHON tools/train/probes/reading_probe.py et5 models/demo/et5 [--items 40]

The glosses come from the validation split's reading questions, whose synsets are held out
of training (the split is by synset), so no answer can be recalled from memory:

- repeat:  "Repeat the text." with one unseen gloss as the context. Word F1 and exact
           match of the answer against the gloss: can the model copy its input at all?
- find-2:  "According to the passage, what is X?" over a passage of X's gloss and one
           other unseen gloss. `right` counts answers that are X's gloss (F1 >= 0.5),
           `other` those that copy the other gloss: copying without finding shows as
           right ~ other.
- find-6:  the same with five other glosses, the dataset's smallest passages.

Greedy decoding in transformers, as evaluate.py. The probe sets are drawn with a fixed seed,
so two checkpoints are compared on the same items.
"""

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/train
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dataset"))  # tools/dataset
from augment import _pattern  # noqa: E402
from common import exact_match, load_rows, token_f1  # noqa: E402
from generate import READING_QUESTIONS, passage_sentence  # noqa: E402


def unseen_glosses(rows, train_rows):
    """(term, gloss) of every synset a validation reading question asks about, less the few
    glosses that also occur in the training text (WordNet repeats some glosses)."""
    define = [_pattern(t) for t in READING_QUESTIONS["define"]]
    name = [_pattern(t.replace("{d}", "{x}")) for t in READING_QUESTIONS["name"]]
    pairs = {}
    for row in rows:
        if not row["kind"].startswith("reading"):
            continue
        for pattern in define:
            match = pattern.match(row["question"])
            if match:
                pairs[match.group("term")] = row["answer"]
        for pattern in name:
            match = pattern.match(row["question"])
            if match:
                pairs[row["answer"]] = match.group("term")
    # Keep the pairs whose sentence really is in the passage (the parse is by template).
    contexts = " ".join(row.get("context", "") for row in rows)
    seen = "\n".join(row.get("context", "") + "\n" + row["answer"] for row in train_rows)
    return sorted((t, g) for t, g in pairs.items()
                  if passage_sentence(t, g) in contexts and g not in seen)


def find_items(pairs, size, count, rng):
    items = []
    for term, gloss in rng.sample(pairs, count):
        others = [p for p in rng.sample(pairs, size + 2) if p[0] != term][:size - 1]
        members = [(term, gloss)] + others
        rng.shuffle(members)
        items.append(({"question": f"According to the passage, what is {term}?",
                       "context": " ".join(passage_sentence(t, g) for t, g in members)},
                      gloss, [g for _, g in others]))
    return items


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("expert", choices=("et5", "emamba"))
    parser.add_argument("folder")
    parser.add_argument("--data", default="data")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--show", type=int, default=3, help="answers printed per probe")
    args = parser.parse_args()

    import torch
    from evaluate import Expert  # torch and transformers: only here, so the tests need neither
    torch.set_num_threads(1)
    expert = Expert(args.expert, args.folder)
    pairs = unseen_glosses(load_rows(os.path.join(args.data, "validation.jsonl")),
                           load_rows(os.path.join(args.data, "train.jsonl")))
    rng = random.Random(args.seed)
    print(f"{args.folder}: {len(pairs)} unseen glosses, {args.items} items per probe")

    repeat_f1, repeat_exact = [], []
    for i, (_, gloss) in enumerate(rng.sample(pairs, args.items)):
        text = gloss + "."
        answer = expert.answer({"question": "Repeat the text.", "context": text})[0]
        repeat_f1.append(token_f1(answer, text))
        repeat_exact.append(exact_match(answer, text))
        if i < args.show:
            print(f"  repeat  {text!r}\n       -> {answer!r}")
    print(f"repeat: word F1 {sum(repeat_f1) / len(repeat_f1):.3f}, "
          f"exact {100 * sum(repeat_exact) / len(repeat_exact):.0f} %")

    for size in (2, 6):
        right = other = 0
        f1 = []
        for i, (row, gloss, others) in enumerate(find_items(pairs, size, args.items, rng)):
            answer = expert.answer(row)[0]
            score = token_f1(answer, gloss)
            f1.append(score)
            if score >= 0.5:
                right += 1
            elif any(token_f1(answer, g) >= 0.5 for g in others):
                other += 1
            if i < args.show:
                print(f"  find-{size}  {row['question']!r}\n       -> {answer!r}  (gloss {gloss!r})")
        n = len(f1)
        print(f"find-{size}: F1 {sum(f1) / n:.3f}, right {100 * right / n:.0f} %, "
              f"other gloss {100 * other / n:.0f} %")


if __name__ == "__main__":
    main()
