"""The integer network: the backend-neutral description a quantized Q-network exports.

numpy only (no torch): a deployed policy loads and runs it on an edge board without torch.

Arithmetic (all integers; ``L = 2**activation_bits - 1``):

* input codes   ``x = floor((clip(obs, low, high) - low) * inv_step + 1/2) - 2**(input_bits - 1)``, signed
  (``-128..127`` for 8 bits, the mid-range observation near 0), where
  ``inv_step = (2**input_bits - 1) / (high - low)`` (float64); the float network sees ``x / 2**(input_bits - 1)``;
* every layer   ``acc = W @ codes + b`` with signed weight codes ``W`` and bias codes ``b``;
* hidden layers ``codes = clip(round_half_up(multiplier * acc / 2**shift), 0, L)``, the
  fixed-point form of ``relu`` clipped at the layer's clip value and quantized to ``L`` levels;
* output layer  ``q = scale * acc`` (float): the Q-values.

Round-half-up is what BrainChip Akida's output shift computes, and what an integrate-and-fire
neuron realises when its membrane starts one unit above half the threshold and it spikes when
the membrane is strictly above the threshold.
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

from rivc.config import QuantConfig

FORMAT_NAME = "rivc.integer_network"
FORMAT_VERSION = 1
MULTIPLIER_BITS = 16  # precision of the fixed-point requantization multiplier
UNBOUNDED = 1e6  # Box bounds beyond this magnitude count as "no bound" (e.g. CartPole's float32 max)


class CorruptFileError(ValueError):
    """A file is not a (valid) rivc artifact."""


def round_half_up_shift(numerator: np.ndarray, shift: int) -> np.ndarray:
    """``floor(numerator / 2**shift + 1/2)`` for integer arrays, exactly (shift >= 1)."""
    return np.floor_divide(numerator + 2 ** (shift - 1), 2**shift)


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
    """One dense layer in integer form (see the module docstring for the arithmetic)."""

    weights: np.ndarray  # int64 [out, in], signed codes
    bias: np.ndarray  # int64 [out], accumulator units
    scale: np.ndarray  # float64 [out], real value of one accumulator unit
    multiplier: np.ndarray | None = None  # int64 [out]; hidden layers only
    shift: int | None = None  # hidden layers only, >= 1

    @property
    def is_output(self) -> bool:
        return self.multiplier is None


def requantization(acc_scale: np.ndarray, activation_step: float, bits: int = MULTIPLIER_BITS) -> tuple[np.ndarray, int]:
    """Fixed-point ``(multiplier, shift)``, multipliers below ``2**bits``, with
    ``multiplier / 2**shift ~= acc_scale / activation_step``."""
    ratio = np.asarray(acc_scale, dtype=np.float64) / float(activation_step)
    top = float(np.max(ratio)) if ratio.size else 0.0
    shift = bits - 1 - int(np.floor(np.log2(top))) if top > 0 else bits
    shift = int(min(max(shift, 1), 40))
    multiplier = np.round(ratio * 2.0**shift).astype(np.int64)
    if shift > 1 and multiplier.max(initial=0) >= 2**bits:  # rounded up to 2**bits
        shift -= 1
        multiplier = np.round(ratio * 2.0**shift).astype(np.int64)
    return multiplier, shift


def split_bias(bias: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the smallest ``shift >= 0`` and a signed ``bits``-bit mantissa (symmetric range)
    with ``mantissa << shift`` nearest to ``bias`` (half up): exact for biases that are such values."""
    bias = np.asarray(bias, dtype=np.int64)
    top = 2 ** (bits - 1) - 1
    shift = np.zeros_like(bias)
    while np.any(np.abs(bias) > top << shift):
        shift = np.where(np.abs(bias) > top << shift, shift + 1, shift)
    mantissa = np.floor_divide(bias + np.where(shift > 0, 1 << np.maximum(shift - 1, 0), 0), 1 << shift)
    return np.clip(mantissa, -top, top), shift


def quantize_bias(bias: np.ndarray, bits: int | None) -> np.ndarray:
    """Round bias codes to ``mantissa << shift`` with a signed ``bits``-bit mantissa (Akida's
    int8 bias with a bias shift); ``bits=None`` leaves them unrestricted."""
    if bits is None:
        return np.asarray(bias, dtype=np.int64)
    mantissa, shift = split_bias(bias, bits)
    return mantissa << shift


@dataclass
class IntegerNetwork:
    """An integer MLP Q-network: what every neurochip backend converts into a spiking policy."""

    config: QuantConfig
    input: InputQuantizer
    layers: list[IntegerLayer]

    def __post_init__(self) -> None:
        self.validate()

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
        qw = self.config.weight_levels
        fan_in = self.input.low.shape[0]
        for i, layer in enumerate(self.layers):
            w = layer.weights
            if w.ndim != 2 or w.shape[1] != fan_in:
                raise ValueError(f"layer {i}: weights shape {w.shape} does not take {fan_in} inputs")
            if np.any(np.abs(w) > qw):
                raise ValueError(f"layer {i}: weight codes exceed {self.config.weight_bits}-bit range +-{qw}")
            if layer.bias.shape != (w.shape[0],) or layer.scale.shape != (w.shape[0],):
                raise ValueError(f"layer {i}: bias/scale must have shape ({w.shape[0]},)")
            last = i == len(self.layers) - 1
            if last != layer.is_output:
                raise ValueError(f"layer {i}: only the last layer may (and must) lack a requantization")
            if not last and (layer.multiplier.shape != (w.shape[0],) or layer.shift is None or layer.shift < 1):
                raise ValueError(f"layer {i}: multiplier must have shape ({w.shape[0]},) and shift >= 1")
            fan_in = w.shape[0]

    # -- integer reference -------------------------------------------------------------------
    def forward_codes(self, obs: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Hidden activation codes of every layer and the output accumulator, in int64."""
        codes = self.input.codes(obs).astype(np.int64)
        hidden = []
        levels = self.config.activation_levels
        for layer in self.hidden_layers:
            acc = codes @ layer.weights.T + layer.bias
            codes = np.clip(round_half_up_shift(acc * layer.multiplier, layer.shift), 0, levels)
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
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> "IntegerNetwork":
        try:
            meta = json.loads(bytes(np.asarray(arrays["meta"], dtype=np.uint8)).decode())
            if meta.get("format") != FORMAT_NAME:
                raise CorruptFileError(f"format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
            if meta.get("version") != FORMAT_VERSION:
                raise CorruptFileError(f"format version {meta.get('version')} is not supported (expected {FORMAT_VERSION})")
            config = QuantConfig.from_dict(meta["config"])
            layers = []
            for i in range(int(meta["n_layers"])):
                multiplier = arrays[f"m{i}"].astype(np.int64) if f"m{i}" in arrays else None
                layers.append(IntegerLayer(
                    weights=arrays[f"w{i}"].astype(np.int64), bias=arrays[f"b{i}"].astype(np.int64),
                    scale=arrays[f"s{i}"].astype(np.float64), multiplier=multiplier, shift=meta["shifts"][i]))
            quantizer = InputQuantizer(arrays["input_low"], arrays["input_high"], config.input_bits)
            return cls(config=config, input=quantizer, layers=layers)
        except CorruptFileError:
            raise
        except (KeyError, ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
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
