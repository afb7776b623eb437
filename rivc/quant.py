"""Fake quantizers with straight-through gradients (the QAT half of RIVC).

Each quantizer returns integer codes and their scale, so the forward pass and the export
(``QuantizedQNetwork.export``) read the very same codes: no float re-rounding between them.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

TINY32 = np.finfo(np.float32).tiny  # the smallest normal float32
MIN_CLIP = 1e-4  # smallest activation clip value: keeps the activation step positive
MIN_CLIP32 = float(np.float32(MIN_CLIP))  # as the float32 clips hold it
_FLOAT32 = struct.Struct("f")


def activation_step(clip: float, levels: int) -> float:
    """The value of one activation code, ``clip / L`` in float32 (as torch divides the float32 clip): the
    float64 quotient of the two float32 values rounded once to float32, which is the float32 quotient
    (53 >= 2 * 24 + 2 bits: no double rounding), by ``struct`` at a fraction of numpy scalars' cost."""
    return _FLOAT32.unpack(_FLOAT32.pack(_FLOAT32.unpack(_FLOAT32.pack(clip))[0] / levels))[0]


def pact_masks(pre_activation, clip):
    """PACT's gradient rule for ``min(relu(z), clip)``: where it passes the gradient to ``z`` (``0 < z < clip``)
    and where to the clip (``z >= clip``), read on the exact pre-activation ``z = acc * scale`` (numpy arrays
    or torch tensors, as booleans). The one statement of the rule: both forward paths read it."""
    above = pre_activation >= clip
    return (pre_activation > 0) & ~above, above


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


class _StraightThroughPact(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, clip, value, pre_activation):
        ctx.save_for_backward(pre_activation, clip)
        return value

    @staticmethod
    def backward(ctx, grad):
        pre_activation, clip = ctx.saved_tensors
        inside, above = pact_masks(pre_activation, clip)
        return grad * inside, (grad * above).sum().reshape(clip.shape), None, None


def straight_through_pact(z: torch.Tensor, clip: torch.Tensor, value: torch.Tensor,
                          pre_activation: torch.Tensor | None = None) -> torch.Tensor:
    """Forward ``value`` (the chip's activation, ``codes * clip / L``); backward PACT's gradients of
    ``min(relu(z), clip)``: to ``z`` where ``0 < z < clip``, to ``clip`` where ``z >= clip``, the
    conditions read on ``pre_activation`` (the exact value ``z`` stands for; default ``z`` itself)."""
    if not torch.is_grad_enabled() or not (z.requires_grad or clip.requires_grad):
        return value
    pre = z.detach() if pre_activation is None else pre_activation.detach()
    return _StraightThroughPact.apply(z, clip, value, pre)


def weight_codes(weight: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric signed codes per output channel of ``weight`` ``[out, in]`` (float32) and their scale ``[out, 1]``.

    ``bits >= 2``: codes in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` over the channel's max |w|.
    ``bits == 1``: binary codes +-1 with the channel's mean |w| as scale (XNOR-Net).
    numpy on purpose: the QAT forward and the export read these very arrays (float32 arithmetic).
    """
    w = np.asarray(weight, dtype=np.float32)
    if bits == 1:
        scale = np.abs(w).mean(axis=1, keepdims=True, dtype=np.float32)
        scale[scale == 0] = 1
        return np.where(w >= 0, np.float32(1), np.float32(-1)), scale
    scale = np.maximum.reduce(np.abs(w), axis=1, keepdims=True, initial=np.float32(0))  # (no method wrapper)
    scale /= np.float32(2 ** (bits - 1) - 1)
    # zero or subnormal rows: codes 0. A row with a NaN weight keeps a NaN scale (the NaN makes the minimum NaN,
    # and NaN < TINY32 is False): QuantizedQNetwork.quantize_layer refuses non-finite weights by their row scales
    if np.minimum.reduce(scale, axis=None, initial=np.inf) < TINY32:  # (one call; the array's all() wraps two)
        scale[scale < TINY32] = 1
    # a normal scale makes |w / scale| <= levels (1 + 2**-22) < levels + 1/2: the codes need no clipping
    codes = w / scale
    return np.rint(codes, out=codes), scale


def bias_codes(bias: np.ndarray, acc_scale: np.ndarray) -> np.ndarray:
    """Bias in accumulator units (integer codes, float32), ``acc_scale`` per output channel (float32)."""
    return np.rint(np.asarray(bias, dtype=np.float32) / acc_scale)
