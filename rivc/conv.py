"""Convolutional layers as the chips compute them: geometry and the integer arithmetic (numpy only).

Layout: images and feature maps are NHWC (``[B, H, W, C]``, channel fastest, Akida's layout and its
flatten order into a dense layer); conv weights are ``(F, kh, kw, C)``, a cross-correlation (as
PyTorch computes: the exporter flips kernels for a chip layer that convolves). Padding is
TensorFlow's: ``"same"`` pads ``max((ceil(H / s) - 1) * s + k - H, 0)`` zeros, half before and the
odd one after; ``"valid"`` pads none. Max pooling (``pool x pool`` windows, stride ``pool``, padded
as the layer's conv is: 'same' rounds the size up and its padded cells never win, 'valid' drops
the remainder) acts on the accumulator, before the activation, in that order on the chip (the
activations are monotone, so pooling the codes gives the same numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PADDINGS = ("same", "valid")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'Same' padding ``(before, after)`` of one spatial dimension."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class ConvGeometry:
    """Where a conv layer reads and writes: input ``(H, W, C)``, square kernel, stride, padding, pooling."""

    in_shape: tuple[int, int, int]
    kernel: int
    stride: int = 1
    padding: str = "same"
    pool: int = 0  # max pooling window (= stride); 0: none

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        if len(self.in_shape) != 3 or min(self.in_shape) < 1:
            raise ValueError(f"conv input shape must be (H, W, C) with positive sizes, got {self.in_shape}")
        if self.kernel < 1 or self.stride < 1 or self.pool < 0 or self.pool == 1:
            raise ValueError(f"kernel and stride must be >= 1 and pool 0 or >= 2, got kernel={self.kernel}, "
                             f"stride={self.stride}, pool={self.pool}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if min(self.conv_shape) < 1:
            raise ValueError(f"a {self.kernel}x{self.kernel} 'valid' kernel does not fit the {self.in_shape[:2]} input")

    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((top, bottom), (left, right))`` zero padding of the input."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        height, width, _ = self.in_shape
        return same_padding(height, self.kernel, self.stride), same_padding(width, self.kernel, self.stride)

    @property
    def conv_shape(self) -> tuple[int, int]:
        """Spatial size after the convolution, before pooling."""
        (top, bottom), (left, right) = self.pads()
        height, width, _ = self.in_shape
        return ((height + top + bottom - self.kernel) // self.stride + 1,
                (width + left + right - self.kernel) // self.stride + 1)

    def pool_pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((top, bottom), (left, right))`` -inf padding of the conv output before pooling ('same' only)."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        height, width = self.conv_shape
        return same_padding(height, self.pool, self.pool), same_padding(width, self.pool, self.pool)

    def out_shape(self, filters: int) -> tuple[int, int, int]:
        """``(H, W, filters)`` after convolution and pooling."""
        height, width = self.conv_shape
        if self.pool:
            (top, bottom), (left, right) = self.pool_pads()
            height, width = (height + top + bottom) // self.pool, (width + left + right) // self.pool
        return height, width, int(filters)

    def to_dict(self) -> dict:
        return {"in_shape": list(self.in_shape), "kernel": self.kernel, "stride": self.stride,
                "padding": self.padding, "pool": self.pool}

    @classmethod
    def from_dict(cls, data: dict) -> "ConvGeometry":
        return cls(tuple(data["in_shape"]), int(data["kernel"]), int(data["stride"]), str(data["padding"]),
                   int(data["pool"]))


def conv2d(x: np.ndarray, weights: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """Cross-correlation of ``x`` ``[B, H, W, C]`` with ``weights`` ``(F, k, k, C)`` -> ``[B, Ho, Wo, F]``.

    float64 in, float64 out: integer operands stay exact while every sum is below 2**53.
    """
    (top, bottom), (left, right) = geometry.pads()
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    k, s = geometry.kernel, geometry.stride
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::s, ::s]  # [B, Ho, Wo, C, k, k]
    batch, height, width = windows.shape[:3]
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(batch * height * width, -1)  # (kh, kw, C) order
    out = patches @ weights.reshape(weights.shape[0], -1).T.astype(np.float64)
    return out.reshape(batch, height, width, -1)


def max_pool(x: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """Max pooling of a conv output ``[B, H, W, F]``: ``pool x pool`` windows, stride ``pool``, padded as
    ``geometry.pool_pads()`` says."""
    (top, bottom), (left, right) = geometry.pool_pads()
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    pool, (out_h, out_w, _) = geometry.pool, geometry.out_shape(x.shape[3])
    x = x[:, : out_h * pool, : out_w * pool]
    return x.reshape(x.shape[0], out_h, pool, out_w, pool, x.shape[3]).max(axis=(2, 4))


@dataclass(frozen=True)
class ConvSpec:
    """One conv layer of a ``CnnPolicy`` (``policy_kwargs=dict(conv_arch=[...])``): filters, square
    kernel, stride, max pooling window (0: none) and padding."""

    filters: int
    kernel: int = 3
    stride: int = 1
    pool: int = 0
    padding: str = "same"

    @classmethod
    def parse(cls, value) -> "ConvSpec":
        """A ``ConvSpec``, a dict of its fields, or a tuple ``(filters, kernel, stride, pool)``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (tuple, list)) and 1 <= len(value) <= 5:
            return cls(*value)
        raise ValueError(f"a conv layer is ConvSpec(filters, kernel, stride, pool), a dict or a tuple, got {value!r}")

    def geometry(self, in_shape: tuple[int, int, int]) -> ConvGeometry:
        return ConvGeometry(in_shape, self.kernel, self.stride, self.padding, self.pool)

    def to_list(self) -> list:
        return [self.filters, self.kernel, self.stride, self.pool, self.padding]


def image_layout(shape: tuple[int, ...]) -> tuple[tuple[int, int, int], bool]:
    """``((H, W, C), channels_first)`` of an image observation shape, HWC or CHW (the channel axis is the
    smallest, as Stable-Baselines3 decides)."""
    if len(shape) != 3:
        raise ValueError(f"an image observation has 3 dimensions (H, W, C) or (C, H, W), got {shape}")
    channels_first = int(np.argmin(shape)) == 0 and shape[0] < shape[-1]
    height, width, channels = (shape[1], shape[2], shape[0]) if channels_first else shape
    return (int(height), int(width), int(channels)), channels_first
