"""The reading probe's items (standard-library Python: runs in CI with the dataset tests)."""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "probes"))
from common import load_rows  # noqa: E402
from reading_probe import find_items, unseen_glosses  # noqa: E402
from generate import passage_sentence  # noqa: E402 (reading_probe put tools/dataset on the path)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data")

VALIDATION = [
    {"question": "According to the passage, what is pulpitis?", "answer": "inflammation of the pulp",
     "context": "Caries: a decayed tooth. Pulpitis: inflammation of the pulp.", "kind": "reading"},
    {"question": "Which term in the passage means: offensive breath?", "answer": "halitosis",
     "context": "Halitosis: offensive breath. Glossitis: inflammation of the tongue.", "kind": "reading"},
    # A gloss the training text also has: not unseen, so left out.
    {"question": "Based on the text, what is gingivitis?", "answer": "inflammation of the gums",
     "context": "Gingivitis: inflammation of the gums.", "kind": "reading"},
    {"question": "What is caries?", "answer": "a decayed tooth", "kind": "definition"},
]
TRAIN = [{"question": "What does the term gingivitis mean?", "answer": "inflammation of the gums",
          "kind": "definition"}]


def test_both_reading_directions_give_term_and_gloss_and_seen_glosses_are_dropped():
    assert unseen_glosses(VALIDATION, TRAIN) == [("halitosis", "offensive breath"),
                                                 ("pulpitis", "inflammation of the pulp")]


def test_the_committed_validation_split_gives_hundreds_of_glosses_absent_from_training():
    train = load_rows(os.path.join(DATA, "train.jsonl"))
    pairs = unseen_glosses(load_rows(os.path.join(DATA, "validation.jsonl")), train)
    assert len(pairs) > 400
    training_text = "\n".join(r.get("context", "") + "\n" + r["answer"] for r in train)
    assert not any(gloss in training_text for _, gloss in pairs)


def test_a_find_item_holds_the_asked_gloss_and_distinct_others():
    pairs = [(f"term{i}", f"gloss number {i}") for i in range(30)]
    for size in (2, 6):
        for row, gloss, others in find_items(pairs, size, 10, random.Random(1)):
            term = row["question"].removeprefix("According to the passage, what is ").removesuffix("?")
            assert passage_sentence(term, gloss) in row["context"]
            assert len(others) == size - 1 and gloss not in others
            assert all(g in row["context"] for g in others)
