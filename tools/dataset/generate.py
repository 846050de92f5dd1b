#!/usr/bin/env python3
"""Generate the demo clinical QA dataset from Princeton WordNet 3.0.

    python3 tools/dataset/generate.py --wordnet /usr/share/wordnet --out data

reads `data.noun` (and `noun.exc` for irregular plurals) and writes
`train.jsonl`, `validation.jsonl`, `test.jsonl` and `stats.json`. The output is a
pure function of the input files and `--seed` (standard library only, no hash
randomisation, no set iteration order), so the committed files can be checked
byte for byte.

Pipeline: select the medical and dental synsets -> hygiene (hygiene.py) ->
split synsets -> write closed-book questions (definition, category, synonym,
part-of, body part) and reading-comprehension passages.
"""

import argparse
import hashlib
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hygiene  # noqa: E402
import wordnet  # noqa: E402
from wordnet import Synset  # noqa: E402

# ---------------------------------------------------------------- selection

# Roots whose hyponym closures make the medical part (offsets in WordNet 3.0 data.noun).
ROOTS = {
    "14070360": "disease",
    "14052403": "disorder",
    "14034177": "physical condition",
    "14061805": "illness",
    "14299637": "symptom",
    "14285662": "injury",
    "03740161": "medicine (medication)",
    "03247620": "drug",
    "01024392": "medical procedure",
    "00657604": "medical care",
    "05220461": "body part",
    "05282746": "tooth",
}
BEVERAGE_ROOT = "07881800"  # drug's closure reaches alcoholic drinks
# Animal and plant anatomy and drinks are not clinical.
EXCLUDED_LEXNAMES = ("noun.food", "noun.animal", "noun.plant")

# Dental words that are unambiguous on their own...
DENTAL = re.compile(
    r"\b(dental|dentists?|dentistry|dentition|dentine?|dentures?|orthodont\w*|"
    r"periodont\w*|endodont\w*|exodont\w*|prosthodont\w*|pedodont\w*|gingiv\w*|"
    r"caries|tooth|teeth|toothache|molars?|premolars?|incisors?|bicuspids?|bruxism|"
    r"malocclusion|fluoridation)\b",
    re.IGNORECASE,
)
# ...and words that are dental only next to one of those (gum resin, tartar salt,
# enamel paint, a crown, cement) are not matched at all. Noisy senses that still
# mention teeth: saws, combs, gears, tools, animals, idioms.
NOT_DENTAL = re.compile(
    r"\b(saws?|combs?|gears?|cogs?|sprockets?|wheels?|rakes?|zippers?|wrench|vise|files?|"
    r"resins?|trees?|shrubs?|chewing gum|fish(es)?|whales?|sharks?|snakes?|reptiles?|"
    r"elephants?|walrus|rodents?|horses?|cattle|birds?|insects?|plants?|fungus|"
    r"enforcement|resembling the tooth|tooth of an animal|musical instrument|fairy|"
    r"textile|pattern|as if without teeth|forceps|appliances \(refrigerators)\b",
    re.IGNORECASE,
)
DENTAL_EXTRA_LEXNAMES = ("noun.body", "noun.state", "noun.act", "noun.artifact",
                         "noun.cognition", "noun.substance", "noun.person")


def is_dental(synset: Synset) -> bool:
    text = " ".join(synset.lemmas) + " " + synset.definition
    return bool(DENTAL.search(text)) and not NOT_DENTAL.search(text)


def select(synsets: Dict[str, Synset], log: Dict[str, list]) -> List[str]:
    """Offsets of the medical and dental synsets, in a deterministic order."""
    excluded = set(wordnet.hyponym_closure(synsets, BEVERAGE_ROOT))
    for root in sorted(hygiene.DENIED_SUBTREES):
        subtree = wordnet.hyponym_closure(synsets, root)
        excluded.update(subtree)
        if subtree:
            log["dropped_subtrees"].append(
                {"root": synsets[root].lemmas[0], "synsets": len(subtree),
                 "reason": hygiene.DENIED_SUBTREES[root]})
    chosen: Dict[str, None] = {}
    for root in ROOTS:
        for offset in wordnet.hyponym_closure(synsets, root):
            if offset in excluded or synsets[offset].lexname in EXCLUDED_LEXNAMES:
                continue
            chosen[offset] = None
    # Dental synsets outside the closures (dentistry, dental instruments, caries...).
    for offset in sorted(synsets):
        synset = synsets[offset]
        if offset in chosen or offset in excluded:
            continue
        if synset.lexname in DENTAL_EXTRA_LEXNAMES and is_dental(synset):
            chosen[offset] = None
    return sorted(chosen)


def apply_hygiene(synsets: Dict[str, Synset], chosen: List[str],
                  log: Dict[str, list]) -> List[str]:
    kept = []
    for offset in chosen:
        synset = synsets[offset]
        if offset in hygiene.DENIED_SYNSETS:
            log["dropped_synsets"].append({"offset": offset, "lemmas": synset.lemmas,
                                           "reason": hygiene.DENIED_SYNSETS[offset]})
            continue
        vulgar = hygiene.vulgar_reason(synset.targets(";u"), synset.definition)
        if vulgar:
            log["dropped_synsets"].append({"offset": offset, "lemmas": synset.lemmas, "reason": vulgar})
            continue
        lemmas = []
        for lemma in synset.lemmas:
            if lemma.lower() in hygiene.DENIED_LEMMAS:
                log["dropped_lemmas"].append({"offset": offset, "lemma": lemma,
                                              "reason": hygiene.DENIED_LEMMAS[lemma.lower()]})
            else:
                lemmas.append(lemma)
        if not lemmas:
            log["dropped_synsets"].append({"offset": offset, "lemmas": synset.lemmas,
                                           "reason": "no acceptable name left"})
            continue
        definition = hygiene.clean_gloss(synset.definition)
        if definition != synset.definition:
            log["rewritten_glosses"].append({"offset": offset, "lemma": lemmas[0]})
        if not definition:
            log["dropped_synsets"].append({"offset": offset, "lemmas": lemmas,
                                           "reason": "empty gloss"})
            continue
        synset.lemmas, synset.definition = lemmas, definition
        kept.append(offset)
    return kept


# ---------------------------------------------------------------- randomness

class Rng:
    """Deterministic choices built only on random.Random.random(), whose output
    Python guarantees across versions (shuffle/sample algorithms are not)."""

    def __init__(self, seed: int):
        import random
        self._random = random.Random(seed)

    def below(self, n: int) -> int:
        return min(int(self._random.random() * n), n - 1)

    def choice(self, items: Sequence):
        return items[self.below(len(items))]

    def shuffled(self, items: Sequence) -> list:
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def sample(self, items: Sequence, k: int) -> list:
        return self.shuffled(items)[:k]


def split_of(offset: str, seed: int) -> str:
    """Synset split by a stable hash: 80 % train, 10 % validation, 10 % test."""
    bucket = int(hashlib.sha256(f"{seed}:{offset}".encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


# ---------------------------------------------------------------- templates

# Closed-book kinds test paraphrase robustness: the same facts are asked with
# templates never seen in training. {x} is the term, {X} the term capitalised.
TEMPLATES = {
    "definition": {
        "train": ["What is {x}?", "Define {x}.", "What does the term {x} mean?"],
        "validation": ["Explain what {x} is."],
        "test": ["What is meant by {x}?", "Can you describe {x}?"],
    },
    "category": {
        "train": ["What is {x} a type of?", "{X} is a kind of what?"],
        "validation": ["What broader class does {x} fall under?"],
        "test": ["Which category does {x} belong to?", "{X} is an example of what?"],
    },
    "synonym": {
        "train": ["What is another name for {x}?", "Give a synonym for {x}."],
        "validation": ["What else is {x} called?"],
        "test": ["What is {x} also known as?", "Name another term for {x}."],
    },
    "part_of": {
        "train": ["{X} is part of what?", "What larger structure contains the {x}?"],
        "validation": ["Of what is the {x} a part?"],
        "test": ["The {x} is a component of which structure?",
                 "Which body structure includes the {x}?"],
    },
    "body_part": {
        "train": ["Which part of the body does {x} affect?",
                  "Where in the body does {x} occur?"],
        "validation": ["What body part is involved in {x}?"],
        "test": ["Which body part is affected by {x}?",
                 "In which part of the body is {x} found?"],
    },
}
READING_QUESTIONS = {
    "define": ["According to the passage, what is {x}?",
               "Based on the text, what is {x}?"],
    "name": ["Which term in the passage means: {d}?",
             "Which term does the passage define as {d}?"],
}


def fill(template: str, term: str, definition: str = "") -> str:
    return template.format(x=term, X=term[:1].upper() + term[1:], d=definition)


# ---------------------------------------------------------------- facts

# Body-part words too generic to say "the body part affected" unambiguously.
GENERIC_BODY_WORDS = {
    "body", "tissue", "tissues", "cell", "cells", "organ", "organs", "part", "parts",
    "structure", "system", "blood", "fluid", "area", "region", "side", "surface",
    "process", "layer", "duct", "vessel", "gland", "muscle", "nerve", "bone", "bones",
    "joint", "joints", "membrane", "sac", "cavity", "canal", "opening", "skin",
    "head", "trunk", "limb", "extremity", "back", "center", "mass", "cord", "fiber",
    "lining", "wall", "tube", "node", "plexus", "sinus", "root", "crown", "neck",
    "body part", "can", "seat", "middle", "abdominal", "small", "vesicle", "bottom", "tail", "rear", "stern", "process", "feature",
}


class Lexicon:
    """Lookups over the selected synsets."""

    def __init__(self, synsets: Dict[str, Synset], kept: List[str], plurals: Dict[str, str]):
        self.synsets = synsets
        self.kept = kept
        self.kept_set = set(kept)
        self.senses: Dict[str, List[str]] = {}
        for offset in kept:
            for lemma in synsets[offset].lemmas:
                self.senses.setdefault(lemma.lower(), []).append(offset)
        self.plurals = plurals
        body = [o for o in kept if synsets[o].lexname == "noun.body"]
        body_senses: Dict[str, List[str]] = {}
        for offset in body:
            # Only the first two names: later ones are often slang ("can", "seat").
            for lemma in synsets[offset].lemmas[:2]:
                body_senses.setdefault(lemma.lower(), []).append(offset)
        # Only words naming exactly one body part, and specific enough to mean it.
        self.body_words = {w: s[0] for w, s in body_senses.items()
                           if w.isalpha() or " " in w or "-" in w
                           if not (w.isupper() and len(w) <= 4)
                           if len(s) == 1 and w not in GENERIC_BODY_WORDS and len(w) >= 3}

    def unambiguous_term(self, offset: str) -> Optional[str]:
        """The first name of the synset that names nothing else in the set."""
        for lemma in self.synsets[offset].lemmas:
            if len(self.senses.get(lemma.lower(), [])) == 1:
                return lemma
        return None

    def singular(self, word: str) -> str:
        if word in self.plurals:
            return self.plurals[word]
        if word.endswith("ies") and len(word) > 4:
            return word[:-3] + "y"
        if word.endswith("es") and word[:-2] in self.body_words:
            return word[:-2]
        if word.endswith("s") and word[:-1] in self.body_words:
            return word[:-1]
        return word

    def body_part_mentioned(self, definition: str) -> Optional[str]:
        """The head name of the one body part a gloss names (longest match first),
        else None."""
        words = re.findall(r"[a-z][a-z'-]*", definition.lower())
        found: Dict[str, str] = {}
        i = 0
        while i < len(words):
            matched = False
            for length in (3, 2, 1):
                if i + length > len(words):
                    continue
                phrase = " ".join(words[i:i + length - 1] + [self.singular(words[i + length - 1])])
                if phrase in self.body_words:
                    offset = self.body_words[phrase]
                    found[offset] = self.synsets[offset].lemmas[0]
                    i += length
                    matched = True
                    break
            if not matched:
                i += 1
        if len(found) != 1:
            return None
        return next(iter(found.values()))


def closed_book_facts(lex: Lexicon, offset: str, log: Dict[str, list]) -> List[Tuple[str, str, str]]:
    """(kind, term, answer) facts of one synset."""
    synset = lex.synsets[offset]
    term = lex.unambiguous_term(offset)
    if term is None:
        log["ambiguous_terms"].append({"offset": offset, "lemmas": synset.lemmas})
        return []
    facts = [("definition", term, synset.definition)]
    hypernyms = [h for h in synset.targets("@", "@i") if h in lex.synsets]
    if hypernyms:
        facts.append(("category", term, lex.synsets[hypernyms[0]].lemmas[0]))
    others = [lemma for lemma in synset.lemmas if lemma != term]
    if others:
        facts.append(("synonym", term, ", ".join(others)))
    if synset.lexname == "noun.body":
        wholes = [h for h in synset.targets("#p") if h in lex.synsets]
        if len(wholes) == 1:
            facts.append(("part_of", term, lex.synsets[wholes[0]].lemmas[0]))
    if synset.lexname == "noun.state":
        part = lex.body_part_mentioned(synset.definition)
        if part is not None:
            facts.append(("body_part", term, part))
    return facts


# ---------------------------------------------------------------- reading

def passage_sentence(term: str, definition: str) -> str:
    return f"{term[:1].upper() + term[1:]}: {definition}."


def reading_example(lex: Lexicon, rng: Rng, target: str, pool: List[str],
                    size: int, kind: str) -> Optional[dict]:
    """A passage of `size` shuffled glosses, including the target's, and a question
    about the target. Distractors prefer the target's siblings (same hypernym)."""
    term = lex.unambiguous_term(target)
    if term is None:
        return None
    synset = lex.synsets[target]
    parents = set(synset.targets("@", "@i"))
    pool_set = set(pool)
    siblings = []
    for parent in sorted(parents):
        if parent in lex.synsets:
            siblings += [o for o in lex.synsets[parent].targets("~", "~i")
                         if o in pool_set and o != target]
    members, names = [target], {term.lower()}
    for candidate in rng.shuffled(siblings) + [pool[rng.below(len(pool))] for _ in range(4 * size)]:
        if len(members) == size:
            break
        name = lex.unambiguous_term(candidate)
        if candidate in members or name is None or name.lower() in names:
            continue
        if lex.synsets[candidate].definition == synset.definition:
            continue
        members.append(candidate)
        names.add(name.lower())
    if len(members) < size:
        return None
    sentences = [passage_sentence(lex.unambiguous_term(o), lex.synsets[o].definition)
                 for o in rng.shuffled(members)]
    if rng.below(2) == 0:
        question = fill(rng.choice(READING_QUESTIONS["define"]), term)
        answer = synset.definition
    else:
        question = fill(rng.choice(READING_QUESTIONS["name"]), term, synset.definition)
        answer = term
    return {"question": question, "context": " ".join(sentences), "answer": answer, "kind": kind}


# ---------------------------------------------------------------- main

def read_plurals(path: str) -> Dict[str, str]:
    plurals: Dict[str, str] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2:
                    plurals[parts[0].replace("_", " ")] = parts[1].replace("_", " ")
    return plurals


def generate(wordnet_dir: str, seed: int = 13, long_passages: int = 250,
             reading_per_train_synset: float = 0.6, closed_book_eval: int = 400):
    """Returns ({split: [examples]}, stats)."""
    synsets = wordnet.read_data_file(os.path.join(wordnet_dir, "data.noun"))
    plurals = read_plurals(os.path.join(wordnet_dir, "noun.exc"))
    log: Dict[str, list] = {"dropped_subtrees": [], "dropped_synsets": [], "dropped_lemmas": [],
                            "rewritten_glosses": [], "ambiguous_terms": []}
    chosen = select(synsets, log)
    kept = apply_hygiene(synsets, chosen, log)
    lex = Lexicon(synsets, kept, plurals)
    rng = Rng(seed)
    split = {o: split_of(o, seed) for o in kept}
    by_split = {name: [o for o in kept if split[o] == name] for name in ("train", "validation", "test")}

    out: Dict[str, List[dict]] = {"train": [], "validation": [], "test": []}
    # Closed-book: facts of training synsets; training templates in train, held-out
    # templates (a sample of the same facts) in validation and test.
    facts = []
    for offset in by_split["train"]:
        facts += closed_book_facts(lex, offset, log)
    for name in ("validation", "test"):
        for offset in by_split[name]:
            closed_book_facts(lex, offset, log)  # logs ambiguity for the whole set
    for kind, term, answer in facts:
        template = rng.choice(TEMPLATES[kind]["train"])
        out["train"].append({"question": fill(template, term), "answer": answer, "kind": kind})
    for name in ("validation", "test"):
        for kind, term, answer in rng.sample(facts, min(closed_book_eval, len(facts))):
            template = rng.choice(TEMPLATES[kind][name])
            out[name].append({"question": fill(template, term), "answer": answer, "kind": kind})

    # Reading comprehension, split by target synset. Training passages only use
    # training synsets so test targets are never seen in a training passage.
    for name in ("train", "validation", "test"):
        targets = by_split[name]
        pool = by_split["train"] if name == "train" else kept
        if len(pool) < 12 or not targets:
            continue
        count = int(len(targets) * reading_per_train_synset) if name == "train" else len(targets)
        for target in rng.sample(targets, count):
            example = reading_example(lex, rng, target, pool, 6 + rng.below(5), "reading")
            if example:
                out[name].append(example)
        n_long = long_passages if name == "train" else max(1, long_passages // 8)
        if len(pool) >= 40:
            for target in rng.sample(targets, min(n_long, len(targets))):
                example = reading_example(lex, rng, target, pool, 20 + rng.below(21), "reading_long")
                if example:
                    out[name].append(example)
        out[name] = rng.shuffled(out[name])

    stats = {
        "seed": seed,
        "synsets_selected": len(chosen),
        "synsets_kept": len(kept),
        "dental_synsets": sum(1 for o in kept if is_dental(synsets[o])),
        "synsets_per_split": {k: len(v) for k, v in by_split.items()},
        "examples": {name: {kind: sum(1 for e in rows if e["kind"] == kind)
                            for kind in sorted({e["kind"] for e in rows})}
                     for name, rows in out.items()},
        "hygiene": {k: log[k] for k in ("dropped_subtrees", "dropped_synsets",
                                        "dropped_lemmas", "rewritten_glosses")},
        "ambiguous_terms_dropped": len(log["ambiguous_terms"]),
        "ambiguous_examples": [" / ".join(e["lemmas"]) for e in log["ambiguous_terms"][:20]],
    }
    return out, stats


def dump(rows: List[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write(out_dir: str, splits: Dict[str, List[dict]], stats: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for name, rows in splits.items():
        with open(os.path.join(out_dir, f"{name}.jsonl"), "w", encoding="utf-8", newline="\n") as f:
            f.write(dump(rows))
    with open(os.path.join(out_dir, "stats.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(stats, ensure_ascii=False, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", default="/usr/share/wordnet",
                        help="folder with WordNet 3.0 data.noun and noun.exc")
    parser.add_argument("--out", default="data", help="output folder")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--long-passages", type=int, default=250,
                        help="20-40 gloss passages in train (validation/test get 1/8)")
    parser.add_argument("--closed-book-eval", type=int, default=400,
                        help="closed-book questions in validation and in test")
    args = parser.parse_args(argv)
    data_noun = os.path.join(args.wordnet, "data.noun")
    if not os.path.exists(data_noun):
        print(f"error: {data_noun} not found (install Debian's wordnet-base, or pass --wordnet)",
              file=sys.stderr)
        return 2
    try:
        splits, stats = generate(args.wordnet, args.seed, args.long_passages,
                                 closed_book_eval=args.closed_book_eval)
    except wordnet.WordNetFormatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write(args.out, splits, stats)
    print(json.dumps({k: stats[k] for k in ("synsets_kept", "dental_synsets", "examples")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
