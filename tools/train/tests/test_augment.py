"""Training-time augmentation (standard-library Python: runs in CI with the dataset tests)."""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from augment import SENTENCE_FORMS, Augmenter, term_of  # noqa: E402
from generate import READING_QUESTIONS, TEMPLATES, fill  # noqa: E402 (augment put tools/dataset on the path)

ROWS = [
    {"question": "What does the term gingivitis mean?", "answer": "inflammation of the gums", "kind": "definition"},
    {"question": "Define caries.", "answer": "a decayed tooth", "kind": "definition"},
    {"question": "What is pulpitis?", "answer": "inflammation of the dental pulp", "kind": "definition"},
    {"question": "What is halitosis?", "answer": "offensive breath", "kind": "definition"},
    {"question": "Gingivitis is a kind of what?", "answer": "periodontal disease", "kind": "category"},
    {"question": "What is another name for molar?", "answer": "grinder", "kind": "synonym"},
    {"question": "Based on the text, what is gingivitis?", "context": "Gingivitis: inflammation of the gums.",
     "answer": "inflammation of the gums", "kind": "reading"},
]


def test_terms_are_recovered_from_every_training_template():
    assert [term_of(r) for r in ROWS[:6]] == ["gingivitis", "caries", "pulpitis", "halitosis", "gingivitis", "molar"]
    for kind, templates in TEMPLATES.items():
        for template in templates["train"]:
            assert term_of({"question": fill(template, "tooth socket"), "kind": kind}) == "tooth socket"
    # A held-out template is not a training one: the row is kept as it is.
    assert term_of({"question": "Explain what gingivitis is.", "kind": "definition"}) is None


def test_an_epoch_redraws_only_training_templates_and_keeps_the_facts():
    augmenter = Augmenter(ROWS, fresh_reading=40, rng=random.Random(5))
    epoch = augmenter.epoch(closed_book_repeat=3)
    closed = [r for r in epoch if not r["kind"].startswith("reading")]
    assert len(closed) == 3 * 6
    held_out = {t for templates in TEMPLATES.values() for split in ("validation", "test") for t in templates[split]}
    for row in closed:
        term = term_of(row)
        assert term is not None, row
        original = next(r for r in ROWS[:6] if term_of(r) == term and r["kind"] == row["kind"])
        assert row["answer"] == original["answer"]
        assert all(row["question"] != fill(t, term) for t in held_out)
    # Re-drawing actually varies the question over the epochs.
    questions = {r["question"] for _ in range(5) for r in augmenter.epoch(1) if r["kind"] == "definition"}
    assert len(questions) > 4
    # The fixed reading rows stay; the fresh passages hold their answer.
    assert ROWS[6] in epoch
    fresh = [r for r in epoch if r["kind"].startswith("reading") and r is not ROWS[6]]
    assert len(fresh) == 40
    glosses = {r["answer"]: term_of(r) for r in ROWS[:4]}
    forms = ["{X}: {d}."] + SENTENCE_FORMS
    seen_forms = set()
    for row in fresh:
        sentences = row["context"].split(". ")
        assert 3 <= len(sentences) <= 4   # 3-10 glosses drawn, at most the 4 distinct terms known here
        # Every sentence of a passage is one gloss, all in one and the same form.
        form = next(f for f in forms if any(fill(f, t, g) in row["context"] for g, t in glosses.items()))
        assert sum(fill(form, t, g) in row["context"] for g, t in glosses.items()) == len(sentences)
        seen_forms.add(form)
        if row["answer"] in glosses:      # "what is X?": the answer is X's gloss, in the passage
            term = glosses[row["answer"]]
            asked = READING_QUESTIONS["define"] + TEMPLATES["definition"]["train"]
            assert row["question"] in {fill(t, term) for t in asked}
            assert fill(form, term, row["answer"]) in row["context"]
        else:                             # "which term means …?": the answer is a term of the passage
            assert row["answer"] in glosses.values()
            assert fill(form, row["answer"], "").rstrip(" .") in row["context"]
    assert seen_forms == set(forms)       # 40 passages draw every form


def test_copy_rows_repeat_training_glosses():
    augmenter = Augmenter(ROWS, fresh_reading=0, rng=random.Random(2), copies=20)
    epoch = augmenter.epoch(closed_book_repeat=1)
    copies = [r for r in epoch if r["kind"] == "copy"]
    assert len(copies) == 20
    known = {r["answer"] for r in ROWS[:4]}
    for row in copies:
        assert row["answer"] == row["context"]
        assert all(part.rstrip(".") in known for part in row["answer"].split(". "))


def test_a_curriculum_epoch_has_small_passages_and_leaves_the_fixed_ones_out():
    augmenter = Augmenter(ROWS, fresh_reading=30, rng=random.Random(3))
    glosses = {r["answer"] for r in ROWS if r["kind"] == "definition"}
    early = augmenter.epoch(closed_book_repeat=0, largest_passage=2)
    assert ROWS[6] not in early
    assert len(early) == 30
    for row in early:  # two sentences: two of the training glosses, and nothing else
        assert sum(g in row["context"] for g in glosses) == 2
    assert ROWS[6] in augmenter.epoch(closed_book_repeat=0, largest_passage=10)


def test_counterfactual_passages_pair_each_term_with_another_gloss():
    augmenter = Augmenter(ROWS, fresh_reading=40, rng=random.Random(4), counterfactual=1.0)
    truth = {term_of(r): r["answer"] for r in ROWS[:4]}
    for row in augmenter.epoch(closed_book_repeat=0, largest_passage=3):
        if row["answer"] in truth.values():         # "what is X?": X's gloss in this passage
            term = next(t for t in truth if fill("{x}", t) in row["question"])
            assert row["answer"] != truth[term]
        else:                                       # "which term means …?"
            assert row["answer"] in truth
            assert truth[row["answer"]] not in row["question"]


def test_novel_passages_and_copies_hold_text_that_is_in_no_gloss():
    augmenter = Augmenter(ROWS, fresh_reading=30, rng=random.Random(5), copies=30, novel=1.0)
    glosses = {r["answer"] for r in ROWS[:4]}
    words = {w for g in glosses for w in g.split()}
    rows = augmenter.epoch(closed_book_repeat=0, largest_passage=3)
    changed = eligible = 0
    for row in rows:
        # Still answerable from the passage, and made of gloss words only.
        assert row["answer"].lower() in row["context"].lower()
        assert set(row["context"].replace(".", " ").replace(":", " ").lower().split()) <= \
            {w.lower() for w in words} | {w.lower() for r in ROWS[:4] for w in term_of(r).split()} | \
            {"is", "means", "refers", "to"}
        if row["kind"] == "copy" or row["answer"] not in {term_of(r) for r in ROWS[:4]}:
            eligible += 1
            changed += row["answer"].rstrip(".") not in glosses
    # Half the words are redrawn (from a small pool here, so sometimes to themselves): most of
    # these two- to five-word glosses come out as new text.
    assert eligible >= 30 and changed >= 0.7 * eligible
