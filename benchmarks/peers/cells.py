"""What the peers' benchmark scripts share: their options, the timing rule and the JSON lines
they print (the keys of `engine-bench run`, which table.py reads). Standard library only."""
import argparse
import json
import resource
import statistics


def arguments(model_help: str) -> argparse.ArgumentParser:
    """The options every peer script takes; a script adds its own before parse_args()."""
    p = argparse.ArgumentParser()
    p.add_argument("model", help=model_help)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--repeat", type=int, default=3)
    return p


def batches(a) -> list:
    return [int(b) for b in a.batches.split(",")]


def timed(fn, repeat: int):
    """(median, best) of `repeat` calls of fn() -> seconds, after one warm-up call."""
    fn()
    times = [fn() for _ in range(repeat)]
    return statistics.median(times), min(times)


def emit(**fields):
    print(json.dumps(fields), flush=True)


def prefill_line(tokens: int, median: float, best: float):
    emit(bench="prefill", tokens=tokens, ms=round(best * 1000, 1), ms_median=round(median * 1000, 1))


def decode_line(batch: int, steps: int, median: float, best: float, **extra):
    """Seconds per step of `batch` tokens; `extra` keys (mode, last_tokens) go after the figures."""
    fields = {"bench": "decode", "batch": batch}
    if "mode" in extra:
        fields["mode"] = extra.pop("mode")
    fields.update(steps=steps, ms_per_step=round(best * 1000, 2), ms_per_step_median=round(median * 1000, 2),
                  ms_per_token=round(best * 1000 / batch, 2),
                  tokens_per_s=round(batch / best, 1), tokens_per_s_median=round(batch / median, 1))
    fields.update(extra)
    emit(**fields)


def rss_line():
    emit(peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
