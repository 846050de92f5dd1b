"""A training-speed replacement for transformers' CPU selective scan (Mamba-1).

transformers 5.23 falls back, without the mamba-ssm CUDA kernels, to a Python
loop that indexes `discrete_A[:, :, t]` at every step. Its backward pass turns
each index into a full-size gradient tensor, so one step costs O(L^2) memory
traffic (measured: 450 s backward for 8 x 304 tokens). This version runs the
same recurrence

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t,    y_t = C_t . h_t + D * x_t

over `unbind` views (whose backward is one `stack`), so the cost is O(L).
A Hillis-Steele parallel prefix scan was tried first: on one CPU thread it was
4-5x slower (it is memory-bound: ~20 full-size temporaries per layer).
Numerically the same function (tests/test_fast_scan.py compares values and
gradients with transformers'); used only for training: the exported
checkpoints are plain MambaForCausalLM weights.
"""

import torch
import torch.nn.functional as F


def selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus=False, return_last_state=False, **kwargs):
    # Shapes as in transformers' mamba_selective_scan: hidden_states, dt, z: (batch, d, L);
    # A: (d, n); B, C: (batch, n, L).
    input_dtype = hidden_states.dtype
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[..., None]
    if delta_softplus:
        dt = F.softplus(dt)
    decay = torch.exp(A[None, :, None, :] * dt[:, :, :, None])                       # (batch, d, L, n)
    drive = dt[:, :, :, None] * B.transpose(1, 2)[:, None].float() * hidden_states[:, :, :, None].float()
    state = torch.zeros_like(decay[:, :, 0])                                          # (batch, d, n)
    outputs = []
    for a, b, c in zip(decay.unbind(2), drive.unbind(2), C.float().unbind(2)):
        state = a * state + b
        outputs.append(torch.bmm(state, c.unsqueeze(-1)).squeeze(-1))
    scan_output = torch.stack(outputs, dim=-1).to(input_dtype)                        # (batch, d, L)
    if D is not None:
        scan_output = scan_output + hidden_states * D[None, :, None]
    if z is not None:
        scan_output = scan_output * F.silu(z)
    if return_last_state:
        return scan_output, state
    return scan_output


def install() -> None:
    """Route MambaMixer's full-sequence scan through `selective_scan`."""
    from transformers.models.mamba import modeling_mamba
    modeling_mamba.mamba_selective_scan = selective_scan
