"""Tests of the PubMedQA importer on a tiny hand-made file in the ori_pqal.json layout."""

import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import import_pubmedqa  # noqa: E402

TINY = os.path.join(HERE, "fixtures", "ori_pqal_tiny.json")


def load():
    with open(TINY, encoding="utf-8") as handle:
        return json.load(handle)


class ImportPubMedQA(unittest.TestCase):
    def test_converts_every_record(self):
        rows = import_pubmedqa.convert(load(), validation=0, test=0)["train"]
        self.assertEqual(len(rows), 3)
        first = rows[0]
        self.assertEqual(list(first), ["question", "context", "answer", "kind"])
        self.assertEqual(first["question"], "Does daily flossing reduce gingival bleeding in adults?")
        # Sections joined, whitespace normalised.
        self.assertEqual(first["context"], "Gingival bleeding is an early sign of gingivitis. "
                                           "We followed 40 adults who flossed daily for eight weeks.")
        self.assertEqual(first["answer"], "Yes. Daily flossing reduced gingival bleeding after eight weeks.")
        self.assertEqual([r["answer"].split(".")[0] for r in rows], ["Yes", "No", "Maybe"])
        self.assertEqual({r["kind"] for r in rows}, {"pubmedqa"})

    def test_answer_modes(self):
        data = load()
        decision = import_pubmedqa.convert(data, "decision", 0, 0)["train"]
        self.assertEqual([r["answer"] for r in decision], ["yes", "no", "maybe"])
        long = import_pubmedqa.convert(data, "long", 0, 0)["train"]
        self.assertEqual(long[1]["answer"], "No harm to enamel was observed.")

    def test_split_is_stable_and_complete(self):
        a = import_pubmedqa.convert(load(), validation=0.34, test=0.33)
        b = import_pubmedqa.convert(load(), validation=0.34, test=0.33)
        self.assertEqual(a, b)
        self.assertEqual(sum(len(v) for v in a.values()), 3)

    def test_missing_field_names_the_entry(self):
        data = load()
        del data["10000002"]["LONG_ANSWER"]
        with self.assertRaises(import_pubmedqa.PubMedQAFormatError) as caught:
            import_pubmedqa.convert(data)
        self.assertIn("10000002", str(caught.exception))
        self.assertIn("LONG_ANSWER", str(caught.exception))

    def test_bad_decision_is_rejected(self):
        data = load()
        data["10000001"]["final_decision"] = "probably"
        with self.assertRaises(import_pubmedqa.PubMedQAFormatError):
            import_pubmedqa.convert(data)

    def test_command_line_writes_jsonl(self):
        out = tempfile.mkdtemp()
        self.assertEqual(import_pubmedqa.main([TINY, "--out", out, "--validation", "0", "--test", "0"]), 0)
        with open(os.path.join(out, "train.jsonl"), encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        self.assertEqual(len(rows), 3)
        with open(os.path.join(out, "test.jsonl"), encoding="utf-8") as handle:
            self.assertEqual(handle.read(), "")

    def test_command_line_reports_bad_json(self):
        bad = os.path.join(tempfile.mkdtemp(), "bad.json")
        with open(bad, "w", encoding="utf-8") as handle:
            handle.write("{not json")
        self.assertEqual(import_pubmedqa.main([bad, "--out", tempfile.mkdtemp()]), 1)


if __name__ == "__main__":
    unittest.main()
