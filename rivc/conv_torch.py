"""Conv layers on torch tensors (NCHW), as :mod:`rivc.conv` computes them on integers: 'same' padding as
TensorFlow pads, stride, max pooling, and a feature map flattened NHWC (the chip's order)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rivc.conv import ConvGeometry


def same_pad(x: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """Zero padding of an NCHW input as ``geometry.pads()`` says (TensorFlow's 'same', or none)."""
    (top, bottom), (left, right) = geometry.pads()
    return F.pad(x, (left, right, top, bottom)) if top or bottom or left or right else x


def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """A conv layer on torch tensors (NCHW): padded cross-correlation, then max pooling, as
    ``rivc.integer_net.IntegerLayer.accumulate`` computes it (the float surrogate that carries gradients)."""
    return _pool(F.conv2d(same_pad(x, geometry), weight, bias, stride=geometry.stride), geometry)


def exact_conv(codes: torch.Tensor, weight_codes: torch.Tensor, bias_codes: torch.Tensor,
               geometry: ConvGeometry) -> torch.Tensor:
    """The integer accumulators of a conv layer as patches times weights (``F.unfold`` + one matrix
    product): exact on every backend while the sums are exact in the dtype, which a convolution
    algorithm (Winograd, FFT) is not."""
    padded = same_pad(codes, geometry)
    patches = F.unfold(padded, geometry.kernel, stride=geometry.stride)  # [B, C*k*k, L]
    height, width = geometry.conv_shape
    acc = (weight_codes.reshape(weight_codes.shape[0], -1) @ patches + bias_codes[:, None])
    return _pool(acc.reshape(codes.shape[0], -1, height, width), geometry)


def _pool(x: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    if not geometry.pool:
        return x
    (top, bottom), (left, right) = geometry.pool_pads()
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=-torch.inf)
    return F.max_pool2d(x, geometry.pool, geometry.pool)  # floor: 'valid' drops the remainder


def flatten_nhwc(x: torch.Tensor) -> torch.Tensor:
    """A feature map ``[B, C, H, W]`` flattened channel fastest, as the chip (and ``IntegerNetwork``) does."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) if x.ndim == 4 else x
