#!/usr/bin/env python3
"""Train one demo expert on CPU within a wall-time budget and export it.

    nice -n 15 $REF_PYTHON tools/train/train.py et5    --minutes 35
    nice -n 15 $REF_PYTHON tools/train/train.py emamba --minutes 35

ET5: a small T5 v1.1-style encoder-decoder (gated-GELU FFN, RMS layer norm,
relative position buckets, untied lm_head), input "question: … context: …",
target the answer. EMamba: a small Mamba-1 causal LM on
"question: … context: … answer: <answer><|endoftext|>" with the loss on the
answer tokens only.

Training stops on time (the learning-rate schedule is a function of elapsed
time, so a stopped run has still annealed) and exports a checkpoint every few
minutes, so a usable model exists even if the process is killed. Exports are
Hugging Face folders (config.json, model.safetensors in bf16, tokenizer.json,
generation_config.json) plus training.json with the configuration and progress.
The tokenizers are the frozen files already in the output folders
(train_tokenizers.py).
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from augment import Augmenter  # noqa: E402
from common import length_batches, load_rows, oversampled, prompt_text, write_json  # noqa: E402

from tokenizers import Tokenizer  # noqa: E402

# ------------------------------------------------------------------ configs

ET5_CONFIG = {
    # The classic T5 v1.1 config layout (as google/t5-v1_1-* and Flan-T5 ship it).
    "architectures": ["T5ForConditionalGeneration"],
    "model_type": "t5",
    "d_model": 256,
    "d_kv": 32,
    "d_ff": 640,
    "num_layers": 3,
    "num_decoder_layers": 3,
    "num_heads": 8,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.0,
    "layer_norm_epsilon": 1e-06,
    "initializer_factor": 1.0,
    "feed_forward_proj": "gated-gelu",
    "dense_act_fn": "gelu_new",
    "is_gated_act": True,
    "is_encoder_decoder": True,
    "tie_word_embeddings": False,
    "use_cache": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "vocab_size": 4000,
    "torch_dtype": "bfloat16",
}

EMAMBA_CONFIG = {
    "hidden_size": 256,
    "state_size": 16,
    "num_hidden_layers": 4,
    "expand": 2,
    "conv_kernel": 4,
    "time_step_rank": "auto",
    "use_bias": False,
    "use_conv_bias": True,
    "residual_in_fp32": True,
    "layer_norm_epsilon": 1e-05,
    "tie_word_embeddings": True,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 1,
    "vocab_size": 4096,
}

MAX_SOURCE = 1280   # ET5 encoder tokens (longest passages are ~1,230)
MAX_TARGET = 96
MAX_SEQUENCE = 1280  # EMamba prompt + answer


# ------------------------------------------------------------------ models

def build_et5(vocab_size: int, tied: bool = False):
    from transformers import T5Config, T5ForConditionalGeneration
    config = T5Config(**{k: v for k, v in ET5_CONFIG.items()
                         if k not in ("architectures", "model_type", "torch_dtype")}
                      | {"vocab_size": vocab_size})
    model = T5ForConditionalGeneration(config)
    if tied:
        # As the original T5 (t5-small): the LM head is the embedding, and the decoder output is
        # scaled by d_model^-0.5 before it. Copying a token then needs no head of its own per
        # token: the embedding the decoder attended to already scores that token.
        model.lm_head.weight = model.shared.weight
        model.config.scale_decoder_outputs = True
        return model
    # transformers 5.23 ties lm_head to the embedding at init even with
    # tie_word_embeddings=False (transformers 5.23 ties them otherwise): give lm_head its own weights.
    if model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr():
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    # An untied T5 head is initialised with std 1 (factor 1.0), which with
    # RMS-normalised inputs gives logits of std ~sqrt(d_model) and a first loss
    # above 100; std d_model^-0.5 starts near log(vocab) instead.
    torch.nn.init.normal_(model.lm_head.weight, std=config.d_model ** -0.5)
    model.config.tie_word_embeddings = False
    return model


def et5_is_tied(model) -> bool:
    return model.lm_head.weight is model.shared.weight


def optimizer_for(model, lr: float):
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)


def build_emamba(vocab_size: int):
    from transformers import MambaConfig, MambaForCausalLM
    import fast_scan
    fast_scan.install()  # training speed only; same function as transformers' scan
    config = MambaConfig(**(EMAMBA_CONFIG | {"vocab_size": vocab_size}))
    return MambaForCausalLM(config)


# ------------------------------------------------------------------ examples

class Et5Examples:
    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self.eos = tokenizer.token_to_id("</s>")

    def encode(self, row):
        source = self.tok.encode(prompt_text(row)).ids      # ends with </s>
        target = self.tok.encode(row["answer"]).ids
        if len(source) > MAX_SOURCE:
            source = source[:MAX_SOURCE - 1] + [self.eos]
        if len(target) > MAX_TARGET:
            target = target[:MAX_TARGET - 1] + [self.eos]
        return source, target

    @staticmethod
    def length(pair):
        return len(pair[0]) + 4 * len(pair[1])  # decoder tokens cost more (cross-attention)

    def collate(self, pairs):
        src_len = max(len(s) for s, _ in pairs)
        tgt_len = max(len(t) for _, t in pairs)
        input_ids = torch.zeros(len(pairs), src_len, dtype=torch.long)
        attention = torch.zeros(len(pairs), src_len, dtype=torch.long)
        labels = torch.full((len(pairs), tgt_len), -100, dtype=torch.long)
        for i, (s, t) in enumerate(pairs):
            input_ids[i, :len(s)] = torch.tensor(s)
            attention[i, :len(s)] = 1
            labels[i, :len(t)] = torch.tensor(t)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class EmambaExamples:
    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self.eos = tokenizer.token_to_id("<|endoftext|>")
        self.pad = tokenizer.token_to_id("<|padding|>")

    def encode(self, row):
        prompt = self.tok.encode(prompt_text(row) + " answer:").ids
        answer = self.tok.encode(" " + row["answer"]).ids[:MAX_TARGET - 1] + [self.eos]
        if len(prompt) + len(answer) > MAX_SEQUENCE:
            prompt = prompt[:MAX_SEQUENCE - len(answer)]
        return prompt, answer

    @staticmethod
    def length(pair):
        return len(pair[0]) + len(pair[1])

    def collate(self, pairs):
        # Right padding: a causal model never sees the padding of its own row.
        length = max(len(p) + len(a) for p, a in pairs)
        input_ids = torch.full((len(pairs), length), self.pad, dtype=torch.long)
        labels = torch.full((len(pairs), length), -100, dtype=torch.long)
        for i, (p, a) in enumerate(pairs):
            input_ids[i, :len(p) + len(a)] = torch.tensor(p + a)
            labels[i, len(p):len(p) + len(a)] = torch.tensor(a)
        return {"input_ids": input_ids, "labels": labels}


def answer_start_weighted_loss(logits, labels, start_weight: float, start_tokens: int = 3):
    """Cross-entropy over an encoder-decoder's target tokens, with the first `start_tokens` of each
    answer weighted `start_weight`. In a passage question those tokens are where the model
    chooses which sentence to copy; once it has started, copying on is easy. Averaged loss gives
    that choice only a few tokens' say in ten or twenty."""
    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100,
        reduction="none").view(labels.shape)
    weights = (labels != -100).float()
    weights[:, :start_tokens] *= start_weight
    return (per_token * weights).sum() / weights.sum()


# ------------------------------------------------------------------ export

def export(model, kind: str, out_dir: str, tokenizer_path: str, record: dict) -> None:
    """Write the HF folder atomically enough: weights to a temp dir, then move."""
    from safetensors.torch import save_file
    tmp = out_dir + ".export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    state = {}
    for name, tensor in model.state_dict().items():
        if kind == "emamba" and name == "lm_head.weight":
            continue  # tied to backbone.embeddings.weight (as in state-spaces/mamba-*-hf)
        if kind == "et5" and name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            continue  # share `shared.weight` (as in the published T5 checkpoints)
        if kind == "et5" and name == "lm_head.weight" and et5_is_tied(model):
            continue  # tied: the head is `shared.weight` (as in t5-small)
        state[name] = tensor.detach().to(torch.bfloat16).contiguous()
    save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    if kind == "et5":
        config = dict(ET5_CONFIG, vocab_size=model.config.vocab_size)
        if et5_is_tied(model):
            config["tie_word_embeddings"] = True
        generation = {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0,
                      "max_new_tokens": 64}
    else:
        config = model.config.to_dict()
        config["architectures"] = ["MambaForCausalLM"]
        config["torch_dtype"] = "bfloat16"
        config.pop("dtype", None)
        generation = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1, "max_new_tokens": 64}
    write_json(os.path.join(tmp, "config.json"), config)
    write_json(os.path.join(tmp, "generation_config.json"), generation)
    write_json(os.path.join(tmp, "training.json"), record)
    os.makedirs(out_dir, exist_ok=True)
    for name in ("model.safetensors", "config.json", "generation_config.json", "training.json"):
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    shutil.rmtree(tmp, ignore_errors=True)
    if os.path.abspath(tokenizer_path) != os.path.abspath(os.path.join(out_dir, "tokenizer.json")):
        shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))


def load_previous(model, kind: str, folder: str) -> dict:
    """Continue from an exported folder (e.g. the committed demo weights): the same
    architecture, weights widened from bf16. Returns that folder's training record."""
    from safetensors.torch import load_file
    state = {k: v.to(torch.float32) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    if kind == "et5":  # the exported file names only `shared` for the embeddings
        state["encoder.embed_tokens.weight"] = state["shared.weight"]
        state["decoder.embed_tokens.weight"] = state["shared.weight"]
        if "lm_head.weight" not in state:  # a tied export
            state["lm_head.weight"] = state["shared.weight"]
    else:              # lm_head is tied to the embeddings and not exported
        state["lm_head.weight"] = state["backbone.embeddings.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"--resume {folder}: missing {missing}, unexpected {unexpected}")
    with open(os.path.join(folder, "training.json"), encoding="utf-8") as f:
        return json.load(f)


def earlier_runs(earlier: dict) -> list:
    """The runs behind a resumed folder's training.json, oldest first, so that a model card
    can sum the wall time and tokens."""
    return earlier.get("earlier_runs", []) + [{"training": earlier.get("training"), "progress": earlier.get("progress")}]


# ------------------------------------------------------------------ training

def learning_rate(peak: float, progress: float, warmup: float = 0.03) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak, over elapsed time."""
    if progress < warmup:
        return peak * max(progress / warmup, 0.01)
    p = min((progress - warmup) / (1 - warmup), 1.0)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("expert", choices=("et5", "emamba"))
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", default=None, help="default models/demo/<expert>")
    parser.add_argument("--minutes", type=float, default=35.0, help="wall-time budget")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--token-budget", type=int, default=4096, help="padded tokens per batch")
    parser.add_argument("--max-batch", type=int, default=48)
    parser.add_argument("--closed-book-repeat", type=int, default=2)
    parser.add_argument("--augment", type=int, default=0, metavar="N",
                        help="re-draw closed-book question templates every epoch and add N fresh "
                             "reading passages built from training glosses (augment.py); 0: the fixed rows")
    parser.add_argument("--copies", type=int, default=0, metavar="N",
                        help="N rows per epoch that repeat a training gloss (augment.copy_row); implies the "
                             "re-drawn templates of --augment")
    parser.add_argument("--counterfactual", type=float, default=0.0, metavar="P",
                        help="share of fresh passages whose terms swap glosses, so that recalling a "
                             "memorised gloss is wrong and only reading is right (augment.py)")
    parser.add_argument("--novel", type=float, default=0.0, metavar="P",
                        help="share of fresh passages and copy rows whose glosses have half their words "
                             "replaced at random, so they can be copied only from the input (augment.py)")
    parser.add_argument("--grow-passages", type=float, default=0.0, metavar="F",
                        help="curriculum: the fresh passages' largest size grows from 2 to 10 glosses over "
                             "the first fraction F of the budget (fixed reading rows join at 10); 0: off")
    parser.add_argument("--answer-start-weight", type=float, default=1.0, metavar="W",
                        help="ET5: weight of the first 3 answer tokens in the loss (where a passage answer "
                             "picks its sentence); 1: plain cross-entropy")
    parser.add_argument("--tie-embeddings", action="store_true",
                        help="ET5: the LM head is the input embedding, as in the original T5 "
                             "(default: untied, as T5 v1.1)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", default=None,
                        help="start from the weights of an exported folder (fresh optimizer and schedule); "
                             "the training record keeps the earlier runs")
    parser.add_argument("--log", default=None, help="progress log file (default <out>/../<expert>-train.log)")
    args = parser.parse_args(argv)
    if (args.answer_start_weight != 1.0 or args.tie_embeddings) and args.expert != "et5":
        parser.error("--answer-start-weight and --tie-embeddings are for et5")
    return args


class EpochRows:
    """The rows of each epoch, encoded: the fixed training rows (closed-book ones repeated), or
    with --augment / --copies a fresh draw of templates and passages every epoch."""

    def __init__(self, args, examples, rng):
        self.args, self.examples = args, examples
        self.train_rows = load_rows(os.path.join(args.data, "train.jsonl"))
        self.augmenter = Augmenter(self.train_rows, args.augment, rng, copies=args.copies,
                                   counterfactual=args.counterfactual, novel=args.novel) \
            if args.augment or args.copies else None

    def largest_passage(self, elapsed: float) -> int:
        if self.args.grow_passages <= 0:
            return 10
        return min(10, 2 + int(8 * elapsed / (self.args.minutes * 60 * self.args.grow_passages)))

    def draw(self, elapsed: float = 0.0):
        """Sets rows, encoded (source/prompt, target/answer ids) and lengths for one epoch."""
        if self.augmenter:
            self.rows = self.augmenter.epoch(self.args.closed_book_repeat, self.largest_passage(elapsed))
        else:
            self.rows = oversampled(self.train_rows, self.args.closed_book_repeat)
        self.encoded = [self.examples.encode(row) for row in self.rows]
        self.lengths = [self.examples.length(pair) for pair in self.encoded]


def training_record(args, parameters: int, epochs: EpochRows, earlier) -> dict:
    """What model_card.py and the next --resume read: the run's settings, data and progress."""
    record = {
        "expert": args.expert,
        "config": ET5_CONFIG if args.expert == "et5" else EMAMBA_CONFIG,
        "parameters": parameters,
        "training": {k: getattr(args, k) for k in (
            "minutes", "lr", "token_budget", "max_batch", "closed_book_repeat", "augment", "copies",
            "counterfactual", "novel", "grow_passages", "answer_start_weight", "tie_embeddings", "seed", "threads")},
        "data": {"train_rows": len(epochs.rows), "train_tokens_per_epoch": sum(
            len(a) + len(b) for a, b in epochs.encoded)},
        "optimizer": "AdamW(betas=(0.9, 0.98), weight_decay=0.01), linear warm-up 3 % then "
                     "cosine to 10 % over the wall-time budget, grad clip 1.0",
        "torch": torch.__version__,
        "progress": {},
    }
    if earlier:
        record["earlier_runs"] = earlier_runs(earlier)
    return record


def batch_loss(model, batch, answer_start_weight: float):
    if answer_start_weight != 1.0:
        # Decoder inputs without labels, so the model does not also compute its own loss.
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=model.prepare_decoder_input_ids_from_labels(
                           labels=batch["labels"])).logits
        return answer_start_weighted_loss(logits, batch["labels"], answer_start_weight)
    return model(**batch).loss


def main(argv=None):
    # 1. Settings, model and data.
    args = parse_args(argv)
    out_dir = args.out or os.path.join("models", "demo", args.expert)
    log_path = args.log or os.path.join(os.path.dirname(out_dir.rstrip("/")), f"{args.expert}-train.log")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    tokenizer_path = os.path.join(out_dir, "tokenizer.json")
    tokenizer = Tokenizer.from_file(tokenizer_path)
    vocab = tokenizer.get_vocab_size()
    if args.expert == "et5":
        model, examples = build_et5(vocab, args.tie_embeddings), Et5Examples(tokenizer)
    else:
        model, examples = build_emamba(vocab), EmambaExamples(tokenizer)
    earlier = load_previous(model, args.expert, args.resume) if args.resume else None
    epochs = EpochRows(args, examples, rng)
    epochs.draw()

    # 2. The record and the log.
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = optimizer_for(model, args.lr)
    budget = args.minutes * 60
    record = training_record(args, parameters, epochs, earlier)
    log = open(log_path, "a", buffering=1, encoding="utf-8")
    log.write(f"# {args.expert}: {parameters:,} parameters, {len(epochs.rows)} rows/epoch, "
              f"budget {args.minutes} min" + (f", resumed from {args.resume}" if args.resume else "") + "\n")

    # 3. Train until the wall-time budget is spent, exporting every --checkpoint-minutes.
    model.train()
    start = last_checkpoint = time.time()
    step, epoch, tokens_seen, loss_ema = 0, 0, 0, None

    def progress(finished: bool) -> dict:
        return {"steps": step, "epochs_started": epoch, "tokens_seen": tokens_seen,
                "minutes": round((time.time() - start) / 60, 2),
                "train_loss_ema": round(loss_ema if loss_ema is not None else float("nan"), 4),
                "finished": finished}

    done = False
    while not done:
        epoch += 1
        if epochs.augmenter and epoch > 1:  # a new draw of templates and passages
            epochs.draw(time.time() - start)
            log.write(f"epoch {epoch}: {len(epochs.rows)} rows, passages up to "
                      f"{epochs.largest_passage(time.time() - start)} glosses\n")
        for batch_indices in length_batches(epochs.lengths, args.token_budget, args.max_batch, rng):
            elapsed = time.time() - start
            if elapsed >= budget:
                done = True
                break
            lr = learning_rate(args.lr, elapsed / budget)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = batch_loss(model, examples.collate([epochs.encoded[i] for i in batch_indices]),
                              args.answer_start_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            tokens_seen += sum(len(epochs.encoded[i][0]) + len(epochs.encoded[i][1]) for i in batch_indices)
            loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
            if step % 20 == 0:
                log.write(f"step {step} epoch {epoch} t={elapsed / 60:.1f}min lr={lr:.2e} "
                          f"loss={loss.item():.3f} ema={loss_ema:.3f} "
                          f"tok/s={tokens_seen / max(elapsed, 1e-9):.0f}\n")
            if time.time() - last_checkpoint >= args.checkpoint_minutes * 60:
                record["progress"] = progress(finished=False)
                model.eval()
                export(model, args.expert, out_dir, tokenizer_path, record)
                model.train()
                last_checkpoint = time.time()
                log.write(f"checkpoint exported at step {step}\n")

    # 4. The final export.
    record["progress"] = progress(finished=True)
    model.eval()
    export(model, args.expert, out_dir, tokenizer_path, record)
    log.write(f"done: {record['progress']}\n")


if __name__ == "__main__":
    main()
