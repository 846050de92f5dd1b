#!/usr/bin/env python3
"""Convert PubMedQA's published `ori_pqal.json` into our JSONL splits.

    python3 tools/dataset/import_pubmedqa.py ori_pqal.json --out data/pubmedqa

Input layout (PubMedQA, Jin et al. 2019): an object keyed by PMID whose values
have QUESTION, CONTEXTS (list of abstract sections), LONG_ANSWER and
final_decision ("yes" / "no" / "maybe"). Output rows are
{"question", "context", "answer", "kind": "pubmedqa"}; the answer is the decision
followed by the long answer ("Yes. ..."), or only one of them with --answer.
Rows are split by a stable hash of the PMID, so re-running gives the same files.
PubMedQA is not redistributed here: users bring their own copy (MIT license).
"""

import argparse
import hashlib
import json
import os
import sys
from typing import Dict, List

DECISIONS = ("yes", "no", "maybe")


class PubMedQAFormatError(Exception):
    """The input does not follow the ori_pqal.json layout."""


def convert_record(pmid: str, record: object, answer: str = "both") -> dict:
    if not isinstance(record, dict):
        raise PubMedQAFormatError(f"entry {pmid!r}: expected an object, got {type(record).__name__}")
    for key in ("QUESTION", "CONTEXTS", "LONG_ANSWER", "final_decision"):
        if key not in record:
            raise PubMedQAFormatError(f"entry {pmid!r}: missing field {key}")
    contexts = record["CONTEXTS"]
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise PubMedQAFormatError(f"entry {pmid!r}: CONTEXTS must be a list of strings")
    decision = str(record["final_decision"]).strip().lower()
    if decision not in DECISIONS:
        raise PubMedQAFormatError(
            f"entry {pmid!r}: final_decision is {record['final_decision']!r}, expected yes/no/maybe")
    long_answer = " ".join(str(record["LONG_ANSWER"]).split())
    if answer == "decision":
        text = decision
    elif answer == "long":
        text = long_answer
    else:
        text = f"{decision.capitalize()}. {long_answer}"
    return {"question": " ".join(str(record["QUESTION"]).split()),
            "context": " ".join(" ".join(c.split()) for c in contexts),
            "answer": text, "kind": "pubmedqa"}


def split_of(pmid: str, validation: float, test: float) -> str:
    x = int(hashlib.sha256(f"pubmedqa:{pmid}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if x < test else "validation" if x < test + validation else "train"


def convert(data: object, answer: str = "both", validation: float = 0.1,
            test: float = 0.1) -> Dict[str, List[dict]]:
    if not isinstance(data, dict):
        raise PubMedQAFormatError("top level must be an object keyed by PMID")
    splits: Dict[str, List[dict]] = {"train": [], "validation": [], "test": []}
    for pmid in sorted(data):
        splits[split_of(pmid, validation, test)].append(convert_record(pmid, data[pmid], answer))
    return splits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="PubMedQA ori_pqal.json -> JSONL splits")
    parser.add_argument("input", help="path to ori_pqal.json")
    parser.add_argument("--out", required=True, help="output folder for train/validation/test.jsonl")
    parser.add_argument("--answer", choices=("both", "decision", "long"), default="both")
    parser.add_argument("--validation", type=float, default=0.1, help="fraction for validation")
    parser.add_argument("--test", type=float, default=0.1, help="fraction for test")
    args = parser.parse_args(argv)
    if not (0 <= args.validation and 0 <= args.test and args.validation + args.test < 1):
        print("error: --validation and --test must be >= 0 and sum to less than 1", file=sys.stderr)
        return 2
    try:
        with open(args.input, encoding="utf-8") as handle:
            data = json.load(handle)
        splits = convert(data, args.answer, args.validation, args.test)
    except OSError as error:
        print(f"error: cannot read {args.input}: {error.strerror}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as error:
        print(f"error: {args.input} is not JSON: line {error.lineno}: {error.msg}", file=sys.stderr)
        return 1
    except PubMedQAFormatError as error:
        print(f"error: {args.input}: {error}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for name, rows in splits.items():
        with open(os.path.join(args.out, f"{name}.jsonl"), "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps({name: len(rows) for name, rows in splits.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
