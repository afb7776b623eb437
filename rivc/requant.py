"""A hidden layer's requantization: how its chip turns a unit's integer accumulator into an activation code.

One object per hidden layer (:attr:`rivc.integer_net.IntegerLayer.requant`) owns that rule for every
consumer, so a new arithmetic is one class here (and its exporter's variables):

* :meth:`~Requantization.codes`: the codes ``0..levels`` (QAT forward and integer reference, numpy or torch);
* :meth:`~Requantization.firing_membrane`: the charge and threshold an integrate-and-fire neuron fires the
  codes from (the exact emulation), and :meth:`~ScaleShift.rate_coding` for rate-coded chips;
* :meth:`~Requantization.check`: validation against the layer and the chip target;
* :meth:`~Requantization.arrays` / :func:`from_arrays`: the array form in an integer-network file;
* :meth:`~Requantization.akida_variables`: the Akida layer variables that compute it;
* :meth:`~Requantization.parameter_bits`: the memory it takes on the chip (the cost report).

numpy only (no torch import): a deployed policy builds these on an edge board.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar

import numpy as np

from rivc.cached import cached_attribute
from rivc.chip import (
    FLOAT32_ACCUMULATORS,
    MAX_SHIFT,
    SCALE_SHIFT,
    THRESHOLD_STEP,
    ChipTarget,
    LayerPrecision,
    accumulator_clip,
    act_step,
    requantization,
    scale_shift_codes,
    scale_shift_codes32,
    scale_shift_float32,
    threshold_step,
    threshold_step_codes,
    unsigned_mantissa,
)

UNKNOWN_WIDTH_BITS = 32  # a register whose width the chip's documentation does not give


@dataclass
class Requantization:
    """Accumulator -> activation code ``0..levels`` of one hidden layer (per unit)."""

    levels: int  # the largest code (rivc.chip.ChipTarget.levels)

    kind: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]  # the file's array keys, suffixed with the layer index; the first marks the rule

    @classmethod
    def fit(cls, acc_scale: np.ndarray, activation_step: float | np.ndarray, precision: LayerPrecision,
            chip: ChipTarget) -> Requantization:
        """The rule of a layer whose accumulator unit is worth ``acc_scale`` (per unit) and whose activation code is
        worth ``activation_step`` (one, or one per unit)."""
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, arrays, layer: int, shift: int | None, precision: LayerPrecision) -> Requantization:
        """The rule :meth:`arrays` stored for ``layer`` (``shift``: the file's per-layer scalar)."""
        raise NotImplementedError

    @classmethod
    def placeholder(cls, units: int, precision: LayerPrecision, chip: ChipTarget) -> Requantization:
        """A legal rule of the layer's width with unit scales: for mapping a network's shape onto a device."""
        raise NotImplementedError

    def codes(self, acc):
        """Activation codes of the accumulators ``acc`` (numpy or torch float64 holding integers)."""
        raise NotImplementedError

    def firing_membrane(self, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """The charge an integrate-and-fire neuron holds after integrating ``acc``, and its threshold, such
        that it fires ``#{k >= 1: membrane > k * theta}`` spikes (at most one a step, reset by subtraction):
        :meth:`codes` once clipped to ``levels``."""
        raise NotImplementedError

    def rate_coding(self) -> tuple[np.ndarray, float]:
        """Rate-coded chips: the per-step current's gain on ``W @ input + b`` and the neuron's threshold."""
        raise NotImplementedError(f"the {self.kind} requantization has no rate-coded form")

    def check(self, layer: int, units: int, chip: ChipTarget) -> None:
        """Raise ``ValueError`` naming ``layer`` where the parameters do not fit its ``units`` or the chip."""
        raise NotImplementedError

    def arrays(self, layer: int) -> dict[str, np.ndarray]:
        """The per-unit arrays as an integer-network file stores them (keys suffixed with the layer index)."""
        raise NotImplementedError

    def akida_variables(self, bias: np.ndarray, zero_point: np.ndarray | int = 0) -> dict[str, np.ndarray]:
        """The Akida layer variables that compute this rule (``bias``: the layer's bias codes; ``zero_point``:
        what AKD1000's input layer adds to the accumulator)."""
        raise NotImplementedError

    def parameter_bits(self, units: int, chip: ChipTarget) -> int:
        """The memory the per-unit parameters take on the chip."""
        raise NotImplementedError

    def to(self, convert: Callable[[np.ndarray], Any]) -> Requantization:
        """A copy whose per-unit arrays went through ``convert`` (e.g. to torch tensors)."""
        raise NotImplementedError


@dataclass
class ScaleShift(Requantization):
    """Akida 2.0 and rate-coded chips: ``clip(floor((min(acc, acc_clip) * multiplier + 2**(shift-1)) / 2**shift),
    0, levels)``: a fixed-point scale of ``scale_bits`` and a shift (rounding half up), one for the layer or (a layer
    with a step per unit) one per unit, as Akida's ``output_shift`` is per channel; ``acc_clip`` clips the
    accumulator of 1/2-bit activations, which Akida computes in 4-bit outputs (``max_value << max_value_shift``)."""

    multiplier: np.ndarray = None  # int64 [out], below 2**scale_bits
    shift: int | np.ndarray = 1  # >= 1: the layer's, or int64 [out]
    acc_clip: np.ndarray | None = None  # int64 [out]

    kind: ClassVar[str] = SCALE_SHIFT
    keys: ClassVar[tuple[str, ...]] = ("m", "c", "h")

    @classmethod
    def from_arrays(cls, arrays, layer: int, shift: int | None, precision: LayerPrecision) -> ScaleShift:
        clip = integer_codes(arrays, f"c{layer}") if f"c{layer}" in arrays else None
        if f"h{layer}" in arrays:  # a shift per unit
            if shift is not None:
                raise ValueError(f"layer {layer} has both a shift ({shift}) and per-unit shifts (h{layer})")
            shift = integer_codes(arrays, f"h{layer}")
        return cls(precision.levels, integer_codes(arrays, f"m{layer}"), shift, clip)

    @classmethod
    def fit(cls, acc_scale: np.ndarray, activation_step: float | np.ndarray, precision: LayerPrecision,
            chip: ChipTarget) -> ScaleShift:
        """The nearest fixed point to ``acc_scale / activation_step`` (a unit's accumulator over a code's worth)."""
        multiplier, shift = requantization(acc_scale, activation_step, chip.scale_bits)
        clip = None
        if precision.activation_bits < (chip.min_output_bits or 0):  # a wider output, clipped on the accumulator
            clip = accumulator_clip(multiplier, shift, precision.levels)
        return cls(precision.levels, multiplier, shift, clip)

    @classmethod
    def placeholder(cls, units: int, precision: LayerPrecision, chip: ChipTarget) -> ScaleShift:
        multiplier, shift = np.ones(units, np.int64), 8
        clip = None
        if precision.activation_bits < (chip.min_output_bits or 0):
            clip = accumulator_clip(multiplier, shift, precision.levels)
        return cls(precision.levels, multiplier, shift, clip)

    def codes(self, acc):
        """(int32 and float32 accumulators, the QAT forward's: float32 codes, where float32 gives the same.)"""
        if isinstance(acc, np.ndarray) and acc.dtype in FLOAT32_ACCUMULATORS:
            factors = self._float32_factors
            if factors is not None:
                return scale_shift_codes32(acc, *factors, self.levels)
        return scale_shift_codes(acc, self.multiplier, self.shift, self.levels, self.acc_clip)

    @cached_attribute
    def _float32_factors(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The float32 factors of :func:`~rivc.chip.scale_shift_codes32`, where they compute these codes (every
        gradient step fits new rules: made on first read)."""
        numpy = isinstance(self.multiplier, np.ndarray)  # (torch tensors: the torch forward's copy)
        return scale_shift_float32(self.multiplier, self.shift, self.levels, self.acc_clip) if numpy else None

    def firing_membrane(self, acc: np.ndarray) -> tuple[np.ndarray, float]:
        """``membrane = min(acc, acc_clip) * multiplier + 2**(shift-1) + 1``, ``theta = 2**shift`` (the ``+ 1`` and
        the strict threshold round half up on integers; per unit where the shifts are)."""
        if self.acc_clip is not None:
            acc = np.minimum(acc, self.acc_clip)
        theta = np.exp2(self.shift.astype(np.float64)) if self.per_unit_shift else float(2**self.shift)
        return acc * self.multiplier + (theta / 2 + 1.0), theta  # int64 * float64: float64, exact below 2**53

    def rate_coding(self) -> tuple[np.ndarray, float]:
        """Rate-coded chips: the per-step current's gain on ``W @ input + b`` and the threshold ``L * 2**shift``,
        so that a constant current fires the code in ``T = L`` steps. Per-unit shifts: one threshold at the largest
        shift ``S``, each unit's gain ``multiplier * 2**(S - shift)`` (exact: powers of two)."""
        if not self.per_unit_shift:
            return self.multiplier.astype(np.float64), float(self.levels * 2**self.shift)
        top = int(self.shift.max(initial=1))
        return self.multiplier * np.exp2((top - self.shift).astype(np.float64)), float(self.levels * 2**top)

    @property
    def per_unit_shift(self) -> bool:
        return isinstance(self.shift, np.ndarray) and self.shift.ndim == 1

    def check(self, layer: int, units: int, chip: ChipTarget) -> None:
        shape = (units,)
        if self.per_unit_shift:
            shift_ok = self.shift.shape == shape and self.shift.dtype.kind == "i" and self.shift.min(initial=1) >= 1
        else:
            shift_ok = (not isinstance(self.shift, bool) and isinstance(self.shift, (int, np.integer))
                        and self.shift >= 1)
        if self.multiplier is None or np.shape(self.multiplier) != shape or not shift_ok:
            raise ValueError(f"layer {layer}: multiplier must have shape {shape} and shift >= 1 (one, or one per unit)")
        if np.max(self.shift) > MAX_SHIFT:
            raise ValueError(f"layer {layer}: output shifts must be at most {MAX_SHIFT}")
        if self.multiplier.min(initial=0) < 0 or self.multiplier.max(initial=0) >= 2**chip.scale_bits:
            raise ValueError(f"layer {layer}: scales must lie in [0, 2**{chip.scale_bits}) on target {chip.name!r}")
        if self.acc_clip is not None and (np.shape(self.acc_clip) != shape or chip.min_output_bits is None):
            raise ValueError(f"layer {layer}: an accumulator clip of shape {shape} exists only on target 'akida'")

    def arrays(self, layer: int) -> dict[str, np.ndarray]:
        arrays = {f"m{layer}": self.multiplier}
        if self.acc_clip is not None:
            arrays[f"c{layer}"] = self.acc_clip
        if self.per_unit_shift:
            arrays[f"h{layer}"] = self.shift
        return arrays

    def akida_variables(self, bias: np.ndarray, zero_point: np.ndarray | int = 0) -> dict[str, np.ndarray]:  # noqa: ARG002
        """``output_scales`` (uint8) and a negative ``output_shift`` (a right shift rounding half up); the clip as
        ``max_value << max_value_shift``."""
        variables = {"output_scales": self.multiplier.astype(np.uint8),
                     "output_shift": np.broadcast_to(-np.asarray(self.shift), self.multiplier.shape).astype(np.int8)}
        if self.acc_clip is not None:
            value, value_shift = unsigned_mantissa(self.acc_clip)
            variables.update(max_value=value.astype(np.uint8), max_value_shift=value_shift.astype(np.uint8))
        return variables

    def parameter_bits(self, units: int, chip: ChipTarget) -> int:
        return units * chip.scale_bits

    def to(self, convert: Callable[[np.ndarray], Any]) -> ScaleShift:
        return replace(self, multiplier=convert(self.multiplier),
                       shift=convert(self.shift) if self.per_unit_shift else self.shift,
                       acc_clip=None if self.acc_clip is None else convert(self.acc_clip))


@dataclass
class ThresholdStep(Requantization):
    """AKD1000 / AKD1500 (Akida 1.0): ``clip(ceil(16 * (acc - offset) / step16), 0, levels)``, the step in
    sixteenths of an accumulator unit as the engine floors ``act_step``; programmed as ``threshold`` and
    ``act_step``."""

    offset: np.ndarray = None  # int64 [out]
    step: np.ndarray = None  # int64 [out], sixteenths of an accumulator unit
    activation_bits: int = 4  # the chip programs the step for this width

    kind: ClassVar[str] = THRESHOLD_STEP
    keys: ClassVar[tuple[str, ...]] = ("t", "o")

    @classmethod
    def from_arrays(cls, arrays, layer: int, shift: int | None, precision: LayerPrecision) -> ThresholdStep:  # noqa: ARG003
        return cls(precision.levels, integer_codes(arrays, f"o{layer}"), integer_codes(arrays, f"t{layer}"),
                   precision.activation_bits)

    @classmethod
    def fit(cls, acc_scale: np.ndarray, activation_step: float | np.ndarray, precision: LayerPrecision,
            chip: ChipTarget) -> ThresholdStep:
        offset, step = threshold_step(acc_scale, activation_step, precision.activation_bits, chip.step_limit)
        return cls(precision.levels, offset, step, precision.activation_bits)

    @classmethod
    def placeholder(cls, units: int, precision: LayerPrecision, chip: ChipTarget) -> ThresholdStep:  # noqa: ARG003
        return cls(precision.levels, np.zeros(units, np.int64), np.full(units, 16, np.int64), precision.activation_bits)

    def codes(self, acc):
        return threshold_step_codes(acc, self.offset, self.step, self.levels)

    def firing_membrane(self, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``membrane = 16 * (acc - offset) + step16``, ``theta = step16`` per unit (the ``k``-th spike needs
        ``16 * (acc - offset) > (k - 1) * step16``: ``ceil``, as the chip divides)."""
        step = self.step.astype(np.float64)
        return 16.0 * (acc - self.offset) + step, step

    def check(self, layer: int, units: int, chip: ChipTarget) -> None:  # noqa: ARG002
        shape = (units,)
        if self.step is None or self.offset is None or np.shape(self.step) != shape or np.shape(self.offset) != shape:
            raise ValueError(f"layer {layer}: offset and step must have shape {shape}")
        if self.step.min(initial=1) < 1:
            raise ValueError(f"layer {layer}: steps must be positive")

    def arrays(self, layer: int) -> dict[str, np.ndarray]:
        return {f"o{layer}": self.offset, f"t{layer}": self.step}

    def akida_variables(self, bias: np.ndarray, zero_point: np.ndarray | int = 0) -> dict[str, np.ndarray]:
        """``ceil((W @ pixels - threshold) / act_step) = ceil((acc - offset) / step)``."""
        return {"threshold": (self.offset - bias + zero_point).astype(np.int32),
                "act_step": act_step(self.step, self.activation_bits)}

    def parameter_bits(self, units: int, chip: ChipTarget) -> int:  # noqa: ARG002
        return units * 2 * UNKNOWN_WIDTH_BITS  # offset and step

    def to(self, convert: Callable[[np.ndarray], Any]) -> ThresholdStep:
        return replace(self, offset=convert(self.offset), step=convert(self.step))


REQUANTIZATIONS: dict[str, type[Requantization]] = {cls.kind: cls for cls in (ScaleShift, ThresholdStep)}


def fit_requantization(acc_scale: np.ndarray, activation_step: float | np.ndarray, precision: LayerPrecision,
                       chip: ChipTarget) -> Requantization:
    """The chip's requantization of a hidden layer whose accumulator unit is worth ``acc_scale`` (per unit) and
    whose activation code is worth ``activation_step``."""
    return REQUANTIZATIONS[chip.requantization].fit(acc_scale, activation_step, precision, chip)


def from_arrays(arrays, layer: int, shift: int | None, precision: LayerPrecision) -> Requantization | None:
    """The requantization that :meth:`Requantization.arrays` stored for ``layer``; ``None``: the output layer."""
    for cls in REQUANTIZATIONS.values():
        if f"{cls.keys[0]}{layer}" in arrays:
            return cls.from_arrays(arrays, layer, shift, precision)
    return None


def integer_codes(arrays, key: str) -> np.ndarray:
    """``arrays[key]`` of a file as int64, refused (not truncated) where it holds anything but whole numbers."""
    values = np.asarray(arrays[key])
    if values.dtype.kind not in "iuf":
        raise ValueError(f"array {key!r} holds {values.dtype} values, not integer codes")
    if values.dtype.kind == "f" and not (np.all(np.isfinite(values)) and np.all(values == np.rint(values))):
        raise ValueError(f"array {key!r} holds values that are not whole numbers (codes are integers)")
    if values.dtype.kind in "uf" and values.size and np.max(np.abs(values)) >= 2.0**63:
        raise ValueError(f"array {key!r} holds codes beyond int64")
    return values.astype(np.int64)
