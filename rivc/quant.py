"""Fake quantizers with straight-through gradients (the QAT half of RIVC).

Each quantizer returns integer codes and their scale, so the forward pass and the export
(``QuantizedQNetwork.export``) read the very same codes: no float re-rounding between them.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from rivc.config import CLIP_GRADIENTS, CLIP_STATISTICS

TINY32 = np.finfo(np.float32).tiny  # the smallest normal float32
MIN_CLIP = 1e-4  # smallest activation clip value: keeps the activation step positive
MIN_CLIP32 = float(np.float32(MIN_CLIP))  # as the float32 clips hold it
_FLOAT32 = struct.Struct("f")


def activation_step(clip, levels: int):
    """The value of one activation code, ``clip / L`` in float32 (as torch divides the float32 clip): the
    float64 quotient of the two float32 values rounded once to float32, which is the float32 quotient
    (53 >= 2 * 24 + 2 bits: no double rounding), by ``struct`` at a fraction of numpy scalars' cost. Per-unit
    clips (a numpy array or torch tensor): the float32 quotients, an array."""
    if isinstance(clip, np.ndarray):
        return clip.astype(np.float32) / np.float32(levels)
    if isinstance(clip, torch.Tensor):
        return clip.float() / levels
    return _FLOAT32.unpack(_FLOAT32.pack(_FLOAT32.unpack(_FLOAT32.pack(clip))[0] / levels))[0]


def clamped_clip(clip):
    """A clip value (a float, or a float32 array of per-unit clips) at least ``MIN_CLIP`` (as torch's
    ``clamp_min(MIN_CLIP)`` of the float32 clip)."""
    if isinstance(clip, np.ndarray):
        return np.maximum(clip.astype(np.float32), np.float32(MIN_CLIP32))
    return max(clip, MIN_CLIP32)


def pact_masks(pre_activation, clip):
    """PACT's gradient rule for ``min(relu(z), clip)``: where it passes the gradient to ``z`` (``0 < z < clip``)
    and where to the clip (``z >= clip``), read on the exact pre-activation ``z = acc * scale`` (numpy arrays
    or torch tensors, as booleans)."""
    above = pre_activation >= clip
    return (pre_activation > 0) & ~above, above


def clip_gradient_weights(pre_activation, clip: float, codes, levels: int, rule: str = "pact"):
    """Where a hidden layer's gradient passes to ``z`` and how much of each activation's gradient reaches its clip.

    The activation is ``y = s * codes`` with ``s = clip / L`` and ``codes`` the chip's (about ``round(z / s)``
    clamped to ``[0, L]``); ``z`` is the exact pre-activation. Both rules pass the gradient to ``z`` where
    ``0 < z < clip`` (straight through) and none below 0. They differ in ``dy/dclip``:

    - ``"pact"`` (Choi et al. 2018): 1 where ``z >= clip``, 0 elsewhere: only the clipped activations count.
    - ``"lsq"`` (Esser et al. 2020): 1 where ``z >= clip``, the rounding error ``(codes - z / s) / L`` where
      ``0 < z < clip``, all scaled by LSQ's ``1 / sqrt(N L)`` (``N``: a sample's activations in the layer).

    ``clip``: a float, or per-unit clips (an array of the layer's units, numpy or torch as ``pre_activation``; then
    ``N`` counts a sample's activations that share one clip: 1 in a dense layer).
    numpy arrays or torch tensors; returns ``(inside, clip_weight)``: booleans, and booleans (PACT) or float32
    values (LSQ).
    """
    inside, above = pact_masks(pre_activation, clip)
    if rule == "pact":
        return inside, above
    if rule != "lsq":
        raise ValueError(f"the clip gradient must be one of {', '.join(CLIP_GRADIENTS)}, got {rule!r}")
    clips = clip.numel() if isinstance(clip, torch.Tensor) else np.size(clip)
    sharing = int(np.prod(pre_activation.shape[1:])) // max(int(clips), 1)
    scale = 1.0 / np.sqrt(sharing * levels)
    step = activation_step(clip, levels)
    if not isinstance(pre_activation, np.ndarray):
        return inside, ((above + inside * (codes - pre_activation / step) / levels) * scale).float()
    weight = codes - pre_activation / step  # the same float64 operations in the same order, in place
    weight *= inside
    weight /= levels
    weight += above
    weight *= scale
    return inside, weight.astype(np.float32)


MSE_CANDIDATES, MSE_SAMPLE = 32, 4096  # clip_statistic("mse"): clips tried, pre-activations read (about)


def clip_statistic(pre_activation, levels: int, statistic: str = "max", per_unit: bool = False):
    """The clip a batch's exact pre-activations ``z`` (a numpy array or torch tensor) ask for, which a tracked clip
    follows. ``"max"``: the largest ``z``. ``"mse"``: of ``k / 32`` of the largest (``k = 1..32``), the clip whose
    ``L``-level quantization of ``relu(z)`` has the least squared error on the batch's first samples (about 4,096
    values; a replay batch is a random sample): every value weighs, so a lone outlier does not set the step (a tail
    of many does). ``per_unit``: each unit's own (``z`` ``[B, units]``; a float64 array)."""
    if statistic not in CLIP_STATISTICS:
        raise ValueError(f"the clip statistic must be one of {', '.join(CLIP_STATISTICS)}, got {statistic!r}")
    if per_unit:
        return _unit_clip_statistic(pre_activation, levels, statistic)
    if isinstance(pre_activation, torch.Tensor):
        if statistic == "max":  # (reduced where the tensor lives)
            return float(pre_activation.max())
        pre_activation = pre_activation.detach().cpu().numpy()
    top = float(np.maximum.reduce(pre_activation, axis=None))
    if statistic == "max" or top <= 0:
        return top
    rows = -(-MSE_SAMPLE // int(np.prod(pre_activation.shape[1:])))  # whole samples: every unit is read alike
    values = pre_activation[:rows]
    positive = values[values > 0].astype(np.float32)
    return float(_least_squares_clips(positive[:, None], np.array([top]), levels)[0])


def _unit_clip_statistic(pre_activation, levels: int, statistic: str) -> np.ndarray:
    """:func:`clip_statistic` of each unit (column) of ``[B, units]``, over the batch (``"mse"``: its first 4,096
    samples)."""
    if isinstance(pre_activation, torch.Tensor):
        pre_activation = pre_activation.detach().cpu().numpy()
    top = np.maximum.reduce(pre_activation, axis=0).astype(np.float64)
    if statistic == "max":
        return top
    values = np.maximum(pre_activation[:MSE_SAMPLE], 0.0).astype(np.float32)  # a unit's zeros cost no error
    return np.where(top > 0, _least_squares_clips(values, top, levels), top)


def _least_squares_clips(values: np.ndarray, top: np.ndarray, levels: int) -> np.ndarray:
    """Per column of ``values`` (``[n, units]`` float32, each ``>= 0``), of ``k / 32`` of its ``top`` (``k = 1..32``),
    the clip whose ``levels``-level quantization of the column has the least squared error (float64)."""
    fractions = np.arange(1, MSE_CANDIDATES + 1, dtype=np.float32) / np.float32(MSE_CANDIDATES)
    clips = np.maximum(top, 0.0).astype(np.float32)[None, :] * fractions[:, None]  # [candidates, units]
    steps = np.maximum(clips / np.float32(levels), np.float32(TINY32))[:, None, :]
    codes = np.minimum(np.rint(values[None] / steps), np.float32(levels))
    errors = np.square(codes * steps - values[None]).sum(axis=1)  # [candidates, units]
    return clips[np.argmin(errors, axis=0), np.arange(clips.shape[1])].astype(np.float64)


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


class _StraightThroughClip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, clip, value, inside, clip_weight):
        ctx.save_for_backward(inside, clip_weight)
        ctx.clip_shape = clip.shape
        return value

    @staticmethod
    def backward(ctx, grad):
        inside, clip_weight = ctx.saved_tensors
        clip_grad = grad * clip_weight
        clip_grad = clip_grad.sum() if len(ctx.clip_shape) == 0 else clip_grad.sum(dim=0)  # per unit: over the batch
        return grad * inside, clip_grad.reshape(ctx.clip_shape), None, None, None


def straight_through_clip(z: torch.Tensor, clip: torch.Tensor, value: torch.Tensor,
                          pre_activation: torch.Tensor | None = None, rule: str = "pact",
                          codes: torch.Tensor | None = None, levels: int = 0) -> torch.Tensor:
    """Forward ``value`` (the chip's activation, ``codes * clip / L``); backward the gradients of
    ``min(relu(z), clip)`` of :func:`clip_gradient_weights`' ``rule`` (PACT: to ``z`` where ``0 < z < clip``, to
    ``clip`` where ``z >= clip``), read on ``pre_activation`` (the exact value ``z`` stands for; default ``z``
    itself); LSQ reads the activation's ``codes`` and ``levels`` too."""
    if not torch.is_grad_enabled() or not (z.requires_grad or clip.requires_grad):
        return value
    pre = z.detach() if pre_activation is None else pre_activation.detach()
    clip_value = float(clip.detach()) if clip.dim() == 0 else clip.detach().to(pre.dtype)  # per unit: a tensor
    inside, clip_weight = clip_gradient_weights(pre, clip_value, codes, levels, rule)
    return _StraightThroughClip.apply(z, clip, value, inside, clip_weight)


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
