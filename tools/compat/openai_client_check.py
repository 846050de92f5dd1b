#!/usr/bin/env python3
"""Drives a live MambaFormer gateway with the official `openai` Python client (pinned in
scripts/test.sh), as an application would: plain and streaming chat, usage in streams, `stop`,
`logprobs`, seeded sampling, and the error objects for bad input and for 429.

  tools/compat/openai_client_check.py --base-url http://127.0.0.1:8080/v1 [--api-key KEY]

The gateway must run with --max-concurrent 1 (the 429 check holds one answer open) and experts
that ignore EOS (answers run to max_tokens). Prints one line per check; exit 1 on the first
failure. Used by OpenAIClientTests in `make test`.
"""
import argparse
import sys
import threading

import openai


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="unused")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=60)
    question = [{"role": "user", "content": "What is gingivitis?"}]

    models = client.models.list()
    model = models.data[0].id
    check("models.list", len(models.data) >= 1 and model, f"{models}")

    plain = client.chat.completions.create(model=model, messages=question, max_tokens=24)
    text = plain.choices[0].message.content
    check("chat: an answer", plain.object == "chat.completion" and len(text) > 0, f"{plain}")
    check("chat: finish_reason length", plain.choices[0].finish_reason == "length", plain.choices[0].finish_reason)
    check("chat: usage adds up", plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
          and plain.usage.completion_tokens == 24, f"{plain.usage}")

    stream = client.chat.completions.create(model=model, messages=question, max_tokens=24, stream=True,
                                            stream_options={"include_usage": True})
    streamed, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            streamed += choice.delta.content or ""
            finish = choice.finish_reason or finish
    check("stream: the same greedy answer", streamed == text, f"{streamed!r} != {text!r}")
    check("stream: usage with include_usage", usage is not None and usage.completion_tokens == 24, f"{usage}")
    check("stream: finish_reason", finish == "length", f"{finish}")

    cut = len(text) // 2
    stop_word = text[cut:cut + 3]
    stopped = client.chat.completions.create(model=model, messages=question, max_tokens=24, stop=[stop_word, "\u2603\u2603"])
    content = stopped.choices[0].message.content
    check("stop: ends before the stop string", content == text[:text.index(stop_word)], f"{content!r} (stop {stop_word!r} in {text!r})")
    check("stop: finish_reason stop", stopped.choices[0].finish_reason == "stop", stopped.choices[0].finish_reason)
    streamed_stop = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=model, messages=question, max_tokens=24, stop=stop_word, stream=True) if c.choices)
    check("stop: streamed, nothing of the stop string", streamed_stop == content, f"{streamed_stop!r} != {content!r}")

    scored = client.chat.completions.create(model=model, messages=question, max_tokens=12, logprobs=True, top_logprobs=2)
    items = scored.choices[0].logprobs.content
    check("logprobs: one per token", len(items) == scored.usage.completion_tokens, f"{len(items)} vs {scored.usage}")
    check("logprobs: alternatives", all(len(i.top_logprobs) == 2 and i.logprob <= 0 for i in items), f"{items[:2]}")
    check("logprobs: tokens spell the answer", "".join(i.token for i in items) == scored.choices[0].message.content)

    sampled = [client.chat.completions.create(model=model, messages=question, max_tokens=24, temperature=1.2, seed=seed)
               .choices[0].message.content for seed in (42, 42, 43)]
    check("seed: the same seed, the same answer", sampled[0] == sampled[1], f"{sampled}")

    try:
        client.chat.completions.create(model=model, messages=[], max_tokens=4)
        check("bad input: refused", False, "accepted an empty message list")
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        check("bad input: 422 with an error object", error.status_code == 422 and body.get("code") == "invalid_value",
              f"{error.status_code} {error.body}")

    # 429: hold one answer open (the gateway admits one at a time here), then ask again.
    held = client.chat.completions.create(model=model, messages=question, max_tokens=512, stream=True)
    first = next(iter(held))
    try:
        client.chat.completions.create(model=model, messages=question, max_tokens=4)
        check("429: refused while busy", False, "admitted a second answer")
    except openai.RateLimitError as error:
        body = error.body if isinstance(error.body, dict) else {}
        check("429: RateLimitError with an error object", error.status_code == 429 and body.get("code"), f"{error.body}")
    finally:
        held.close()
    check("429: the held stream had started", first is not None)
    print("openai-client-check: every check passed with openai", openai.__version__)


if __name__ == "__main__":
    main()
