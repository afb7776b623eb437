"""The integer network: the backend-neutral description a quantized Q-network exports.

numpy only (no torch): a deployed policy loads and runs it on an edge board without torch.

Arithmetic (all integers; ``L = 2**activation_bits - 1``):

* input codes   ``x = floor((clip(obs, low, high) - low) * inv_step + 1/2) - 2**(input_bits - 1)``, signed
  (``-128..127`` for 8 bits, the mid-range observation near 0), where
  ``inv_step = (2**input_bits - 1) / (high - low)`` (float64); the float network sees ``x / 2**(input_bits - 1)``;
* every layer   ``acc = W @ codes + b`` with signed weight codes ``W`` and bias codes ``b``;
* hidden layers ``codes = `` the chip target's activation of ``acc`` (:mod:`rivc.chip`): a fixed-point
  scale and shift (Akida 2.0, rate-coded chips) or a threshold and step (AKD1000), clipped to ``[0, L]``;
* output layer  ``q = scale * acc`` (float): the Q-values.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rivc.chip import SCALE_SHIFT, ChipTarget, get_target, quantize_bias, scale_shift_codes, threshold_step_codes
from rivc.config import QuantConfig

FORMAT_NAME = "rivc.integer_network"
FORMAT_VERSION = 2  # 2: chip targets; version 1 files (16-bit scales) load as the "rate" target
UNBOUNDED = 1e6  # Box bounds beyond this magnitude count as "no bound" (e.g. CartPole's float32 max)


class CorruptFileError(ValueError):
    """A file is not a (valid) rivc artifact."""


@dataclass
class InputQuantizer:
    """Maps observations to signed ``bits``-bit codes over a fixed range ``[low, high]``."""

    low: np.ndarray
    high: np.ndarray
    bits: int

    def __post_init__(self) -> None:
        self.low = np.asarray(self.low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(self.high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape:
            raise ValueError(f"input range shapes differ: low {self.low.shape}, high {self.high.shape}")
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError("input range must be finite; calibrate unbounded dimensions first")
        if np.any(self.high < self.low):
            bad = np.flatnonzero(self.high < self.low).tolist()
            raise ValueError(f"input range has high < low in dimensions {bad}")

    @property
    def levels(self) -> int:
        return 2**self.bits - 1

    @property
    def zero_point(self) -> int:
        """Subtracted from the unsigned code: centres the codes (and the largest code magnitude)."""
        return 2 ** (self.bits - 1)

    @functools.cached_property
    def inv_step(self) -> np.ndarray:
        """Codes per observation unit; 0 where the range is empty (constant input). Computed once:
        the range of a quantizer is fixed (calibration makes a new one)."""
        width = self.high - self.low
        with np.errstate(divide="ignore"):
            return np.where(width > 0, self.levels / np.where(width > 0, width, 1.0), 0.0)

    def codes(self, obs: np.ndarray) -> np.ndarray:
        """Signed integer codes (as float64 holding exact integers) for a batch ``[B, obs_dim]``."""
        obs = check_observations(obs, self.low.shape[0])
        clipped = np.clip(obs, self.low, self.high)
        return np.floor((clipped - self.low) * self.inv_step + 0.5) - self.zero_point


def check_observations(obs, obs_dim: int) -> np.ndarray:
    """Validate a batch of flat observations and return it as float64 ``[B, obs_dim]``."""
    arr = np.asarray(obs, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != obs_dim:
        raise ValueError(
            f"observation shape {tuple(np.shape(obs))} does not match the network: expected "
            f"({obs_dim},) or (batch, {obs_dim})"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            "observation contains NaN or inf; check the environment or wrap it to sanitise "
            "observations before they reach the policy"
        )
    return arr


@dataclass
class IntegerLayer:
    """One dense layer in integer form (see the module docstring for the arithmetic).

    A hidden layer carries its target's requantization: ``multiplier``, ``shift`` (and, for
    1/2-bit Akida activations, ``acc_clip``), or ``offset`` and ``step`` (AKD1000).
    """

    weights: np.ndarray  # int64 [out, in], signed codes
    bias: np.ndarray  # int64 [out], accumulator units
    scale: np.ndarray  # float64 [out], real value of one accumulator unit
    multiplier: np.ndarray | None = None  # int64 [out]
    shift: int | None = None  # >= 1
    acc_clip: np.ndarray | None = None  # int64 [out], accumulator ceiling before scaling
    offset: np.ndarray | None = None  # int64 [out]
    step: np.ndarray | None = None  # int64 [out], in sixteenths of an accumulator unit

    @property
    def is_output(self) -> bool:
        return self.multiplier is None and self.step is None

    def activation(self, acc, levels: int):
        """Activation codes of the accumulator ``acc`` (numpy or torch, float64 integers)."""
        if self.step is not None:
            return threshold_step_codes(acc, self.offset, self.step, levels)
        return scale_shift_codes(acc, self.multiplier, self.shift, levels, self.acc_clip)


@dataclass
class IntegerNetwork:
    """An integer MLP Q-network: what every neurochip backend converts into a spiking policy."""

    config: QuantConfig
    input: InputQuantizer
    layers: list[IntegerLayer]
    target: str = "rate"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def chip(self) -> ChipTarget:
        return get_target(self.target)

    # -- shape -----------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return int(self.layers[0].weights.shape[1])

    @property
    def n_actions(self) -> int:
        return int(self.layers[-1].weights.shape[0])

    @property
    def hidden_layers(self) -> list[IntegerLayer]:
        return self.layers[:-1]

    def validate(self) -> None:
        """Check shapes, code ranges and that exactly the last layer is the output layer."""
        if not self.layers:
            raise ValueError("an integer network needs at least one layer")
        chip = self.chip
        chip.check(self.config, [self.obs_dim, *(layer.weights.shape[0] for layer in self.layers)])
        fan_in = self.input.low.shape[0]
        for i, layer in enumerate(self.layers):
            w = layer.weights
            if w.ndim != 2 or w.shape[1] != fan_in:
                raise ValueError(f"layer {i}: weights shape {w.shape} does not take {fan_in} inputs")
            bits = chip.layer_weight_bits(i, self.config.weight_bits)
            qw = QuantConfig(weight_bits=bits).weight_levels
            if np.any(np.abs(w) > qw):
                raise ValueError(f"layer {i}: weight codes exceed {bits}-bit range +-{qw}")
            if layer.bias.shape != (w.shape[0],) or layer.scale.shape != (w.shape[0],):
                raise ValueError(f"layer {i}: bias/scale must have shape ({w.shape[0]},)")
            if np.any(quantize_bias(layer.bias, chip.bias_bits, chip.bias_limit) != layer.bias):
                raise ValueError(f"layer {i}: a bias is not in target {chip.name!r}'s bias format (rivc.chip.quantize_bias)")
            last = i == len(self.layers) - 1
            if last != layer.is_output:
                raise ValueError(f"layer {i}: only the last layer may (and must) lack a requantization")
            if not last:
                self._validate_requantization(i, layer, chip)
            fan_in = w.shape[0]

    @staticmethod
    def _validate_requantization(i: int, layer: IntegerLayer, chip: ChipTarget) -> None:
        units = (layer.weights.shape[0],)
        if chip.requantization == SCALE_SHIFT:
            if layer.multiplier is None or layer.multiplier.shape != units or layer.shift is None or layer.shift < 1:
                raise ValueError(f"layer {i}: multiplier must have shape {units} and shift >= 1")
            if layer.multiplier.min(initial=0) < 0 or layer.multiplier.max(initial=0) >= 2**chip.scale_bits:
                raise ValueError(f"layer {i}: scales must lie in [0, 2**{chip.scale_bits}) on target {chip.name!r}")
            if layer.acc_clip is not None and (layer.acc_clip.shape != units or chip.min_output_bits is None):
                raise ValueError(f"layer {i}: an accumulator clip of shape {units} exists only on target 'akida'")
        elif layer.step is None or layer.offset is None or layer.step.shape != units or layer.offset.shape != units:
            raise ValueError(f"layer {i}: offset and step must have shape {units}")
        elif layer.step.min(initial=1) < 1:
            raise ValueError(f"layer {i}: steps must be positive")

    # -- integer reference -------------------------------------------------------------------
    def forward_codes(self, obs: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Hidden activation codes of every layer and the output accumulator, in int64."""
        codes = self.input.codes(obs).astype(np.int64)
        hidden = []
        levels = self.config.activation_levels
        for layer in self.hidden_layers:
            acc = (codes @ layer.weights.T + layer.bias).astype(np.float64)  # exact integers below 2**53
            codes = layer.activation(acc, levels).astype(np.int64)
            hidden.append(codes)
        out = self.layers[-1]
        return hidden, codes @ out.weights.T + out.bias

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values ``[B, n_actions]`` of the integer reference (float64)."""
        _, acc = self.forward_codes(obs)
        return acc * self.layers[-1].scale

    # -- persistence (numpy .npz + JSON; never pickles) ---------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "target": self.target,
            "n_layers": len(self.layers),
            "shifts": [layer.shift for layer in self.layers],
        }
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                  "input_low": self.input.low, "input_high": self.input.high}
        for i, layer in enumerate(self.layers):
            arrays[f"w{i}"] = layer.weights
            arrays[f"b{i}"] = layer.bias
            arrays[f"s{i}"] = layer.scale
            if layer.multiplier is not None:
                arrays[f"m{i}"] = layer.multiplier
            if layer.acc_clip is not None:
                arrays[f"c{i}"] = layer.acc_clip
            if layer.step is not None:
                arrays[f"o{i}"], arrays[f"t{i}"] = layer.offset, layer.step
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> "IntegerNetwork":
        try:
            meta = json.loads(bytes(np.asarray(arrays["meta"], dtype=np.uint8)).decode())
            if meta.get("format") != FORMAT_NAME:
                raise CorruptFileError(f"format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
            if meta.get("version") not in (1, FORMAT_VERSION):
                raise CorruptFileError(f"format version {meta.get('version')} is not supported (expected {FORMAT_VERSION})")
            config = QuantConfig.from_dict(meta["config"])
            layers = []
            for i in range(int(meta["n_layers"])):
                optional = {name: arrays[f"{key}{i}"].astype(dtype) for name, key, dtype in (
                    ("multiplier", "m", np.int64), ("acc_clip", "c", np.int64), ("offset", "o", np.int64),
                    ("step", "t", np.int64)) if f"{key}{i}" in arrays}
                layers.append(IntegerLayer(
                    weights=arrays[f"w{i}"].astype(np.int64), bias=arrays[f"b{i}"].astype(np.int64),
                    scale=arrays[f"s{i}"].astype(np.float64), shift=meta["shifts"][i], **optional))
            quantizer = InputQuantizer(arrays["input_low"], arrays["input_high"], config.input_bits)
            return cls(config=config, input=quantizer, layers=layers, target=meta.get("target", "rate"))
        except CorruptFileError:
            raise
        except (KeyError, IndexError, ValueError, TypeError, AttributeError, UnicodeDecodeError,
                json.JSONDecodeError) as exc:
            raise CorruptFileError(f"not a valid rivc integer network ({type(exc).__name__}: {exc})") from exc

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` atomically (temp file + rename): a crash never leaves half a file."""
        buffer = io.BytesIO()
        np.savez(buffer, **self.to_arrays())
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IntegerNetwork":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no integer network at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise CorruptFileError(f"{path} is not a readable rivc integer network (.npz): {exc}") from exc
        try:
            return cls.from_arrays(arrays)
        except CorruptFileError as exc:
            raise CorruptFileError(f"{path}: {exc}") from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
