"""Tests of the WordNet QA generator (standard library + pytest only).

Run: python3 -m pytest tools/dataset/tests
"""

import ast
import hashlib
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(TOOL))
sys.path.insert(0, TOOL)

import generate  # noqa: E402
import wordnet  # noqa: E402

SLICE = os.path.join(HERE, "fixtures", "wordnet-slice")
EXPECTED = os.path.join(HERE, "fixtures", "slice-expected-sha256.json")
SYSTEM_WORDNET = "/usr/share/wordnet"
# The slice is small: fewer long passages and eval questions than the full run.
SLICE_ARGS = ["--long-passages", "4", "--closed-book-eval", "20"]
FILES = ("train.jsonl", "validation.jsonl", "test.jsonl", "stats.json")


def run_generator(wordnet_dir, extra=()):
    out = tempfile.mkdtemp(prefix="wn-qa-")
    status = generate.main(["--wordnet", wordnet_dir, "--out", out, *extra])
    assert status == 0
    return out


def read_bytes(folder):
    contents = {}
    for name in FILES:
        with open(os.path.join(folder, name), "rb") as handle:
            contents[name] = handle.read()
    return contents


def read_rows(folder, split):
    with open(os.path.join(folder, f"{split}.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


class SliceGeneration(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = run_generator(SLICE, SLICE_ARGS)
        cls.rows = {s: read_rows(cls.out, s) for s in ("train", "validation", "test")}

    def test_regeneration_is_byte_identical(self):
        again = run_generator(SLICE, SLICE_ARGS)
        self.assertEqual(read_bytes(self.out), read_bytes(again))

    def test_output_matches_committed_digests(self):
        with open(EXPECTED, encoding="utf-8") as handle:
            expected = json.load(handle)
        actual = {name: hashlib.sha256(data).hexdigest()
                  for name, data in read_bytes(self.out).items()}
        self.assertEqual(expected, actual,
                         "generator output changed: if intended, regenerate data/ and the "
                         "digests (see tools/dataset/README.md)")

    def test_another_seed_changes_the_output(self):
        other = run_generator(SLICE, SLICE_ARGS + ["--seed", "14"])
        self.assertNotEqual(read_bytes(self.out)["train.jsonl"], read_bytes(other)["train.jsonl"])

    def test_rows_have_the_schema(self):
        kinds = set()
        for split, rows in self.rows.items():
            self.assertTrue(rows, split)
            for row in rows:
                self.assertIn(list(row), (["question", "answer", "kind"],
                                          ["question", "context", "answer", "kind"]))
                self.assertTrue(row["question"] and row["answer"])
                self.assertEqual("context" in row, row["kind"].startswith("reading"))
                kinds.add(row["kind"])
        self.assertEqual(kinds, {"definition", "category", "synonym", "part_of", "body_part",
                                 "reading", "reading_long"})

    def test_gingivitis_facts(self):
        train = self.rows["train"]
        by_kind = {r["kind"]: r for r in train if "gingivitis" in r["question"].lower()
                   and "context" not in r}
        self.assertEqual(by_kind["definition"]["answer"], "inflammation of the gums")
        self.assertEqual(by_kind["category"]["answer"], "periodontal disease")
        self.assertEqual(by_kind["body_part"]["answer"], "gingiva")

    def test_closed_book_eval_uses_held_out_templates(self):
        for split in ("validation", "test"):
            for row in self.rows[split]:
                if row["kind"].startswith("reading"):
                    continue
                templates = generate.TEMPLATES[row["kind"]]
                terms = [m for t in templates[split] for m in [_term(t, row["question"])] if m]
                self.assertTrue(terms, row)
                for template in templates["train"]:
                    self.assertNotEqual(generate.fill(template, terms[0]), row["question"])

    def test_reading_targets_are_split_by_synset(self):
        train_contexts = " ".join(r["context"] for r in self.rows["train"] if "context" in r)
        train_questions = {r["question"] for r in self.rows["train"]}
        for split in ("validation", "test"):
            for row in self.rows[split]:
                if not row["kind"].startswith("reading"):
                    continue
                # The target's gloss never appears in a training passage.
                definition = row["answer"] if "what is" in row["question"].lower() else \
                    row["question"].split("means: ", 1)[-1].split("define as ", 1)[-1][:-1]
                self.assertNotIn(definition + ".", train_contexts, row["question"])
                self.assertNotIn(row["question"], train_questions)

    def test_passage_sizes(self):
        for rows in self.rows.values():
            for row in rows:
                if row["kind"] == "reading":
                    self.assertTrue(6 <= row["context"].count(": ") <= 10 + 2, row["context"])
                if row["kind"] == "reading_long":
                    self.assertGreaterEqual(row["context"].count(": "), 20)

    def test_hygiene(self):
        text = json.dumps(self.rows).lower()
        self.assertFalse("mongolism" in text or "mongolianism" in text)
        self.assertTrue("down syndrome" in text)
        with open(os.path.join(self.out, "stats.json"), encoding="utf-8") as handle:
            stats = json.load(handle)
        dropped = [d["lemma"] for d in stats["hygiene"]["dropped_lemmas"]]
        self.assertIn("mongolism", dropped)
        self.assertTrue(stats["hygiene"]["dropped_subtrees"])

    def test_vulgar_names_and_slurs_are_dropped(self):
        # WordNet's own usage label, or a gloss that says "obscene/vulgar term(s)/slang".
        line = ("05526713 08 n 02 cock 0 prick 0 002 @ 05514905 n 0000 ;u 07124340 n 0000 "
                "| obscene terms for penis  \n")
        labelled = wordnet.parse_data_line(line)
        unlabelled = wordnet.parse_data_line(line.replace(" ;u 07124340 n 0000", "").replace(" 002 @", " 001 @"))
        medical = wordnet.parse_data_line(line.replace(" ;u 07124340 n 0000", "").replace(" 002 @", " 001 @")
                                          .replace("obscene terms for penis", "the male organ of urination"))
        synsets = {s.offset: s for s in (labelled,)}
        log = {"dropped_synsets": [], "dropped_lemmas": [], "rewritten_glosses": []}
        self.assertEqual(generate.apply_hygiene(synsets, [labelled.offset], log), [])
        self.assertEqual(log["dropped_synsets"][0]["reason"], "WordNet usage label: obscenity")
        for synset, kept in ((unlabelled, []), (medical, [medical.offset])):
            log = {"dropped_synsets": [], "dropped_lemmas": [], "rewritten_glosses": []}
            self.assertEqual(generate.apply_hygiene({synset.offset: synset}, [synset.offset], log), kept)
        with open(os.path.join(REPO, "data", "train.jsonl"), encoding="utf-8") as handle:
            self.assertNotIn("obscene terms for", handle.read())

    def test_ambiguous_terms_are_not_asked(self):
        # "dilator" names two selected synsets in the slice (a drug and a
        # surgical instrument): no closed-book question asks about it.
        questions = [r["question"] for rows in self.rows.values() for r in rows
                     if "context" not in r]
        self.assertTrue(questions)
        self.assertFalse([q for q in questions if "dilator" in q.lower()])
        with open(os.path.join(self.out, "stats.json"), encoding="utf-8") as handle:
            self.assertIn("dilator", json.load(handle)["ambiguous_examples"])

    def test_no_beverages_or_plant_diseases(self):
        text = json.dumps(self.rows).lower()
        self.assertNotIn("alcoholic beverage", text)
        self.assertNotIn("plant disease", text)


def _term(template, question):
    """The term a question was made from with `template`, or None."""
    prefix, _, rest = template.partition("{")
    suffix = rest.partition("}")[2]
    if question.lower().startswith(prefix.lower()) and question.endswith(suffix):
        term = question[len(prefix):len(question) - len(suffix)]
        return term[:1].lower() + term[1:] if template.startswith("{X}") else term
    return None


class WordNetParsing(unittest.TestCase):
    LINE = ("14081216 26 n 01 gingivitis 0 001 @ 14080622 n 0000 | inflammation of the gums; "
            "\"he was treated for gingivitis\"; \"it bled\"  ")

    def test_parse_line(self):
        synset = wordnet.parse_data_line(self.LINE)
        self.assertEqual(synset.offset, "14081216")
        self.assertEqual(synset.lexname, "noun.state")
        self.assertEqual(synset.lemmas, ["gingivitis"])
        self.assertEqual(synset.targets("@"), ["14080622"])
        self.assertEqual(synset.definition, "inflammation of the gums")
        self.assertEqual(synset.examples, ["he was treated for gingivitis", "it bled"])

    def test_malformed_line_reports_where(self):
        with self.assertRaises(wordnet.WordNetFormatError) as caught:
            wordnet.parse_data_line("14081216 26 n zz", "data.noun", 7)
        self.assertIn("data.noun:7", str(caught.exception))

    def test_missing_input_is_an_error_not_a_crash(self):
        self.assertEqual(generate.main(["--wordnet", "/nonexistent", "--out", tempfile.mkdtemp()]), 2)


class StandardLibraryOnly(unittest.TestCase):
    def test_tools_import_only_the_standard_library(self):
        allowed = set(sys.stdlib_module_names) | {"wordnet", "hygiene", "generate", "make_slice"}
        for name in ("generate.py", "wordnet.py", "hygiene.py", "import_pubmedqa.py", "make_slice.py"):
            with open(os.path.join(TOOL, name), encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    roots = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    roots = [(node.module or "").split(".")[0]]
                else:
                    continue
                for root in roots:
                    self.assertIn(root, allowed, f"{name} imports {root}")


@unittest.skipUnless(os.path.exists(os.path.join(SYSTEM_WORDNET, "data.noun")),
                     "Debian's wordnet-base is not installed")
class FullRegeneration(unittest.TestCase):
    def test_committed_data_is_reproduced_byte_for_byte(self):
        out = run_generator(SYSTEM_WORDNET)
        committed = read_bytes(os.path.join(REPO, "data"))
        self.assertEqual(read_bytes(out), committed,
                         "data/ differs from `python3 tools/dataset/generate.py --out data`")


if __name__ == "__main__":
    unittest.main()
