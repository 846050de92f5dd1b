"""The answer-start weighting of ET5's loss (needs torch: run with $REF_PYTHON -m pytest
tools/train/tests; skipped elsewhere)."""

import os
import sys

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from train import answer_start_weighted_loss  # noqa: E402


def test_weight_one_is_plain_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[1, 4:] = -100  # a shorter answer, padded
    plain = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(answer_start_weighted_loss(logits, labels, 1.0), plain)


def test_the_first_tokens_count_as_much_as_their_weight():
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 5)
    labels = torch.randint(0, 5, (2, 6))
    labels[0, 2:] = -100  # two answer tokens, both at the start
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1), ignore_index=-100,
                                                  reduction="none").view(2, 6)
    weights = torch.tensor([[4.0, 4, 0, 0, 0, 0], [4, 4, 4, 1, 1, 1]])
    expected = (per_token * weights).sum() / weights.sum()
    assert torch.allclose(answer_start_weighted_loss(logits, labels, 4.0, start_tokens=3), expected)
