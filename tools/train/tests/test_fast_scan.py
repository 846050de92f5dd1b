"""The training scan equals transformers' reference scan (needs torch + transformers:
run with $REF_PYTHON -m pytest tools/train/tests; skipped elsewhere)."""

import os
import sys

import pytest

torch = pytest.importorskip("torch")
modeling_mamba = pytest.importorskip("transformers.models.mamba.modeling_mamba")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fast_scan  # noqa: E402


@pytest.mark.parametrize("length", [1, 2, 33, 150])
def test_matches_reference(length):
    torch.manual_seed(length)
    b, d, n = 2, 8, 4
    x, dt, z = torch.randn(b, d, length), torch.randn(b, d, length), torch.randn(b, d, length)
    A = -torch.rand(d, n) * 5
    B, C = torch.randn(b, n, length), torch.randn(b, n, length)
    D, bias = torch.randn(d), torch.randn(d)
    kwargs = dict(D=D, z=z, delta_bias=bias, delta_softplus=True, return_last_state=True)
    ref, ref_state = modeling_mamba.mamba_selective_scan(x, dt, A, B, C, **kwargs)
    new, new_state = fast_scan.selective_scan(x, dt, A, B, C, **kwargs)
    assert torch.allclose(ref, new, atol=1e-4)
    assert torch.allclose(ref_state, new_state, atol=1e-4)


def test_gradients_match_reference():
    torch.manual_seed(0)
    b, d, n, length = 1, 4, 3, 40
    inputs = [torch.randn(b, d, length, requires_grad=True), torch.randn(b, d, length, requires_grad=True)]
    A = (-torch.rand(d, n) * 3).requires_grad_()
    B, C = torch.randn(b, n, length), torch.randn(b, n, length)
    grads = []
    for scan in (modeling_mamba.mamba_selective_scan, fast_scan.selective_scan):
        for t in inputs + [A]:
            t.grad = None
        scan(inputs[0], inputs[1], A, B, C, delta_softplus=True).square().sum().backward()
        grads.append([t.grad.clone() for t in inputs + [A]])
    for ref, new in zip(*grads):
        assert torch.allclose(ref, new, atol=1e-3, rtol=1e-3)
