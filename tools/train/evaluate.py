#!/usr/bin/env python3
"""Evaluate an exported demo expert with transformers (greedy decoding).

    $REF_PYTHON tools/train/evaluate.py et5 --split data/validation.jsonl

Reports token F1 and exact match (SQuAD normalisation) per question kind, the
measured latency per answer in transformers on this CPU, and an analytic
compute cost (FLOPs per answer: prompt + generated tokens). The analytic cost is
what "EMamba is cheaper on long contexts" rests on: T5's encoder self-attention
and the decoder's cross-attention grow with the prompt length, Mamba's cost per
token does not. Measured transformers latency is shown too, with the caveat that
transformers runs Mamba on CPU through a slow Python path (no CUDA kernels).

Results are merged into <model>/training.json under "evaluation".
"""

import argparse
import json
import os
import sys
import time
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import exact_match, load_rows, prompt_text, token_f1, write_json  # noqa: E402

from tokenizers import Tokenizer  # noqa: E402

SAMPLES = [
    {"question": "What is gingivitis?"},
    {"question": "What is periodontitis?"},
    {"question": "According to the passage, what is pulpitis?",
     "context": "Gingivitis: inflammation of the gums. Pulpitis: inflammation of the pulp of a tooth. "
                "Caries: a decayed tooth or area of decay. Halitosis: offensive breath. "
                "Glossitis: inflammation of the tongue. Stomatitis: inflammation of the mucous "
                "membrane of the mouth."},
    {"question": "Which term in the passage means: offensive breath?",
     "context": "Gingivitis: inflammation of the gums. Pulpitis: inflammation of the pulp of a tooth. "
                "Caries: a decayed tooth or area of decay. Halitosis: offensive breath. "
                "Glossitis: inflammation of the tongue. Stomatitis: inflammation of the mucous "
                "membrane of the mouth."},
]


class Expert:
    def __init__(self, kind: str, folder: str):
        from transformers import MambaForCausalLM, T5ForConditionalGeneration
        self.kind = kind
        self.tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            self.config = json.load(handle)
        cls = T5ForConditionalGeneration if kind == "et5" else MambaForCausalLM
        self.model, info = cls.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
        self.model.eval()
        # The export must load completely: nothing missing, nothing left over
        # (tied weights are absent from the file on purpose and re-tied on load).
        problems = {k: v for k, v in info.items() if v and k != "missing_keys"}
        missing = [k for k in info.get("missing_keys", []) if k != "lm_head.weight" or kind != "emamba"]
        if problems or missing:
            raise SystemExit(f"{folder}: checkpoint does not load cleanly: missing={missing} {problems}")
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def prompt_ids(self, row):
        if self.kind == "et5":
            return self.tok.encode(prompt_text(row)).ids
        return self.tok.encode(prompt_text(row) + " answer:").ids

    @torch.no_grad()
    def answer(self, row, max_new_tokens=64):
        ids = torch.tensor([self.prompt_ids(row)])
        if self.kind == "et5":
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
            generated = [t for t in out[0].tolist()[1:] if t not in (0, 1)]
        else:
            out = self.model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False,
                                      num_beams=1, eos_token_id=0, pad_token_id=1)
            generated = [t for t in out[0].tolist()[ids.shape[1]:] if t not in (0, 1)]
        return self.tok.decode(generated).strip(), ids.shape[1], len(generated) + 1

    def flops(self, prompt_tokens: int, answer_tokens: int) -> float:
        """Forward FLOPs (2 per multiply-add) for one answer, KV/state caching assumed."""
        c = self.config
        if self.kind == "et5":
            d, inner, ff = c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"]
            attn_proj = 4 * d * inner
            ffn = 3 * d * ff  # gated: wi_0, wi_1, wo
            encoder = c["num_layers"] * prompt_tokens * (attn_proj + ffn + 2 * prompt_tokens * inner)
            decoder = 0
            for t in range(1, answer_tokens + 1):
                decoder += c["num_decoder_layers"] * (2 * attn_proj + ffn + 2 * t * inner
                                                      + 2 * prompt_tokens * inner)
                decoder += d * c["vocab_size"]
            # Cross-attention keys/values of the encoder output, once per layer.
            decoder += c["num_decoder_layers"] * prompt_tokens * 2 * d * inner
            return 2.0 * (encoder + decoder)
        d, n = c["hidden_size"], c["state_size"]
        inner = c["intermediate_size"]
        rank = c["time_step_rank"]
        per_token_layer = (d * 2 * inner + inner * c["conv_kernel"] + inner * (rank + 2 * n)
                           + rank * inner + inner * n * 3 + inner * d)
        per_token = c["num_hidden_layers"] * per_token_layer
        return 2.0 * (prompt_tokens * per_token + answer_tokens * (per_token + d * c["vocab_size"]))


def subset(rows, per_kind):
    """The first `per_kind` rows of each kind (the files are already shuffled)."""
    seen = defaultdict(int)
    out = []
    for row in rows:
        if seen[row["kind"]] < per_kind:
            seen[row["kind"]] += 1
            out.append(row)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("expert", choices=("et5", "emamba"))
    parser.add_argument("--model", default=None, help="default models/demo/<expert>")
    parser.add_argument("--split", default="data/validation.jsonl")
    parser.add_argument("--per-kind", type=int, default=60, help="rows per question kind")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--predictions", default=None, help="optional JSONL of predictions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.model or os.path.join("models", "demo", args.expert)
    expert = Expert(args.expert, folder)
    rows = subset(load_rows(args.split), args.per_kind)
    by_kind = defaultdict(lambda: defaultdict(float))
    predictions = []
    for row in rows:
        start = time.perf_counter()
        text, prompt_tokens, answer_tokens = expert.answer(row)
        seconds = time.perf_counter() - start
        stats = by_kind[row["kind"]]
        stats["n"] += 1
        stats["f1"] += token_f1(text, row["answer"])
        stats["em"] += exact_match(text, row["answer"])
        stats["seconds"] += seconds
        stats["prompt_tokens"] += prompt_tokens
        stats["gflops"] += expert.flops(prompt_tokens, answer_tokens) / 1e9
        predictions.append({"question": row["question"], "kind": row["kind"],
                            "reference": row["answer"], "prediction": text})
    table = {}
    total = defaultdict(float)
    for kind in sorted(by_kind):
        s = by_kind[kind]
        table[kind] = {"n": int(s["n"]), "token_f1": round(s["f1"] / s["n"], 4),
                       "exact_match": round(s["em"] / s["n"], 4),
                       "ms_per_answer": round(1000 * s["seconds"] / s["n"], 1),
                       "mean_prompt_tokens": round(s["prompt_tokens"] / s["n"], 1),
                       "gflops_per_answer": round(s["gflops"] / s["n"], 4)}
        for key in ("n", "f1", "em", "seconds", "gflops"):
            total[key] += s[key]
    overall = {"n": int(total["n"]), "token_f1": round(total["f1"] / total["n"], 4),
               "exact_match": round(total["em"] / total["n"], 4),
               "ms_per_answer": round(1000 * total["seconds"] / total["n"], 1),
               "gflops_per_answer": round(total["gflops"] / total["n"], 4)}
    samples = []
    for row in SAMPLES:
        text, _, _ = expert.answer(row)
        samples.append({"question": row["question"], "context": row.get("context"), "answer": text})
    result = {"split": args.split, "rows_per_kind": args.per_kind, "decoding": "greedy, max 64 new tokens",
              "overall": overall, "by_kind": table, "samples": samples,
              "parameters": expert.parameters,
              "note": "ms_per_answer: transformers 5.23 eager on this shared 2-core CPU, 1 thread, "
                      "batch 1 (Mamba runs its slow CPU path there); gflops: analytic forward cost."}
    training_path = os.path.join(folder, "training.json")
    record = {}
    if os.path.exists(training_path):
        with open(training_path, encoding="utf-8") as handle:
            record = json.load(handle)
    record["evaluation"] = result
    write_json(training_path, record)
    if args.predictions:
        with open(args.predictions, "w", encoding="utf-8") as handle:
            for p in predictions:
                handle.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(json.dumps({"overall": overall, "by_kind": table, "samples": samples}, indent=1,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
