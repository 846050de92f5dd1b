"""Writes a Hugging Face tokenizer.json from a GGUF file's byte-level BPE vocabulary.

    python gguf_tokenizer.py MODEL.gguf OUT/tokenizer.json

benchmarks/servers gives our cluster the tokenizer llama-server reads from the GGUF (mamba-130m's
GPT-NeoX vocabulary, which llama.cpp's converter ships), so both servers see the same prompt
tokens. Only what GPT-NeoX-style models use: `tokenizer.ggml.model == "gpt2"`.
"""
import json
import sys

from gguf import GGUFReader
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import AddedToken


def main(src: str, out: str) -> None:
    reader = GGUFReader(src)

    def value(name):
        field = reader.fields.get(name)
        return None if field is None else field.contents()

    kind = value("tokenizer.ggml.model")
    if kind != "gpt2":
        sys.exit(f"{src}: tokenizer.ggml.model is {kind!r}; only byte-level BPE ('gpt2') is handled")
    tokens = value("tokenizer.ggml.tokens")
    merges = value("tokenizer.ggml.merges")
    types = value("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {token: i for i, token in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    # Control tokens (type 3) are specials, as in the original tokenizer (<|endoftext|>, <|padding|>).
    specials = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    tokenizer.add_special_tokens(specials)
    tokenizer.save(out)
    print(json.dumps({"tokens": len(tokens), "merges": len(pairs), "specials": len(specials), "out": out}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
