#!/usr/bin/env python3
"""Worst-case tokenization: hostile inputs against ordinary text of the same length, Swift
`Tokenizer.encode` beside Python `tokenizers` on the same machine, one thread each.

    $REF_PYTHON benchmarks/tokenizers/worst_case.py [--binary .build/release/mambaformer]
        [--bytes 100000] [--repeats 5] [--tokenizers models/demo/emamba,models/demo/et5,...]

For each tokenizer and input, both sides encode the whole input as one text (best of N after a
warm-up), the token counts must agree (parity on hostile input too), and the table gives each
side's time relative to its own time on ordinary text of the same byte length. The target is
Swift within 3x of ordinary on every input (issue 14: no quadratic path, no input that expands
the work unboundedly).
"""
import argparse, json, os, random, subprocess, sys, tempfile, time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def fill(unit, n_bytes):
    """`unit` repeated to about n_bytes of UTF-8."""
    return unit * max(1, n_bytes // len(unit.encode("utf-8")))


def inputs(n_bytes):
    with open(os.path.join(ROOT, "tools", "fixtures", "tokenizers", "corpus_seed.txt"), encoding="utf-8") as f:
        words = f.read().split()
    rng = random.Random(7)
    ordinary = []
    size = 0
    while size < n_bytes:
        w = rng.choice(words)
        ordinary.append(w)
        size += len(w.encode("utf-8")) + 1
    mixed_units = ["a", "ß", "日", "ع", "\u0301", "1", "!", "\u200b", "\u202e", "🩺", "\u05d0", "e\u0301"]
    mixed = "".join(rng.choice(mixed_units) for _ in range(n_bytes // 2))
    mixed = mixed.encode("utf-8")[:n_bytes].decode("utf-8", "ignore")
    return {
        "ordinary text": " ".join(ordinary),
        "one word of letters": fill("a", n_bytes),
        "one word, random letters": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n_bytes)),
        "ligatures (NFKC ﬃ → ffi)": fill("\ufb03", n_bytes),
        "squared a.m. (NFKC ㏂ → a.m.)": fill("\u33c2", n_bytes),
        "combining marks": "a" + fill("\u0301", n_bytes - 1),
        "zero-width and RTL": fill("a\u200b\u202e\u200d", n_bytes),
        "mixed scripts": mixed,
        "digits": fill("7", n_bytes),
        "punctuation": fill("!?", n_bytes),
        "spaces": "a" + fill(" ", n_bytes - 2) + "b",
    }


def best_python(tok, text, repeats):
    enc = tok.encode(text)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        tok.encode(text)
        best = min(best, time.perf_counter() - t0)
    return best, len(enc.ids)


def best_swift(binary, tokenizer_dir, text, repeats):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        path = f.name
    try:
        out = subprocess.run([binary, "tokenize", "--tokenizer", tokenizer_dir, "--benchmark", path,
                              "--repeats", str(repeats)], check=True, capture_output=True, text=True, timeout=600).stdout
    finally:
        os.unlink(path)
    r = json.loads(out)
    return r["seconds"], r["tokens"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "mambaformer"))
    ap.add_argument("--bytes", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokenizers", default="models/demo/emamba,models/demo/et5,"
                    "Tests/TokenizersTests/Fixtures/neox_bpe,Tests/TokenizersTests/Fixtures/spm_t5,"
                    "Tests/TokenizersTests/Fixtures/llama_bpe")
    args = ap.parse_args()
    cases = inputs(args.bytes)
    rows = []
    worst = 0.0
    mismatches = 0
    for rel in args.tokenizers.split(","):
        d = os.path.join(ROOT, rel)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        base_py = base_sw = None
        for name, text in cases.items():
            py, n_py = best_python(tok, text, args.repeats)
            sw, n_sw = best_swift(args.binary, d, text, args.repeats)
            if base_py is None:
                base_py, base_sw = py, sw
            same = n_py == n_sw
            mismatches += 0 if same else 1
            ratio = sw / base_sw
            worst = max(worst, ratio)
            rows.append((rel, name, len(text.encode("utf-8")), n_sw, sw * 1e3, ratio, py * 1e3, py / base_py,
                         "" if same else f"tokens differ: Python {n_py}"))
            print(json.dumps({"tokenizer": rel, "input": name, "bytes": len(text.encode("utf-8")), "tokens": n_sw,
                              "swift_ms": round(sw * 1e3, 3), "swift_vs_ordinary": round(ratio, 2),
                              "python_ms": round(py * 1e3, 3), "python_vs_ordinary": round(py / base_py, 2),
                              "tokens_equal": same}), flush=True)
    print()
    print("| tokenizer | input | tokens | Swift ms | Swift ÷ ordinary | Python ms | Python ÷ ordinary |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        note = f" ({r[8]})" if r[8] else ""
        print(f"| {os.path.basename(r[0])} | {r[1]}{note} | {r[3]:,} | {r[4]:.1f} | {r[5]:.2f}× | {r[6]:.1f} | {r[7]:.2f}× |")
    print(f"\nworst Swift ÷ ordinary: {worst:.2f}×; token-count mismatches: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
