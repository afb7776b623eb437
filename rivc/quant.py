"""Fake quantizers with straight-through gradients (the QAT half of RIVC).

Each quantizer returns integer codes and their scale, so the forward pass and the export
(``QuantizedQNetwork.export``) read the very same codes: no float re-rounding between them.
"""

from __future__ import annotations

import torch


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return quantized.view_as(quantized)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ARG004
        return grad, None


def straight_through(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """Forward exactly ``quantized``; backward the identity to ``x`` (straight-through estimator)."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return quantized
    return _StraightThrough.apply(x, quantized.detach())


def weight_codes(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric signed codes per output channel and their scale ``[out, 1]``.

    ``bits >= 2``: codes in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` over the channel's max |w|.
    ``bits == 1``: binary codes +-1 with the channel's mean |w| as scale (XNOR-Net).
    """
    w = weight.detach()
    if bits == 1:
        scale = w.abs().mean(dim=1, keepdim=True)
        codes = torch.where(w >= 0, 1.0, -1.0)
    else:
        levels = 2 ** (bits - 1) - 1
        scale = w.abs().amax(dim=1, keepdim=True) / levels
        codes = torch.clamp(torch.round(w / torch.where(scale > 0, scale, 1.0)), -levels, levels)
    return codes, torch.where(scale > 0, scale, torch.ones_like(scale))


def bias_codes(bias: torch.Tensor, acc_scale: torch.Tensor) -> torch.Tensor:
    """Bias in accumulator units (integer codes), ``acc_scale`` per output channel."""
    return torch.round(bias.detach() / acc_scale)


def input_codes(
    obs: torch.Tensor, low: torch.Tensor, high: torch.Tensor, inv_step: torch.Tensor, zero_point: int
) -> torch.Tensor:
    """Signed input codes, computed in float64 exactly as ``InputQuantizer.codes`` does."""
    x = torch.clamp(obs.to(torch.float64), low, high)
    return torch.floor((x - low) * inv_step + 0.5) - zero_point
