"""Shared pieces of the demo expert training: data, prompts, batching, metrics.

Both experts see the same prompt text; the cluster hands text, not ids,
between them (ARCHITECTURE.md, "A request's walk").
"""

import json
import os
import random
import re
import string
from collections import Counter
from typing import Iterator, List


def load_rows(path: str) -> List[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def prompt_text(row: dict) -> str:
    """ "question: … context: …" — the question first, so a left-to-right
    reader (EMamba) knows what to look for while it reads the passage."""
    text = "question: " + row["question"]
    if row.get("context"):
        text += " context: " + row["context"]
    return text


# ------------------------------------------------------------------ metrics
# SQuAD-style answer normalisation: lower case, no punctuation, no articles.

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


# ------------------------------------------------------------------ batching

def length_batches(lengths: List[int], token_budget: int, max_batch: int,
                   rng: random.Random) -> Iterator[List[int]]:
    """Shuffled batches of similar length (less padding) whose padded size
    (longest x count) stays under `token_budget`."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: List[List[int]] = []
    window = 64 * max_batch
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batch: List[int] = []
        longest = 0
        for index in chunk:
            longest_if_added = max(longest, lengths[index])
            if batch and (longest_if_added * (len(batch) + 1) > token_budget or len(batch) >= max_batch):
                batches.append(batch)
                batch, longest_if_added = [], lengths[index]
            batch.append(index)
            longest = longest_if_added
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    yield from batches


def oversampled(rows: List[dict], closed_book_repeat: int) -> List[dict]:
    """Closed-book facts are short and must be memorised: repeat them per epoch."""
    out = []
    for row in rows:
        out.extend([row] * (1 if row["kind"].startswith("reading") else closed_book_repeat))
    return out


def write_json(path: str, value) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    os.replace(tmp, path)
