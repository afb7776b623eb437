"""The integer network: the backend-neutral description a quantized Q-network exports.

numpy only (no torch): a deployed policy loads and runs it on an edge board without torch.

Arithmetic (all integers; ``L`` a hidden layer's largest code, ``2**activation_bits - 1`` or, in a signed
register, ``2**(activation_bits - 1) - 1``: :meth:`rivc.chip.ChipTarget.levels`; each layer its own widths,
:meth:`IntegerNetwork.precision`):

* input codes   ``x = floor((clip(obs, low, high) - low) * inv_step + 1/2) - 2**(input_bits - 1)``, signed
  (``-128..127`` for 8 bits, the mid-range observation near 0), where
  ``inv_step = (2**input_bits - 1) / (high - low)`` (float64); the float network sees ``x / 2**(input_bits - 1)``;
  camera frames (:class:`ImageInput`): the uint8 pixels themselves, NHWC, seen as ``x / 256``;
* every layer   ``acc = W @ codes + b`` with signed weight codes ``W`` and bias codes ``b``; a conv layer
  computes ``W * codes + b`` (:mod:`rivc.conv`: 'same' padding, stride, max pooling of ``acc``), and a
  dense layer after it reads the feature map flattened NHWC;
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
from dataclasses import InitVar, dataclass
from pathlib import Path

import numpy as np

from rivc import requant
from rivc.chip import ChipTarget, LayerPrecision, get_target, quantize_bias
from rivc.config import HEADS, QuantConfig
from rivc.conv import ConvGeometry, conv2d, max_pool
from rivc.files import chmod_as_umask
from rivc.requant import Requantization, integer_codes

FORMAT_NAME = "rivc.integer_network"
# 4: the rate target's scales are 8-bit; 3: conv layers and frames; 2: chip targets; 1: no target. A "rate" network
# of format <= 3 (16-bit scales) loads as the legacy "rate16" target (rivc.chip.LEGACY_TARGETS)
FORMAT_VERSION = 4
# 5: a dueling head or per-unit output shifts (h{i}), written only where a file holds one: readers before it refuse
# such a file by its version, and read every other file as before
FEATURES_FORMAT_VERSION = 5
UNBOUNDED = 1e6  # Box bounds beyond this magnitude count as "no bound" (e.g. CartPole's float32 max)


def dueling_q_values(values):
    """A dueling head's Q-values (Wang et al. 2016): ``Q_a = V + (A_a - mean_b A_b)`` from the rows ``[V, A_1..A_n]``
    (``[B, n + 1]``, numpy or torch float64), by the same operations in the same order on both (the mean a running
    sum): the QAT forward and every consumer get the same bits. The actions' ranking is the advantages' alone, so a
    chip's 4-bit head rounds each advantage row on its own scale, not on the value's (docs/DESIGN.md)."""
    advantages = values[:, 1:]
    total = advantages[:, :1]
    for action in range(1, advantages.shape[1]):
        total = total + advantages[:, action:action + 1]
    return values[:, :1] + (advantages - total / advantages.shape[1])


def dueling_gradient(grad):
    """The gradient on a dueling head's rows ``[V, A_1..A_n]`` from the gradient on its Q-values (numpy): ``dV =
    sum_a g_a``, ``dA_b = g_b - mean_a g_a``."""
    return np.concatenate([grad.sum(axis=1, keepdims=True), grad - grad.mean(axis=1, keepdims=True)], axis=1)


def bounded_dimensions(low, high) -> np.ndarray:
    """Which dimensions of a Box's ``low`` and ``high`` are bounded: both finite and within ``UNBOUNDED``."""
    return np.isfinite(low) & np.isfinite(high) & (np.abs(low) < UNBOUNDED) & (np.abs(high) < UNBOUNDED)


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

    @property
    def max_code(self) -> int:
        """Largest input code magnitude."""
        return self.zero_point

    @property
    def shape(self) -> tuple[int, ...]:
        """The codes' shape per observation (as the first layer reads them)."""
        return (int(self.low.shape[0]),)

    obs_shape = shape  # the observation's shape

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
        clipped = np.minimum(np.maximum(obs, self.low), self.high)  # np.clip, at a fraction of its cost
        return np.floor((clipped - self.low) * self.inv_step + 0.5) - self.zero_point


PIXELS_ERROR = "image observations must be uint8 pixels 0..255: pass the environment's frames unnormalised"


def are_pixels(values) -> bool:
    """Whether every value (numpy array or torch tensor) is an integer in 0..255."""
    return bool(((values >= 0) & (values <= 255) & (values == values.round())).all())


@dataclass
class ImageInput:
    """Camera frames as a chip's input layer reads them: the uint8 pixels are the codes (0..255, zero
    point 0, so a padded border is a black pixel), NHWC. ``channels_first``: the observations come
    CHW (as some wrappers give them) and are transposed."""

    shape: tuple[int, int, int]  # (H, W, C), as the network reads the frame
    channels_first: bool = False
    bits: int = 8
    zero_point = 0
    max_code = 255
    step = 1.0 / 256  # the float network sees pixels / 256

    def __post_init__(self) -> None:
        self.shape = tuple(int(v) for v in self.shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"an image input needs a shape (H, W, C), got {self.shape}")
        if self.bits != 8:
            raise ValueError(f"image inputs are 8-bit pixels, got input_bits={self.bits}")

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.shape
        return (channels, height, width) if self.channels_first else self.shape

    def codes(self, obs: np.ndarray) -> np.ndarray:
        """Pixel codes ``[B, H, W, C]`` (float64) for a frame or a batch of frames."""
        arr = np.asarray(obs)
        arr = arr.reshape(batch_shape(arr.shape, self.obs_shape))
        if arr.dtype != np.uint8 and not (np.issubdtype(arr.dtype, np.number) and are_pixels(arr)):
            raise ValueError(f"{PIXELS_ERROR} (got {arr.dtype} values that are not all integers in 0..255)")
        codes = arr.astype(np.float64)
        return codes.transpose(0, 2, 3, 1) if self.channels_first else codes


NON_FINITE_OBSERVATION = ("observation contains NaN or inf; check the environment or wrap it to sanitise "
                          "observations before they reach the policy")


def batch_shape(shape: tuple[int, ...], obs_shape: tuple[int, ...], batched: bool = False) -> tuple[int, ...]:
    """The one observation shape rule: ``shape`` is one observation (unless ``batched``) or a batch of them;
    returns the batch's shape, or raises naming the shape expected."""
    shape, obs_shape = tuple(shape), tuple(obs_shape)
    if shape == obs_shape and not batched:
        return (1, *shape)
    if len(shape) != len(obs_shape) + 1 or shape[1:] != obs_shape:
        batch = f"(batch, {', '.join(map(str, obs_shape))})"
        raise ValueError(f"observation shape {shape} does not match the network: expected "
                         f"{batch if batched else f'{obs_shape} or {batch}'}")
    return shape


def check_observations(obs, obs_dim: int) -> np.ndarray:
    """Validate a batch of flat observations and return it as float64 ``[B, obs_dim]``."""
    arr = np.asarray(obs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != obs_dim:  # (a batch passes without the call)
        arr = arr.reshape(batch_shape(arr.shape, (obs_dim,)))
    if not np.isfinite(arr).all():
        raise ValueError(NON_FINITE_OBSERVATION)
    return arr


@dataclass
class IntegerLayer:
    """One dense layer in integer form (see the module docstring for the arithmetic).

    A hidden layer carries its target's requantization (:mod:`rivc.requant`: a fixed-point scale and
    shift, or AKD1000's threshold and step); the output layer none.
    """

    weights: np.ndarray  # int64 [out, in], signed codes
    bias: np.ndarray  # int64 [out], accumulator units
    scale: np.ndarray  # float64 [out], real value of one accumulator unit
    requant: Requantization | None = None  # hidden layers: accumulator -> activation code
    conv: ConvGeometry | None = None  # a conv layer: weights (F, k, k, C), input and output NHWC

    @property
    def is_output(self) -> bool:
        return self.requant is None

    @property
    def units(self) -> int:
        """Output units (dense) or filters (conv)."""
        return int(self.weights.shape[0])

    @property
    def abs_weight_sum(self) -> np.ndarray:
        """Per unit, the sum of |weight codes| over its inputs."""
        return np.abs(self.weights).reshape(self.units, -1).sum(axis=1)

    def accumulator_bound(self, input_max: float) -> float:
        """The largest |accumulator| (and |partial sum|) for inputs of magnitude at most ``input_max``."""
        return float(self.abs_weight_sum.max(initial=0)) * input_max + float(np.abs(self.bias).max(initial=0))

    def out_shape(self) -> tuple[int, ...]:
        return self.conv.out_shape(self.units) if self.conv is not None else (self.units,)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per observation (a conv layer's at every output position, before pooling)."""
        return int(np.prod(self.conv.conv_shape)) * self.weights.size if self.conv is not None else self.weights.size

    def synaptic_input(self, codes: np.ndarray) -> np.ndarray:
        """``W @ codes`` (float64, exact integers), without bias or pooling, for input codes ``[B, in]``
        (a feature map is flattened NHWC) or ``[B, H, W, C]`` (conv)."""
        if self.conv is not None:
            return conv2d(codes, self.weights, self.conv)
        return codes.reshape(codes.shape[0], -1) @ self.float_weights_t

    @property
    def float_weights_t(self) -> np.ndarray:
        """``weights.T`` as float64 ``[in, out]`` (exact), made once per weights array (exports are read-only)."""
        cached = self.__dict__.get("_float_weights_t")
        if cached is None or cached[0] is not self.weights or self.weights.flags.writeable:
            cached = (self.weights, np.ascontiguousarray(self.weights.reshape(self.units, -1).T, dtype=np.float64))
            self.__dict__["_float_weights_t"] = cached
        return cached[1]

    def pool(self, acc: np.ndarray) -> np.ndarray:
        """Max pooling of the accumulators, where the layer pools (before the activation, as on the chip)."""
        return max_pool(acc, self.conv) if self.conv is not None and self.conv.pool else acc

    def accumulate(self, codes: np.ndarray) -> np.ndarray:
        """Integer accumulators (float64): ``pool(W @ codes + b)``."""
        return self.pool(self.synaptic_input(codes) + self.bias)

    def activation(self, acc):
        """Activation codes of the accumulator ``acc`` (numpy or torch, float64 integers)."""
        return self.requant.codes(acc)


@dataclass
class IntegerNetwork:
    """An integer Q-network (MLP, or conv layers then dense layers): what every neurochip backend
    converts into a spiking policy."""

    config: QuantConfig
    input: InputQuantizer | ImageInput
    layers: list[IntegerLayer]
    target: str = "rate"
    head: str = "q"  # what the last layer's rows are: "q" (a Q-value each) or "dueling" (V, then each action's A)
    check: InitVar[bool] = True  # False: skip validate() (an exporter's own output, converted many times)

    def __post_init__(self, check: bool) -> None:
        if check:
            self.validate()

    @property
    def chip(self) -> ChipTarget:
        return get_target(self.target)

    # -- shape -----------------------------------------------------------------------------
    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.input.obs_shape

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.obs_shape))

    @property
    def is_image(self) -> bool:
        return isinstance(self.input, ImageInput)

    @property
    def conv_layers(self) -> list[IntegerLayer]:
        return [layer for layer in self.layers if layer.conv is not None]

    @property
    def n_actions(self) -> int:
        return int(self.layers[-1].weights.shape[0]) - (self.head == "dueling")

    @property
    def _needs_features_version(self) -> bool:
        """Whether its file needs format version 5: a dueling head or per-unit output shifts."""
        return self.head != "q" or any(getattr(layer.requant, "per_unit_shift", False) for layer in self.layers)

    def head_values(self, values):
        """Q-values ``[B, n_actions]`` from the last layer's values ``acc * scale`` (numpy or torch float64):
        themselves, or for a dueling head :func:`dueling_q_values`."""
        return dueling_q_values(values) if self.head == "dueling" else values

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the network per observation (what a float network computes)."""
        return sum(layer.macs for layer in self.layers)

    @property
    def precision(self) -> tuple[LayerPrecision, ...]:
        """Each layer's widths on the target (weight and activation bits, largest activation code)."""
        return self.chip.precision(self.config, len(self.layers), self.is_image)

    def levels(self, layer: int) -> int:
        """Largest activation code ``L`` of hidden layer ``layer``."""
        return self.precision[layer].levels

    def input_max(self, layer: int) -> int:
        """Largest |code| layer ``layer`` reads: the input's for the first, the previous layer's ``L`` after it."""
        return self.input.max_code if layer == 0 else self.levels(layer - 1)

    @property
    def hidden_layers(self) -> list[IntegerLayer]:
        return self.layers[:-1]

    @property
    def sizes(self) -> list[int]:
        """The dense part: ``[inputs of the first dense layer, hidden..., n_actions]``."""
        dense = [layer for layer in self.layers if layer.conv is None]
        return [int(dense[0].weights.shape[1]), *(layer.units for layer in dense)]

    def validate(self) -> None:
        """Check shapes, code ranges and that exactly the last layer is the output layer."""
        if not self.layers:
            raise ValueError("an integer network needs at least one layer")
        if self.head not in HEADS:
            raise ValueError(f"the head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.head == "dueling" and self.layers[-1].units < 3:
            raise ValueError("a dueling head needs a value row and at least two actions' advantage rows")
        chip = self.chip
        convs = [(layer.conv, layer.units) for layer in self.conv_layers]
        if self.is_image != bool(convs) or any(layer.conv is None for layer in self.layers[: len(convs)]):
            raise ValueError("an image input needs conv layers, which come first, and a vector input dense layers only")
        chip.check(self.config, self.sizes, convs)
        precision = self.precision
        shape = self.input.shape
        for i, layer in enumerate(self.layers):
            w = layer.weights
            if layer.conv is not None:
                k = layer.conv.kernel
                if layer.conv.in_shape != shape or w.shape[1:] != (k, k, shape[2]):
                    raise ValueError(f"layer {i}: conv weights {w.shape} over {layer.conv.in_shape} do not take the "
                                     f"{shape} input")
            elif w.ndim != 2 or w.shape[1] != int(np.prod(shape)):
                raise ValueError(f"layer {i}: weights shape {w.shape} does not take {int(np.prod(shape))} inputs")
            qw = precision[i].weight_levels
            if np.any(w > qw) or np.any(w < -qw):  # (not np.abs: it overflows on the smallest int64)
                raise ValueError(f"layer {i}: weight codes exceed {precision[i].weight_bits}-bit range +-{qw}")
            if layer.bias.shape != (w.shape[0],) or layer.scale.shape != (w.shape[0],):
                raise ValueError(f"layer {i}: bias/scale must have shape ({w.shape[0]},)")
            if not np.all(np.isfinite(layer.scale)) or np.any(layer.scale <= 0):
                raise ValueError(f"layer {i}: the accumulator scales must be finite and > 0 (a NaN or inf scale "
                                 "would pick one action forever)")
            if np.any(quantize_bias(layer.bias, chip.bias_bits, chip.bias_limit) != layer.bias):
                raise ValueError(f"layer {i}: a bias is not in target {chip.name!r}'s bias format (rivc.chip.quantize_bias)")
            last = i == len(self.layers) - 1
            if last != layer.is_output:
                raise ValueError(f"layer {i}: only the last layer may (and must) lack a requantization")
            if not last:
                if layer.requant.kind != chip.requantization:
                    raise ValueError(f"layer {i}: a {layer.requant.kind} requantization on target {chip.name!r}, "
                                     f"which computes {chip.requantization}")
                if layer.requant.levels != precision[i].levels:
                    raise ValueError(f"layer {i}: codes up to {layer.requant.levels}, but its {precision[i].activation_bits}"
                                     f"-bit activations on target {chip.name!r} reach {precision[i].levels}")
                layer.requant.check(i, layer.units, chip)
            shape = layer.out_shape()

    # -- integer reference -------------------------------------------------------------------
    def input_codes(self, obs: np.ndarray) -> np.ndarray:
        """The input layer's codes: ``[B, obs_dim]``, or ``[B, H, W, C]`` for frames (float64 integers)."""
        return self.input.codes(obs)

    def forward_codes(self, obs: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Hidden activation codes of every layer (``[B, units]`` or ``[B, H, W, F]``) and the output
        accumulator, in int64."""
        codes = self.input_codes(obs)
        hidden = []
        for layer in self.hidden_layers:
            codes = layer.activation(layer.accumulate(codes))  # exact integers below 2**53
            hidden.append(codes.astype(np.int64))
        return hidden, self.layers[-1].accumulate(codes).astype(np.int64)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values ``[B, n_actions]`` of the integer reference (float64)."""
        _, acc = self.forward_codes(obs)
        return self.head_values(acc * self.layers[-1].scale)

    # -- persistence (numpy .npz + JSON; never pickles) ---------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        meta = {
            "format": FORMAT_NAME,
            "version": FEATURES_FORMAT_VERSION if self._needs_features_version else FORMAT_VERSION,
            "config": self.config.to_dict(),
            "target": self.target,
            "n_layers": len(self.layers),
            # the layer's shift (a shift per unit: None here, the array h{i})
            "shifts": [None if getattr(layer.requant, "per_unit_shift", True) else layer.requant.shift
                       for layer in self.layers],
            "convs": [None if layer.conv is None else layer.conv.to_dict() for layer in self.layers],
        }
        if self.is_image:
            meta["image_input"] = {"shape": list(self.input.shape), "channels_first": self.input.channels_first}
        if self.head != "q":  # left out for a Q head: older versions read the file as before
            meta["head"] = self.head
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        if not self.is_image:
            arrays.update(input_low=self.input.low, input_high=self.input.high)
        for i, layer in enumerate(self.layers):
            arrays[f"w{i}"] = layer.weights
            arrays[f"b{i}"] = layer.bias
            arrays[f"s{i}"] = layer.scale
            if layer.requant is not None:
                arrays.update(layer.requant.arrays(i))
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> "IntegerNetwork":
        try:
            meta = json.loads(bytes(np.asarray(arrays["meta"], dtype=np.uint8)).decode())
            if meta.get("format") != FORMAT_NAME:
                raise CorruptFileError(f"format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
            if meta.get("version") not in (1, 2, 3, FORMAT_VERSION, FEATURES_FORMAT_VERSION):
                raise CorruptFileError(f"format version {meta.get('version')} is not supported (expected {FORMAT_VERSION} "
                                       f"or {FEATURES_FORMAT_VERSION})")
            config = QuantConfig.from_dict(meta["config"])
            target = meta.get("target", "rate")
            if target == "rate" and meta["version"] < 4:
                target = "rate16"
            n_layers = int(meta["n_layers"])
            precision = get_target(target).precision(config, n_layers, "image_input" in meta)
            layers = []
            convs = meta.get("convs") or [None] * n_layers
            for i in range(n_layers):
                layers.append(IntegerLayer(
                    weights=integer_codes(arrays, f"w{i}"), bias=integer_codes(arrays, f"b{i}"),
                    scale=arrays[f"s{i}"].astype(np.float64),
                    requant=requant.from_arrays(arrays, i, meta["shifts"][i], precision[i]),
                    conv=None if convs[i] is None else ConvGeometry.from_dict(convs[i])))
                if f"h{i}" in arrays and not getattr(layers[-1].requant, "per_unit_shift", False):
                    raise CorruptFileError(f"layer {i} holds per-unit shifts (h{i}) that its requantization does not take")
            if "image_input" in meta:
                image = meta["image_input"]
                quantizer = ImageInput(tuple(image["shape"]), bool(image["channels_first"]), config.input_bits)
            else:
                quantizer = InputQuantizer(arrays["input_low"], arrays["input_high"], config.input_bits)
            network = cls(config=config, input=quantizer, layers=layers, target=target, head=meta.get("head", "q"))
            if network._needs_features_version != (meta["version"] == FEATURES_FORMAT_VERSION):
                raise CorruptFileError(f"format version {meta['version']} does not match what the file holds (version "
                                       f"{FEATURES_FORMAT_VERSION} exactly where it has a dueling head or per-unit shifts)")
            return network
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
        chmod_as_umask(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # (a failed write names no file: name it)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path
