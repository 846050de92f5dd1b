#!/usr/bin/env python3
"""Train the two demo tokenizers on the training split's text.

    $REF_PYTHON tools/train/train_tokenizers.py --data data --out models/demo

- ET5: a T5-style Unigram model (Metaspace "▁", `<pad>`=0, `</s>`=1, `<unk>`=2,
  `</s>` appended by the post-processor), NFKC; cased, or lower-cased with
  `--et5-lowercase` (then "Aspirin" at a passage's sentence start and "aspirin" in
  the question are the same tokens, so finding the term is matching ids).
- EMamba: a GPT-NeoX-style byte-level BPE (`<|endoftext|>`=0 as BOS/EOS,
  `<|padding|>`=1), NFKC.

They differ on purpose: the cluster passes text, not ids, between experts.
Only components the Swift loader implements are used (no Precompiled
normalizer). The Unigram trainer is not bit-reproducible, so the trained files
are committed ("frozen") and the training scripts read them; re-running this
script gives an equivalent but not identical vocabulary.
"""

import argparse
import json
import os
import string

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers


def corpus(data_dir):
    with open(os.path.join(data_dir, "train.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            yield row["question"]
            if "context" in row:
                yield row["context"]
            yield row["answer"]
    # The prompt scaffolding both experts see.
    yield "question: context: answer:"


def train_unigram(data_dir, vocab_size, lowercase=False):
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []) + [normalizers.Strip()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        max_piece_length=16,
        # Every printable ASCII character stays in the vocabulary so that
        # plain-English input never maps to <unk>.
        initial_alphabet=list(string.printable.strip()),
        shrinking_factor=0.75,
        n_sub_iterations=2,
    )
    tokenizer.train_from_iterator(corpus(data_dir), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>",
        special_tokens=[("</s>", tokenizer.token_to_id("</s>"))])
    assert tokenizer.token_to_id("<pad>") == 0 and tokenizer.token_to_id("</s>") == 1
    return tokenizer


def train_bpe(data_dir, vocab_size):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus(data_dir), trainer=trainer)
    assert tokenizer.token_to_id("<|endoftext|>") == 0
    return tokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", default="models/demo")
    parser.add_argument("--et5-vocab", type=int, default=4000)
    parser.add_argument("--et5-lowercase", action="store_true")
    parser.add_argument("--emamba-vocab", type=int, default=4096)
    parser.add_argument("--only", choices=("et5", "emamba"), default=None)
    args = parser.parse_args()
    trained = []
    if args.only in (None, "et5"):
        trained.append(("et5", train_unigram(args.data, args.et5_vocab, args.et5_lowercase)))
    if args.only in (None, "emamba"):
        trained.append(("emamba", train_bpe(args.data, args.emamba_vocab)))
    for name, tokenizer in trained:
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        tokenizer.save(os.path.join(folder, "tokenizer.json"))
        sample = "What is gingivitis? Gingivitis: inflammation of the gums."
        encoding = tokenizer.encode(sample)
        print(name, tokenizer.get_vocab_size(), encoding.tokens[:16], "->",
              repr(tokenizer.decode(encoding.ids)))


if __name__ == "__main__":
    main()
