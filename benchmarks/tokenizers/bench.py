#!/usr/bin/env python3
"""Swift `Tokenizer.encode` vs Python `tokenizers` encode_batch, single-threaded, same corpus.

    $REF_PYTHON benchmarks/tokenizers/bench.py [--binary .build/release/mambaformer]

Builds a corpus of clinical-style lines from tools/fixtures/tokenizers/corpus_seed.txt
(deterministic), then for each fixture tokenizer times Python's encode_batch (RAYON_NUM_THREADS=1,
best of N after a warm-up) and the Swift CLI's hidden --benchmark mode (best of N after a
warm-up), checks both produce the same number of tokens, and prints the ratio.
"""
import argparse, json, os, random, subprocess, sys, tempfile, time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "Tests", "TokenizersTests", "Fixtures")


def corpus(n_lines):
    with open(os.path.join(ROOT, "tools", "fixtures", "tokenizers", "corpus_seed.txt"), encoding="utf-8") as f:
        seed = [l.rstrip("\n") for l in f if l.strip()]
    words = " ".join(seed).split()
    rng = random.Random(7)
    lines = []
    for i in range(n_lines):
        if i % 4 == 0:
            lines.append(rng.choice(seed))
        else:
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(8, 60))))
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "mambaformer"))
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokenizers", default="spm_t5,neox_bpe,t5_unigram,llama_bpe")
    args = ap.parse_args()
    lines = corpus(args.lines)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines))
        path = f.name
    nbytes = os.path.getsize(path)
    results = []
    for name in args.tokenizers.split(","):
        tok = Tokenizer.from_file(os.path.join(FIX, name, "tokenizer.json"))
        tok.encode_batch(lines)  # warm-up (fills the BPE/Unigram word caches)
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            encs = tok.encode_batch(lines)
            best = min(best, time.perf_counter() - t0)
        py_tokens = sum(len(e.ids) for e in encs)
        out = subprocess.run([args.binary, "tokenize", "--tokenizer", os.path.join(FIX, name), "--benchmark", path,
                              "--repeats", str(args.repeats)], check=True, capture_output=True, text=True).stdout
        sw = json.loads(out)
        assert sw["tokens"] == py_tokens, (name, sw["tokens"], py_tokens)
        r = {"tokenizer": name, "lines": len(lines), "MB": round(nbytes / 1e6, 2), "tokens": py_tokens,
             "python_s": round(best, 4), "swift_s": round(sw["seconds"], 4),
             "python_MB_s": round(nbytes / 1e6 / best, 2), "swift_MB_s": round(nbytes / 1e6 / sw["seconds"], 2),
             "speedup_swift_over_python": round(best / sw["seconds"], 2)}
        results.append(r)
        print(json.dumps(r), flush=True)
    os.unlink(path)


if __name__ == "__main__":
    main()
