"""Training-time augmentation: a new epoch of questions from the same training facts.

Two things the fixed training file does not teach well enough:
- Paraphrase robustness. Each closed-book fact appears under one training template,
  so the model learns "What does the term gingivitis mean?" but not "What is
  gingivitis?". Each epoch re-draws the question from the *training* templates of
  its kind (validation and test templates stay held out).
- Reading, i.e. copying from the passage. The fixed reading rows are few enough to be
  memorised, and their targets are training synsets whose glosses the closed-book
  rows also teach. Fresh passages every epoch, built from the training glosses, make
  finding and copying the answer the only strategy that keeps working. Half of them are
  phrased as users write ("Halitosis is offensive breath.", "What is halitosis?") rather
  than in the dataset's "Halitosis: offensive breath." / "According to the passage, …", so
  that reading does not hinge on one layout.

Optionally (`counterfactual`), a share of the passages pairs each term with another member's
gloss. The fresh passages reuse the training glosses, so a model can lower its loss by recalling
the gloss it memorised for the term instead of reading; a passage that says otherwise takes
that shortcut away.

Optionally (`novel`), a share of the passages and copy rows uses glosses with half their words
swapped for random gloss words. Passages built from training glosses can be "copied" from memory
once the first word is chosen, which does not carry over to a passage the model has never seen;
text that exists nowhere else can only be copied from the input.

Optionally (`copies`), rows that repeat a gloss: the simplest task that needs the encoder,
for an encoder-decoder that has learned to ignore its input.

Only training rows are used, so test passages still ask about unseen synsets.
"""

import os
import random
import re
import sys
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dataset"))
from generate import READING_QUESTIONS, TEMPLATES, fill, passage_sentence  # noqa: E402


def _pattern(template: str) -> re.Pattern:
    """A template ("What is {x}?") as a regex that captures the term."""
    parts = re.split(r"(\{x\}|\{X\})", template)
    return re.compile("^" + "".join("(?P<term>.+)" if p in ("{x}", "{X}") else re.escape(p)
                                    for p in parts) + "$")


_TRAIN_PATTERNS: Dict[str, List[re.Pattern]] = {
    kind: [_pattern(t) for t in templates["train"]] for kind, templates in TEMPLATES.items()}


def term_of(row: dict) -> Optional[str]:
    """The term a closed-book training question asks about, in its lower-case form
    (templates starting with {X} capitalise it), or None if no training template fits."""
    for template, pattern in zip(TEMPLATES.get(row["kind"], {}).get("train", []),
                                 _TRAIN_PATTERNS.get(row["kind"], [])):
        match = pattern.match(row["question"])
        if match:
            term = match.group("term")
            if template.startswith("{X}"):
                term = term[:1].lower() + term[1:]
            return term
    return None


# Ways a passage states a gloss besides the dataset's own `passage_sentence` ("Term: gloss.").
SENTENCE_FORMS = ["{X} is {d}.", "{X} means {d}.", "{X} refers to {d}."]


def sentence(form: Optional[str], term: str, gloss: str) -> str:
    return passage_sentence(term, gloss) if form is None else fill(form, term, gloss)


class Augmenter:
    def __init__(self, rows: List[dict], fresh_reading: int, rng: random.Random, copies: int = 0,
                 counterfactual: float = 0.0, novel: float = 0.0):
        self.rng = rng
        self.counterfactual = counterfactual
        self.novel = novel
        self.fresh_reading = fresh_reading
        self.copies = copies
        self.closed = [(row, term_of(row)) for row in rows if not row["kind"].startswith("reading")]
        self.reading = [row for row in rows if row["kind"].startswith("reading")]
        # (term, gloss) of every training synset with a definition row: the passage pool.
        self.glosses: List[Tuple[str, str]] = sorted(
            {(term, row["answer"]) for row, term in self.closed if term and row["kind"] == "definition"})
        self.words: List[str] = sorted({word for _, gloss in self.glosses for word in gloss.split()})

    def scrambled(self, gloss: str) -> str:
        """The gloss with each word, at even odds, replaced by a random word of any gloss."""
        return " ".join(self.rng.choice(self.words) if self.rng.random() < 0.5 else word
                        for word in gloss.split())

    def redrawn(self, row: dict, term: Optional[str]) -> dict:
        if term is None:
            return row
        template = self.rng.choice(TEMPLATES[row["kind"]]["train"])
        return dict(row, question=fill(template, term))

    def passage(self, size: int) -> dict:
        """`size` distinct training glosses, shuffled, and a question about one of them."""
        size = min(size, len({term.lower() for term, _ in self.glosses}))
        members, names = [], set()
        while len(members) < size:
            term, gloss = self.glosses[self.rng.randrange(len(self.glosses))]
            if term.lower() not in names:
                members.append((term, gloss))
                names.add(term.lower())
        if self.rng.random() < self.counterfactual:
            # Each term gets the next member's gloss: the passage contradicts what the model may
            # have memorised about these terms, so only reading the passage answers it.
            members = [(t, members[(i + 1) % size][1]) for i, (t, _) in enumerate(members)]
        if self.rng.random() < self.novel:
            members = [(t, self.scrambled(g)) for t, g in members]
        term, gloss = members[0]
        self.rng.shuffle(members)
        # Half the passages in the dataset's layout, half in one of the plain forms.
        form = None if self.rng.random() < 0.5 else self.rng.choice(SENTENCE_FORMS)
        context = " ".join(sentence(form, t, g) for t, g in members)
        if self.rng.random() < 0.5:
            # "What is X?" with a passage: the definition kind's training templates, as well
            # as the dataset's reading questions.
            templates = READING_QUESTIONS["define"] + TEMPLATES["definition"]["train"]
            question, answer = fill(self.rng.choice(templates), term), gloss
        else:
            question, answer = fill(self.rng.choice(READING_QUESTIONS["name"]), term, gloss), term
        kind = "reading" if size <= 10 else "reading_long"
        return {"question": question, "context": context, "answer": answer, "kind": kind}

    def copy_row(self) -> dict:
        """The gloss in, the same gloss out: the simplest task that needs the encoder, so the
        decoder's cross-attention learns to follow its input position by position (an
        encoder-decoder trained on facts alone can settle into ignoring its input)."""
        glosses = [self.glosses[self.rng.randrange(len(self.glosses))][1] for _ in range(self.rng.randint(1, 2))]
        if self.rng.random() < self.novel:
            glosses = [self.scrambled(g) for g in glosses]
        return {"question": "Repeat the text.", "context": " ".join(g + "." for g in glosses),
                "answer": " ".join(g + "." for g in glosses), "kind": "copy"}

    def epoch(self, closed_book_repeat: int, largest_passage: int = 10) -> List[dict]:
        """One epoch: closed-book rows (re-drawn templates) x repeat, the fixed reading
        rows, and `fresh_reading` new passages (3-10 glosses; 3 % of them 20-40).

        With `largest_passage` below 10 (a curriculum, `train.py --grow-passages`), the fresh
        passages have 2 to `largest_passage` glosses and the fixed reading rows (6-40 glosses)
        are left out: finding the term among two glosses is a choice the gradient can see,
        among thirty it is not."""
        out = [self.redrawn(row, term) for _ in range(closed_book_repeat) for row, term in self.closed]
        curriculum = largest_passage < 10
        if not curriculum:
            out += self.reading
        for _ in range(self.fresh_reading):
            if curriculum:
                size = self.rng.randint(2, max(2, largest_passage))
            else:
                size = self.rng.randint(20, 40) if self.rng.random() < 0.03 else self.rng.randint(3, 10)
            out.append(self.passage(size))
        out += [self.copy_row() for _ in range(self.copies)]
        return out
