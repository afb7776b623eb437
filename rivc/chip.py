"""Chip targets: the integer arithmetic of one chip family, described once (numpy only).

A target is read by four consumers, which therefore compute the same numbers bit for bit: the
QAT forward (:class:`rivc.QuantizedQNetwork`, on torch tensors), the integer reference
(:class:`rivc.IntegerNetwork`, on numpy arrays), the snntorch emulation and the exporter
(:mod:`rivc.neurochip`). ``acc`` is a hidden unit's integer accumulator, bias included.

* ``akida`` (Akida 2.0, IPv2): ``clip(floor((min(acc, acc_clip) * scale + 2**(shift-1)) / 2**shift), 0, L)``;
* ``akd1000`` (AKD1000 / AKD1500, Akida 1.0, IPv1): ``clip(ceil(16 * (acc - offset) / step16), 0, L)``;
* ``rate`` (time-stepped chips, NIR): as ``akida`` with 8-bit scales and any bias, run as rate-coded
  integrate-and-fire neurons whose spike counts approximate the codes.

The Q-value head is ``Q = acc * scale_out`` on the host. ``akida`` holds a scale of 8 bits
(``output_scales``), biases as int8 mantissas shifted left, and clips 1/2-bit activations on the
accumulator (``max_value``). ``akd1000`` takes its observation through an 8-bit
``InputConvolutional`` (so its first layer has 8-bit weights) and computes with a threshold and an
``act_step`` that its engine floors to sixteenths (``step16 = floor(16 * act_step) * 2**(4 - bits)``,
measured against akida 2.19.3); its head returns the raw accumulator and adds the bias on the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from collections.abc import Sequence
from typing import Any

import numpy as np

from rivc.config import LayerBits, QuantConfig, weight_levels

SCALE_SHIFT, THRESHOLD_STEP = "scale_shift", "threshold_step"


class TargetError(ValueError):
    """A network or bit width the chip target cannot run (raised when the network is built)."""


@dataclass(frozen=True)
class LayerPrecision:
    """One layer's widths on its chip, as every consumer reads them (``ChipTarget.precision``)."""

    weight_bits: int
    activation_bits: int | None  # None: the Q-value head (it outputs its accumulator)
    levels: int | None  # largest activation code (the chip's, for its width); None: the head
    output_container: int | None  # bits of the register the chip holds the activation in; None: the head

    @property
    def weight_levels(self) -> int:
        """Largest |weight code|."""
        return weight_levels(self.weight_bits)

    @property
    def is_output(self) -> bool:
        return self.activation_bits is None


@dataclass(frozen=True)
class InputLayout:
    """AKD1000: the uint8 image an observation of up to ``max_inputs`` codes is laid out in, and the one
    Valid kernel position that reads it (the second output column is unused). Measured limits of
    ``InputConvolutional`` on ``akida.AKD1000()`` (akida 2.19.3): width >= kernel + stride, filters."""

    max_inputs: int
    image: tuple[int, int, int]  # (height, width, channels)
    kernel: int
    stride: int
    max_filters: int


AKD1000_INPUT_LAYOUTS = (
    InputLayout(9, (5, 6, 1), 3, 3, 512),
    InputLayout(25, (5, 6, 1), 5, 1, 192),
    InputLayout(49, (7, 8, 1), 7, 1, 96),
    InputLayout(147, (7, 8, 3), 7, 1, 32),
)


@dataclass(frozen=True)
class ChipTarget:
    """What one chip family computes and holds."""

    name: str
    chip: str  # the hardware, in words
    requantization: str  # SCALE_SHIFT or THRESHOLD_STEP
    weight_bits: tuple[int, ...]
    activation_bits: tuple[int, ...]
    input_bits: tuple[int, ...]
    scale_bits: int = 16  # SCALE_SHIFT: bits of the unsigned per-unit scale
    min_output_bits: int | None = None  # narrowest ReLU output; narrower codes clip the accumulator
    bias_bits: int | None = None  # signed mantissa bits of a bias (mantissa << shift); None: any integer
    first_layer_weight_bits: int | None = None  # fixed by the chip's input layer (AKD1000: 8)
    max_first_inputs: int | None = None  # observation size the input layer takes
    max_inputs: int | None = None  # fan-in of a later layer
    accumulator_bits: int = 32
    input_layouts: tuple[InputLayout, ...] = ()  # AKD1000's observation image
    bias_limit: int | None = None  # largest |bias code| the chip's threshold holds
    step_limit: int | None = None  # largest act_step
    rate_coded: bool = False  # True: spike timing approximates the codes (synchronous IF)
    # conv layers (camera frames), measured with akida 2.19.3's engine and hw_only mapper
    input_conv_weight_bits: int | None = None  # weights of the chip's input conv layer (frames)
    input_channels: tuple[int, ...] | None = None  # channels the input conv layer takes; None: any
    input_kernels: tuple[int, ...] | None = None  # kernel sizes of the input conv layer; None: any
    conv_kernels: tuple[int, ...] | None = None  # kernel sizes of later conv layers; None: any
    conv_strides: dict[int, tuple[int, ...]] | None = None  # kernel -> strides a later conv runs; None: any
    pool_sizes: tuple[int, ...] = ()  # max pooling windows (stride = window); (): no pooling
    pool_and_stride: bool = True  # a later conv layer may stride and pool at once (the input layer may)
    later_conv_paddings: tuple[str, ...] = ("same", "valid")  # paddings of later conv layers (the input's: both)
    min_frame_side: int | None = None  # smallest frame height and width the input layer takes
    max_frame_width: int | None = None  # widest frame the input layer takes
    device: str | None = None  # akida virtual device the fit is checked on
    ip_version: str | None = None
    # per-layer widths: the registers a layer's weights, inputs and outputs live in (Akida 2.0: 4 or 8 bits; a
    # layer's weights no wider than its inputs, its outputs no wider than its weights); (): no such rule
    containers: tuple[int, ...] = ()
    signed_containers: tuple[int, ...] = ()  # containers that hold activations signed (ReLU saturates at 2**(b-1) - 1)
    one_activation_width: bool = False  # every hidden layer the same activation width (one time window)

    @property
    def exact(self) -> bool:
        """Whether the emulation computes the integer network's codes exactly (False: rate-coded approximation)."""
        return not self.rate_coded

    def container(self, bits: int) -> int:
        """The register a ``bits``-bit value lives in: the narrowest of ``containers`` that holds it."""
        return min((c for c in self.containers if c >= bits), default=bits)

    def levels(self, activation_bits: int) -> int:
        """Largest activation code of a ``activation_bits``-bit activation on this chip: ``2**bits - 1``, or
        ``2**(bits - 1) - 1`` in a signed container (Akida 2.0's 8-bit ReLU saturates at 127)."""
        if activation_bits in self.signed_containers:
            return 2 ** (activation_bits - 1) - 1
        return 2**activation_bits - 1

    def fixed_first_weight_bits(self, conv_input: bool = False) -> int | None:
        """Weight bits the chip's input layer fixes (AKD1000's dense input, the frames' input conv), if any."""
        return self.input_conv_weight_bits if conv_input else self.first_layer_weight_bits

    def precision(self, config: QuantConfig, n_layers: int, conv_input: bool = False) -> tuple[LayerPrecision, ...]:
        """Every layer's widths on this chip (the head last): the config's, with the width the chip's input
        layer fixes (a uniform config: that layer's weights take it; the per-layer form must say it)."""
        key = (config, n_layers, conv_input)
        cached = self._precision_cache.get(key)
        if cached is None:
            layers = list(config.layer_bits(n_layers))
            fixed = self.fixed_first_weight_bits(conv_input)
            if fixed and config.uniform:
                layers[0] = LayerBits(fixed, layers[0].activation_bits)
            cached = self._precision_cache[key] = tuple(LayerPrecision(
                layer.weight_bits, layer.activation_bits,
                None if layer.activation_bits is None else self.levels(layer.activation_bits),
                None if layer.activation_bits is None else self.container(max(layer.activation_bits,
                                                                              self.min_output_bits or 0)))
                for layer in layers)
        return cached

    @cached_property
    def _precision_cache(self) -> dict:
        return {}

    @cached_property
    def max_bias_kept_as_is(self) -> int | float:
        """:func:`largest_bias_kept` of this chip's bias format: the exporter skips :func:`quantize_bias` below it."""
        return largest_bias_kept(self.bias_bits, self.bias_limit)

    def input_layout(self, obs_dim: int) -> InputLayout:
        for layout in self.input_layouts:
            if obs_dim <= layout.max_inputs:
                return layout
        raise TargetError(
            f"target {self.name!r}: layer 0 takes {obs_dim} observation inputs, the chip's input layer at most "
            f"{self.input_layouts[-1].max_inputs}; reduce the observation (e.g. select or pool features)")

    def check(self, config: Any, sizes: list[int], convs: Sequence[tuple[Any, int]] = ()) -> None:
        """Refuse, naming the layer and the limit, what this chip cannot run.

        ``config``: a ``QuantConfig``; ``sizes``: the dense part, ``[inputs, hidden..., n_actions]``;
        ``convs``: the conv layers before it, ``(rivc.conv.ConvGeometry, filters)`` each.
        """
        self._check_bits(config, len(convs) + len(sizes) - 1, bool(convs))
        if self.ip_version is not None and len(convs) + len(sizes) < 3:
            raise TargetError(f"target {self.name!r}: the network needs at least one hidden layer")
        if convs:
            self._check_convs(convs)
        self._check_dense(sizes, first=len(convs))

    def _check_bits(self, config: QuantConfig, n_layers: int, conv_input: bool) -> None:
        """The widths, layer by layer, against the chip's: each width supported, and the chip's rules between
        layers (Akida 2.0's containers, a rate-coded chip's one time window)."""
        if config.input_bits not in self.input_bits:
            raise self._width_error("input_bits", config.input_bits, self.input_bits)
        try:
            layers = config.layer_bits(n_layers)
        except ValueError as exc:
            raise TargetError(str(exc)) from None
        fixed = self.fixed_first_weight_bits(conv_input)
        if config.uniform:
            for field, allowed in (("weight_bits", self.weight_bits), ("activation_bits", self.activation_bits)):
                if getattr(config, field) not in allowed and (field != "weight_bits" or not fixed or n_layers > 1):
                    raise self._width_error(field, getattr(config, field), allowed)
        for i, layer in enumerate(layers):
            self._check_layer_widths(i, layer, fixed if i == 0 else None, config.uniform)
        precision = self.precision(config, n_layers, conv_input)
        if self.containers:
            for i, layer in enumerate(precision):
                self._check_containers(i, layer, config.input_bits if i == 0 else precision[i - 1].activation_bits)
        widths = {layer.activation_bits for layer in precision[:-1]}
        if self.one_activation_width and len(widths) > 1:
            raise TargetError(f"target {self.name!r}: every layer spikes in one window of T steps, so every hidden "
                              f"layer needs the same activation bits (got {', '.join(map(str, sorted(widths)))}); "
                              "mixed weight widths are fine")

    def _check_layer_widths(self, i: int, layer: LayerBits, fixed: int | None, uniform: bool) -> None:
        """Layer ``i``'s widths against the chip's (``fixed``: the weight width its input layer fixes)."""
        if fixed and not uniform and layer.weight_bits != fixed:
            raise TargetError(f"target {self.name!r}: layer 0 is the chip's input layer, whose weights are "
                              f"{fixed}-bit; write {LayerBits(fixed, layer.activation_bits)} for it")
        if not fixed and layer.weight_bits not in self.weight_bits:
            raise TargetError(f"target {self.name!r} ({self.chip}): layer {i} has {layer.weight_bits}-bit weights; the "
                              f"chip runs {', '.join(map(str, self.weight_bits))}-bit weights: change that layer's width")
        if layer.activation_bits is not None and layer.activation_bits not in self.activation_bits:
            raise TargetError(f"target {self.name!r} ({self.chip}): layer {i} has {layer.activation_bits}-bit "
                              f"activations; the chip runs {', '.join(map(str, self.activation_bits))}-bit activations: "
                              "change that layer's width")

    def _check_containers(self, i: int, layer: LayerPrecision, input_bits: int) -> None:
        """Akida 2.0's registers: a layer's weights no wider than its inputs, its outputs no wider than its weights."""
        weights, inputs = self.container(layer.weight_bits), self.container(input_bits)
        if weights > inputs:
            raise TargetError(
                f"target {self.name!r}: layer {i} has {layer.weight_bits}-bit weights on {input_bits}-bit inputs; the "
                f"chip needs inputs at least as wide as the weights (its mapper: 'Input bits should be >= weights "
                f"bits'): give layer {i} at most {inputs}-bit weights or layer {i - 1} {weights}-bit activations")
        if layer.output_container is not None and layer.output_container > weights:
            raise TargetError(
                f"target {self.name!r}: layer {i} outputs {layer.activation_bits}-bit activations from "
                f"{layer.weight_bits}-bit weights; the chip's layers with {weights}-bit weights output at most "
                f"{weights} bits: give layer {i} {layer.output_container}-bit weights or narrower activations")

    def _width_error(self, field: str, value: int, allowed: tuple[int, ...]) -> TargetError:
        return TargetError(f"target {self.name!r} ({self.chip}) cannot run {field}={value}: it supports "
                           f"{', '.join(map(str, allowed))}; change QuantConfig.{field} or the target")

    def _check_dense(self, sizes: list[int], first: int) -> None:
        """The dense layers, the first of which is layer ``first`` (0: it takes the observation)."""
        if first:
            for i, fan_in in enumerate(sizes[:-1], start=first):
                if self.max_inputs is not None and fan_in > self.max_inputs:
                    fix = "pool or stride the feature map more" if i == first else "use narrower hidden layers"
                    raise TargetError(f"target {self.name!r}: layer {i} takes {fan_in} inputs, the chip at most "
                                      f"{self.max_inputs}; {fix}")
            return
        if self.input_layouts:
            layout = self.input_layout(sizes[0])
            if sizes[1] > layout.max_filters:
                raise TargetError(
                    f"target {self.name!r}: layer 0 has {sizes[1]} units; the chip's input layer holds at most "
                    f"{layout.max_filters} filters for {sizes[0]} inputs (kernel {layout.kernel}x{layout.kernel}); "
                    "use a narrower first hidden layer")
        elif self.max_first_inputs is not None and sizes[0] > self.max_first_inputs:
            raise TargetError(
                f"target {self.name!r}: layer 0 takes {sizes[0]} observation inputs, the chip's input layer at most "
                f"{self.max_first_inputs}; reduce the observation (e.g. select or pool features)")
        if self.max_inputs is not None:
            for i, fan_in in enumerate(sizes[1:-1], start=1):
                if fan_in > self.max_inputs:
                    raise TargetError(f"target {self.name!r}: layer {i} takes {fan_in} inputs, the chip at most "
                                      f"{self.max_inputs}; use narrower hidden layers")

    def _check_convs(self, convs: Sequence[tuple[Any, int]]) -> None:
        height, width, channels = convs[0][0].in_shape
        if self.input_channels is not None and channels not in self.input_channels:
            raise TargetError(f"target {self.name!r}: the chip's input layer takes frames of "
                              f"{' or '.join(map(str, self.input_channels))} channels, not {channels}; "
                              "convert to grayscale or RGB, or stack 3 grayscale frames")
        if min(height, width) < (self.min_frame_side or 1) or width > (self.max_frame_width or width):
            raise TargetError(f"target {self.name!r}: frames of {height}x{width} (HxW) do not fit the chip's input "
                              f"layer (at least {self.min_frame_side} pixels a side, at most {self.max_frame_width} "
                              "wide); resize them (gymnasium.wrappers.ResizeObservation)")
        for i, (geometry, _) in enumerate(convs):
            kernels = self.input_kernels if i == 0 else self.conv_kernels
            if kernels is not None and geometry.kernel not in kernels:
                raise TargetError(f"target {self.name!r}: conv layer {i} has a {geometry.kernel}x{geometry.kernel} "
                                  f"kernel; the chip runs {', '.join(f'{k}x{k}' for k in kernels)} there")
            strides = (self.conv_strides or {}).get(geometry.kernel) if i else None
            if strides is not None and geometry.stride not in strides:
                raise TargetError(f"target {self.name!r}: conv layer {i}: a {geometry.kernel}x{geometry.kernel} kernel "
                                  f"runs with stride {' or '.join(map(str, strides))}, not {geometry.stride}")
            if geometry.pool and geometry.pool not in self.pool_sizes:
                allowed = (f"the chip pools {' or '.join(map(str, self.pool_sizes))}" if self.pool_sizes else
                           "rate-coded neurons have no exact max pooling: use a strided conv instead")
                raise TargetError(f"target {self.name!r}: conv layer {i} max-pools {geometry.pool}x{geometry.pool}; {allowed}")
            if i and geometry.padding not in self.later_conv_paddings:
                raise TargetError(f"target {self.name!r}: conv layer {i} has {geometry.padding!r} padding; the chip's "
                                  f"conv layers after the input layer take {' or '.join(map(repr, self.later_conv_paddings))}")
            if geometry.pool and geometry.stride != 1 and i and not self.pool_and_stride:
                raise TargetError(f"target {self.name!r}: conv layer {i} strides and pools; the chip's conv layers do "
                                  "one of the two (only the input layer does both)")
            if geometry.pool and i == len(convs) - 1 and self.ip_version is not None:
                raise TargetError(f"target {self.name!r}: the last conv layer ({i}) max-pools; on the chip a pooling "
                                  "layer must feed another conv layer: stride it instead")


TARGETS: dict[str, ChipTarget] = {
    "akida": ChipTarget(
        name="akida", chip="BrainChip Akida 2.0 (IPv2)", requantization=SCALE_SHIFT,
        weight_bits=(1, 2, 4, 8), activation_bits=(1, 2, 4, 8), input_bits=(8,), scale_bits=8, bias_bits=8, min_output_bits=4,
        containers=(4, 8), signed_containers=(8,),
        max_first_inputs=2048, max_inputs=2048, accumulator_bits=28, device="TwoNodesIPv2", ip_version="v2",
        input_conv_weight_bits=8, input_channels=(1, 3), input_kernels=(3, 5, 7), conv_kernels=(1, 3, 5, 7),
        conv_strides={1: (1, 2), 3: (1, 2), 5: (1,), 7: (1,)}, pool_sizes=(2,), pool_and_stride=False,
        later_conv_paddings=("same",), min_frame_side=5, max_frame_width=384),
    "akd1000": ChipTarget(
        name="akd1000", chip="BrainChip AKD1000 / AKD1500 (Akida 1.0, IPv1)", requantization=THRESHOLD_STEP,
        # 1-bit FullyConnected weights are {0, 1} on IPv1, not the +-1 of binary weights: 2 and 4 bits only
        weight_bits=(2, 4), activation_bits=(1, 2, 4), input_bits=(8,), first_layer_weight_bits=8,
        input_layouts=AKD1000_INPUT_LAYOUTS, max_inputs=57334, bias_limit=2**18, step_limit=65535,
        accumulator_bits=32, device="AKD1000", ip_version="v1",
        input_conv_weight_bits=8, input_channels=(1, 3), input_kernels=(3, 5, 7), conv_kernels=(3, 5, 7),
        conv_strides={3: (1, 2), 5: (1,), 7: (1,)}, pool_sizes=(2,), later_conv_paddings=("same",), min_frame_side=5,
        max_frame_width=256),
    "rate": ChipTarget(
        name="rate", chip="rate-coded integrate-and-fire (time-stepped chips, NIR)", requantization=SCALE_SHIFT,
        scale_bits=8,  # 8 bits keep a 4-bit policy's membranes in float32's exact range (neurochip/nir_export.py)
        weight_bits=tuple(range(1, 9)), activation_bits=tuple(range(1, 9)), input_bits=tuple(range(1, 9)),
        rate_coded=True, one_activation_width=True),
}
DEFAULT_TARGET = "akida"
# Policies saved before the rate target's scales became 8-bit (integer-network format <= 3) still load and
# run as they were trained; a NIR export of them is not float32-exact. Not offered for training.
LEGACY_TARGETS: dict[str, ChipTarget] = {
    "rate16": ChipTarget(
        name="rate16", chip="rate-coded integrate-and-fire, 16-bit scales (saved before the NIR export)",
        requantization=SCALE_SHIFT, scale_bits=16, weight_bits=tuple(range(1, 9)), activation_bits=tuple(range(1, 9)),
        input_bits=tuple(range(1, 9)), rate_coded=True, one_activation_width=True),
}


def get_target(target: str | ChipTarget) -> ChipTarget:
    if isinstance(target, ChipTarget):
        return target
    if target in LEGACY_TARGETS:
        return LEGACY_TARGETS[target]
    if target not in TARGETS:
        raise TargetError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    return TARGETS[target]


# -- the arithmetic: one function per requantization, for numpy arrays and torch tensors alike -----
def _floor(x):
    return np.floor(x) if isinstance(x, (np.ndarray, np.generic)) else x.floor()


def _ceil(x):
    return np.ceil(x) if isinstance(x, (np.ndarray, np.generic)) else x.ceil()


CLIP_MIN_SIZE = 1024  # from this many codes numpy's clip is the faster one; below, max + min are


def clip_codes(x, levels: int):
    """``x.clip(0, levels)`` in place: ``x`` must be a fresh result."""
    if isinstance(x, np.ndarray):
        if x.size >= CLIP_MIN_SIZE:
            return np.clip(x, 0.0, levels, out=x)
        return np.minimum(np.maximum(x, 0.0, out=x), levels, out=x)
    return x.clip(0, levels) if isinstance(x, np.generic) else x.clamp_(0, levels)


def _minimum(x, bound):
    return np.minimum(x, bound) if isinstance(x, (np.ndarray, np.generic)) else x.minimum(bound)


def scale_shift_codes(acc, scale, shift, levels: int, acc_clip=None):
    """Akida 2.0: ``clip(floor((min(acc, acc_clip) * scale + 2**(shift-1)) / 2**shift), 0, levels)`` (``shift``: the
    layer's, or one per unit).

    ``acc`` and ``scale`` hold integers in float64 (exact below 2**53): dividing by a power of two
    is exact, so this equals the integer shift with rounding half up.
    """
    if acc_clip is not None:
        acc = _minimum(acc, acc_clip)
    if isinstance(acc, np.ndarray):  # in place on one fresh float64 array: acc * (scale / 2**shift) + 1/2, exact (the
        x = np.multiply(acc, np.multiply(scale, 2.0**-shift), dtype=np.float64)  # product's bits are acc * scale's)
        x += 0.5
        return clip_codes(np.floor(x, out=x), levels)
    if hasattr(acc, "add_") and acc.is_floating_point() and acc.element_size() == 8:  # a float64 tensor: the same,
        factor = scale * 2.0**-shift  # in place on one fresh tensor (the caller's acc untouched)
        factor = factor if hasattr(factor, "add_") else acc.new_tensor(factor)  # (numpy or Python parameters)
        return clip_codes(acc.mul(factor).add_(0.5).floor_(), levels)
    return clip_codes(_floor((acc * scale + 2.0 ** (shift - 1)) / 2.0**shift), levels)


FLOAT32_ACCUMULATORS = (np.dtype(np.int32), np.dtype(np.float32))  # accumulators scale_shift_codes32 reads
EXACT_FLOAT32 = 2.0**24  # float32 holds every integer below this exactly


def scale_shift_float32(scale: np.ndarray, shift: int | np.ndarray, levels: int, acc_clip: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(scale / 2**shift, acc_clip)`` as float32 arrays, for :func:`scale_shift_codes32`, where float32 arithmetic
    gives :func:`scale_shift_codes`'s codes on every int32 accumulator and every float32 one holding an integer (the
    QAT forward's); ``None`` where it may not.

    Every rounding in float32 (the accumulator's conversion, the product, the half added) is monotonic, and so is
    the rule; both give 0 at and below an accumulator of 0, and both saturate at ``levels``. Where ``(levels + 1.5) *
    2**shift + scale < 2**24`` (every unit; scales non-negative integers), every accumulator whose code is not
    saturated, and the first that saturates, has ``acc * scale + 2**(shift-1)`` below ``2**24``: those are computed
    exactly, and the rest saturate with them. ``acc_clip`` must be exact in float32 (Akida's is an 8-bit mantissa
    shifted)."""
    # (numpy's ufunc reductions: the array methods' wrappers cost more than the work on a layer's few scales)
    scale = np.asarray(scale)
    per_unit = isinstance(shift, np.ndarray)
    top_shift = float(np.maximum.reduce(shift, axis=None)) if per_unit else float(shift)
    if (np.minimum.reduce(scale, axis=None, initial=0) < 0
            or (levels + 1.5) * 2.0**top_shift + float(np.maximum.reduce(scale, axis=None, initial=0)) >= EXACT_FLOAT32):
        return None
    power = np.exp2(-shift.astype(np.float64)) if per_unit else 2.0 ** -int(shift)
    factor = np.multiply(scale, power, dtype=np.float32)  # exact: scale < 2**24 times a power of two
    if acc_clip is None:
        return factor, None
    clip = np.asarray(acc_clip).astype(np.float32)
    return (factor, clip) if np.array_equal(clip, acc_clip) else None


def scale_shift_codes32(acc: np.ndarray, factor: np.ndarray, acc_clip: np.ndarray | None, levels: int) -> np.ndarray:
    """:func:`scale_shift_codes` of an int32 or float32 accumulator in float32 (half the memory of float64's, and
    the next layer's dtype): ``clip(floor(min(acc, acc_clip) * factor + 1/2), 0, levels)``, with ``(factor,
    acc_clip)`` from :func:`scale_shift_float32` (which says where these are the same codes). Returns float32."""
    if acc.dtype == np.float32 and acc_clip is None:
        x = acc * factor
    else:  # a float32 copy (a plain conversion costs less than a cast inside the ufunc's loop), then in place
        x = acc.astype(np.float32)
        if acc_clip is not None:
            np.minimum(x, acc_clip, out=x)
        x *= factor
    x += np.float32(0.5)
    return clip_codes(np.floor(x, out=x), levels)


def threshold_step_codes(acc, offset, step16, levels: int):
    """AKD1000: ``clip(ceil(16 * (acc - offset) / step16), 0, levels)``, ``step16`` the step in sixteenths
    of an accumulator unit (integers; float64 division of integers below 2**40 never crosses one)."""
    return clip_codes(_ceil(16 * (acc - offset) / step16), levels)


def _per_unit(step) -> float | np.ndarray:
    """An activation step as float64: a float, or per unit an array."""
    return np.asarray(step, dtype=np.float64) if isinstance(step, np.ndarray) else float(step)


def requantization(acc_scale: np.ndarray, activation_step: float | np.ndarray, bits: int
                   ) -> tuple[np.ndarray, int | np.ndarray]:
    """Fixed point ``(scale, shift)``: scales below ``2**bits``, ``scale / 2**shift ~= acc_scale / activation_step``.
    One activation step: one shift for the layer, its largest ratio's. A step per unit (an array): a shift per unit,
    each ratio's own (every unit's scale in ``[2**(bits-1), 2**bits)``, where its ratio allows): ratios that span more
    than ``2**bits`` would round the smaller ones' scales to 0 under one shift."""
    if isinstance(activation_step, np.ndarray):
        return _unit_requantization(np.asarray(acc_scale, dtype=np.float64) / _per_unit(activation_step), bits)
    # (np.maximum.reduce: the array methods' Python wrappers cost more than the work on a layer's few scales)
    ratio = np.asarray(acc_scale, dtype=np.float64) / float(activation_step)
    top = float(np.maximum.reduce(ratio, initial=0.0))
    shift = bits - math.frexp(top)[1] if top > 0 else bits  # frexp: top = m 2**e, m in [0.5, 1): e = floor(log2) + 1
    shift = int(min(max(shift, 1), MAX_SHIFT))
    scale = np.rint(ratio * 2.0**shift)
    if shift > 1 and np.maximum.reduce(scale, initial=0.0) >= 2**bits:  # rounded up to 2**bits
        shift -= 1
        scale = np.rint(ratio * 2.0**shift)
    # saturates only where the ratio exceeds 2**(bits - 1)
    return np.minimum(scale, 2**bits - 1, out=scale).astype(np.int64), shift


MAX_SHIFT = 40  # the largest output shift chosen (Akida's is an int8)


def _unit_requantization(ratio: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`requantization` with a shift per unit."""
    exponent = np.frexp(ratio)[1]  # ratio = m 2**e, m in [0.5, 1)
    shift = np.clip(np.where(ratio > 0, bits - exponent, bits), 1, MAX_SHIFT).astype(np.int64)
    scale = np.rint(ratio * 2.0**shift)
    over = (scale >= 2**bits) & (shift > 1)  # rounded up to 2**bits
    shift[over] -= 1
    scale = np.rint(ratio * 2.0**shift)
    return np.minimum(scale, 2**bits - 1).astype(np.int64), shift


def accumulator_clip(scale: np.ndarray, shift: int | np.ndarray, levels: int, value_bits: int = 8) -> np.ndarray:
    """Akida's per-unit ``max_value << max_value_shift`` for ``levels`` below the 4-bit output's 15:
    the largest accumulator, as a ``value_bits``-bit value shifted left, whose code stays <= ``levels``."""
    scale = np.maximum(np.asarray(scale, dtype=np.int64), 1)
    # floor((a * s + 2**(shift-1)) / 2**shift) <= levels  <=>  a * s < (2 * levels + 1) * 2**(shift-1)
    value, value_shift = unsigned_mantissa(((2 * levels + 1) * 2 ** (shift - 1) - 1) // scale, value_bits)
    return value << value_shift


def unsigned_mantissa(value: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per entry, the smallest ``shift`` with ``value >> shift`` below ``2**bits``: ``(value >> shift, shift)``
    (Akida's ``max_value`` and ``max_value_shift``; exact for values that are such a mantissa shifted)."""
    value = np.asarray(value, dtype=np.int64)
    shift = np.zeros_like(value)
    while np.any(value >> shift > 2**bits - 1):
        shift = np.where(value >> shift > 2**bits - 1, shift + 1, shift)
    return value >> shift, shift


def split_bias(bias: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the smallest ``shift >= 0`` and a signed ``bits``-bit mantissa (symmetric range)
    with ``mantissa << shift`` nearest to ``bias`` (half up): exact for biases that are such values."""
    bias = np.asarray(bias, dtype=np.int64)
    top = 2 ** (bits - 1) - 1
    # |bias| <= top << shift  <=>  ceil(|bias| / top) <= 2**shift: the shift is the bit length of that - 1
    shift = np.frexp(np.maximum((np.abs(bias) + (top - 1)) // top, 1) - 1)[1].astype(np.int64)
    mantissa = (bias + ((1 << shift) >> 1)) >> shift  # floor((bias + 2**(shift-1)) / 2**shift)
    return np.minimum(np.maximum(mantissa, -top), top), shift  # (np.clip costs 5x more on small arrays)


def largest_bias_kept(bits: int | None, limit: int | None = None) -> int | float:
    """The largest |bias code| that :func:`quantize_bias` returns as it is: a mantissa with shift 0, or the
    limit (``inf``: any integer)."""
    if bits is not None:
        return 2 ** (bits - 1) - 1
    return math.inf if limit is None else limit


def quantize_bias(bias: np.ndarray, bits: int | None, limit: int | None = None) -> np.ndarray:
    """Bias codes the chip holds: ``mantissa << shift`` with a signed ``bits``-bit mantissa; ``None``: any
    integer, within ``+-limit`` when given."""
    bias = np.asarray(bias, dtype=np.int64)
    if bits is None and limit is None:
        return bias
    if np.maximum.reduce(np.abs(bias), initial=0) <= largest_bias_kept(bits, limit):  # every bias is its own code
        return bias
    if bits is None:
        return np.clip(bias, -limit, limit)
    mantissa, shift = split_bias(bias, bits)
    return mantissa << shift


def threshold_step(
    acc_scale: np.ndarray, activation_step: float | np.ndarray, activation_bits: int, step_limit: int = 65535
) -> tuple[np.ndarray, np.ndarray]:
    """AKD1000 ``(offset, step16)``: the activation step in sixteenths of an accumulator unit, a multiple of
    ``2**(4 - bits)`` below 4-bit activations and at most ``step_limit`` as act_step (what the chip
    expresses), and the integer ``offset = floor(step / 2)`` that makes ``ceil`` round to nearest."""
    quantum = 2 ** max(4 - activation_bits, 0)
    step16 = np.round(16 * _per_unit(activation_step) / np.asarray(acc_scale, dtype=np.float64) / quantum) * quantum
    step16 = np.clip(step16, quantum, 16 * quantum * step_limit).astype(np.int64)
    return step16 // 32, step16


def act_step(step16: np.ndarray, activation_bits: int) -> np.ndarray:
    """The float32 ``act_step`` to program so that the AKD1000 engine computes with ``step16``."""
    return (np.asarray(step16, dtype=np.float64) / 16 / 2 ** max(4 - activation_bits, 0)).astype(np.float32)
