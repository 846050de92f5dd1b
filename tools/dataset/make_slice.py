#!/usr/bin/env python3
"""Cut a small, self-consistent slice of WordNet for the generator's tests.

    python3 tools/dataset/make_slice.py --wordnet /usr/share/wordnet \
        --out tools/dataset/tests/fixtures/wordnet-slice

Keeps the license header, the selection roots, and the first synsets (in
offset order) of each root's closure plus their parents, so every question kind
occurs. The slice is committed; this script documents how it was made.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generate  # noqa: E402
import wordnet  # noqa: E402

PER_ROOT = 30
# Always included: the README's example question and a dental neighbourhood.
EXTRA = ["14081216",  # gingivitis
         "14080622",  # periodontal disease
         "05304932",  # gingiva, gum
         "05282746",  # tooth
         "06047430",  # dentistry
                  "14159623",  # Down syndrome (hygiene check)
         "14276936",  # plant disease (denied subtree)
         "07881800"]  # beverage (excluded)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wordnet", default="/usr/share/wordnet")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    path = os.path.join(args.wordnet, "data.noun")
    synsets = wordnet.read_data_file(path)
    keep = set(EXTRA) | set(generate.ROOTS)
    for root in generate.ROOTS:
        closure = wordnet.hyponym_closure(synsets, root)
        for offset in closure[:PER_ROOT]:
            keep.add(offset)
            keep.update(o for o in synsets[offset].targets("@", "#p") if o in synsets)
    # The extras need their hypernym chains to be reached from a root.
    for offset in EXTRA:
        chain = [offset]
        while chain[-1] in synsets and chain[-1] not in generate.ROOTS:
            parents = synsets[chain[-1]].targets("@")
            if not parents:
                break
            chain.append(parents[0])
        keep.update(chain)
    os.makedirs(args.out, exist_ok=True)
    with open(path, encoding="utf-8") as source, \
            open(os.path.join(args.out, "data.noun"), "w", encoding="utf-8", newline="\n") as sink:
        for line in source:
            if line.startswith("  ") or line[:8] in keep:
                sink.write(line)
    with open(os.path.join(args.wordnet, "noun.exc"), encoding="utf-8") as source, \
            open(os.path.join(args.out, "noun.exc"), "w", encoding="utf-8", newline="\n") as sink:
        for line in source:
            if line.split()[0] in ("teeth", "feet", "lice", "children"):
                sink.write(line)
    print(f"{len(keep)} synsets -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
