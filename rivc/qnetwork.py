"""Quantized Q-network: an MLP (or a CNN on camera frames) trained with a chip target's arithmetic,
exportable as integers.

Train what you deploy: with ``qat=True`` the forward pass returns exactly (bit for bit) the
Q-values of the integer network that :meth:`QuantizedQNetwork.export` writes, because both read
one description of each layer (:meth:`QuantizedQNetwork.quantize_layer`) and the target's
activation function (:mod:`rivc.chip`). Gradients flow through a float surrogate of the same
layer (straight-through estimators, PACT clips).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rivc.chip import DEFAULT_TARGET, ChipTarget, get_target, quantize_bias
from rivc.config import ACTIVATION_STEPS, HEADS, INPUT_RANGE_MARGIN, INPUT_UNITS, QuantConfig
from rivc.conv import ConvGeometry, ConvSpec, image_layout
from rivc.conv_torch import conv_forward, exact_conv, flatten_nhwc
from rivc.fast_path import QuantizedLinear, huber_loss_backward, mlp_forward, mlp_values
from rivc.integer_net import (NON_FINITE_OBSERVATION, PIXELS_ERROR, ImageInput, InputQuantizer, IntegerNetwork,
                              are_pixels, batch_shape, bounded_dimensions, dueling_q_values)
from rivc.quant import (MIN_CLIP, MIN_CLIP32, activation_step, bias_codes, clamped_clip, clip_statistic,
                        straight_through, straight_through_clip, weight_codes)
from rivc.requant import fit_requantization

try:  # memcmp: whether parameters changed in place, without the temporaries of an element-wise comparison
    _MEMCMP = ctypes.CDLL(None).memcmp
    _MEMCMP.restype, _MEMCMP.argtypes = ctypes.c_int, (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
except (OSError, AttributeError):  # (no C library to ask: torch.equal)
    _MEMCMP = None


class _Snapshot:
    """A copy of a layer's weight and bias, to tell whether they were written in place since (bit for bit)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.tensors = (weight.detach().clone(), bias.detach().clone())
        self.memcmp = _MEMCMP is not None and all(t.device.type == "cpu" and t.is_contiguous() for t in (weight, bias))
        self.spans = tuple((then.data_ptr(), now.numel() * now.element_size())
                           for now, then in zip((weight, bias), self.tensors))

    def same(self, weight: torch.Tensor, bias: torch.Tensor, pointers: tuple[int, int]) -> bool:
        """``pointers``: the parameters' data pointers (the cache key's), where their bytes start."""
        if self.memcmp:
            (weight_copy, weight_bytes), (bias_copy, bias_bytes) = self.spans
            return (_MEMCMP(pointers[0], weight_copy, weight_bytes) == 0
                    and _MEMCMP(pointers[1], bias_copy, bias_bytes) == 0)
        return torch.equal(weight, self.tensors[0]) and torch.equal(bias, self.tensors[1])


DEFAULT_HIDDEN_SIZES = (64, 64)  # dense hidden layers of an MLP (SB3's DQN default)
DEFAULT_CONV_HIDDEN_SIZES = (64,)  # dense hidden layers after conv layers
INITIAL_ACTIVATION_CLIP = 2.0  # PACT clips before calibration (or for conv nets, where calibration does not set them)


def _flat_dim(observation_space: spaces.Space) -> int:
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"QuantizedQNetwork takes a flat Box observation space, got {observation_space}; "
            "flatten the observation (gymnasium.wrappers.FlattenObservation) first; camera frames take conv layers "
            "(RIVC('CnnPolicy', env), policy_kwargs conv_arch)"
        )
    return int(observation_space.shape[0])


def check_image_space(observation_space: spaces.Space) -> tuple[tuple[int, int, int], bool]:
    """``((H, W, C), channels_first)`` of a camera-frame space, which must be uint8 HWC or CHW over 0..255."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
        raise ValueError(f"CnnPolicy (a conv Q-network) takes camera frames, a Box of shape (H, W, C) or (C, H, W), "
                         f"got {observation_space}: use RIVC('MlpPolicy', env) for vector observations")
    if observation_space.dtype != np.uint8 or np.any(observation_space.low != 0) or np.any(observation_space.high != 255):
        raise ValueError(f"camera frames must be uint8 pixels 0..255 (the chip's input layer reads them as they are), "
                         f"got a {observation_space.dtype} Box over [{observation_space.low.min()}, "
                         f"{observation_space.high.max()}]; do not normalise frames in a wrapper")
    return image_layout(observation_space.shape)


MAX_RANGE_FACTOR = 1e3  # a range this much narrower than the new one read a constant: its weights are kept


def observed_range(observations, obs_dim: int, margin: float, quantile: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per dimension, the data's range (between its ``quantile`` and ``1 - quantile`` quantiles; 0: its min and
    max) widened by ``margin`` of its width on each side. Where the quantiles meet (a rare value: a leg's contact
    flag), the min and max."""
    obs = np.asarray(observations.cpu() if torch.is_tensor(observations) else observations, dtype=np.float64)
    obs = obs.reshape(-1, obs_dim)
    if obs.shape[0] == 0 or not np.all(np.isfinite(obs)):
        raise ValueError("calibration needs at least one observation and only finite values")
    lo, hi = obs.min(axis=0), obs.max(axis=0)
    if quantile > 0:
        q_lo, q_hi = np.quantile(obs, [quantile, 1.0 - quantile], axis=0)
        spread = q_hi > q_lo
        lo, hi = np.where(spread, q_lo, lo), np.where(spread, q_hi, hi)
    return widened(lo, hi, margin)


def widened(low: np.ndarray, high: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``[low, high]`` widened by ``margin`` of its width on each side (an empty range by ``margin`` of 1e-6)."""
    pad = margin * np.maximum(high - low, 1e-6)
    return low - pad, high + pad


class QuantizedQNetwork(nn.Module):
    """MLP (or CNN on camera frames) mapping observations to Q-values through quantized layers.

    ``qat=True`` (default): the forward pass computes the chip target's integer arithmetic (the
    exported network's Q-values, bit for bit) with straight-through gradients through fake-quantized
    weights, biases and PACT-clipped ReLUs (clip values learned per layer, or moved by
    :meth:`track_activation_clips`). ``qat=False``: a float
    network (the baselines' FPNN), exported by post-training quantization for the same target.
    ``target``: the chip (:data:`rivc.chip.TARGETS`); a network it cannot run is refused here.

    Vector inputs are quantized to codes over an observation range: the space's finite
    bounds, ``obs_range=(low, high)``, or, for unbounded dimensions, a range set by
    :meth:`calibrate_input_range` and frozen in every export. ``input_units="observation"`` (default): the first
    layer's weights are trained in the observation's own units, as a float DQN's are (the same initial function and
    the same step per update, whatever the range), and the range's scale and offset are folded into the layer the chip
    runs (``W' obs + b' = (W' / a) x + b' - (W' / a) c`` for codes worth ``x = a obs + c``); a range that moves leaves
    them as they are. ``"normalised"``: the weights act on ``x`` itself (about ``[-1, 1]``), which magnifies a dimension
    whose range is narrow (the only parametrisation until 2026-12; a saved network keeps its own). ``conv_layers`` (``rivc.conv.ConvSpec``
    each) put conv layers before the dense ones: the observation is then a uint8 camera frame (HWC or
    CHW), read as the chip's input layer reads it (pixels 0..255; the float network sees ``/ 256``).

    ``activation_steps="layer"`` (default): one clip, so one activation step, per hidden layer. ``"unit"`` (MLPs): a
    clip per unit, each unit's codes ``round(z / s_j)`` with its own step ``s_j = c_j / L``, folded into the next
    layer's weights before they are quantized (``W[:, j] * s_j``): the codes the chip passes on stay integers, and a
    narrow unit gets all ``L`` levels however wide its neighbours are (docs/DESIGN.md, "Activation clips").

    ``head="q"`` (default): the last layer's rows are the Q-values. ``"dueling"``: a value row and an advantage row per
    action, ``Q_a = V + A_a - mean A`` (:func:`rivc.integer_net.dueling_q_values`), so each advantage row is rounded
    to the chip's weights on its own scale, not on the value's (docs/DESIGN.md, "The head").
    """

    fused_surrogate = True  # an MLP's surrogate as one autograd node (False: the general path, for checks)

    def __init__(
        self,
        observation_space: spaces.Space,
        n_actions: int,
        config: QuantConfig | None = None,
        hidden_sizes: Sequence[int] = DEFAULT_HIDDEN_SIZES,
        obs_range: tuple[np.ndarray, np.ndarray] | None = None,
        qat: bool = True,
        activation_clip: float = INITIAL_ACTIVATION_CLIP,
        target: str | ChipTarget = DEFAULT_TARGET,
        conv_layers: Sequence[ConvSpec | tuple | dict] = (),
        input_units: str = "observation",
        activation_steps: str = "layer",
        head: str = "q",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if head == "dueling" and n_actions < 2:
            raise ValueError(f"a dueling head ranks two or more actions, got n_actions={n_actions}")
        self.head = head
        if input_units not in INPUT_UNITS:
            raise ValueError(f"input_units must be one of {', '.join(INPUT_UNITS)}, got {input_units!r}")
        if activation_steps not in ACTIVATION_STEPS:
            raise ValueError(f"activation_steps must be one of {', '.join(ACTIVATION_STEPS)}, got {activation_steps!r}")
        if activation_steps == "unit" and conv_layers:
            raise ValueError("activation_steps='unit' (a step per unit) is built for dense networks: a conv network "
                             "takes activation_steps='layer'")
        self.activation_steps = activation_steps
        self.per_unit_steps = activation_steps == "unit"
        self.config = config or QuantConfig()
        self.target = get_target(target)
        self.qat = qat
        self.observation_space = observation_space
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions}")
        if activation_clip <= 0:
            raise ValueError(f"activation_clip must be > 0, got {activation_clip}")
        self.conv_specs = [ConvSpec.parse(spec) for spec in conv_layers]
        self.geometries: list[ConvGeometry] = []
        if self.conv_specs:
            self.image_shape, self.channels_first = check_image_space(observation_space)
            ImageInput(self.image_shape, self.channels_first, self.config.input_bits)  # frames are 8-bit pixels
            if obs_range is not None:
                raise ValueError("obs_range applies to vector observations; camera frames are read as 0..255 pixels")
            shape = self.image_shape
            for spec in self.conv_specs:
                self.geometries.append(spec.geometry(shape))
                shape = self.geometries[-1].out_shape(spec.filters)
            flat = int(np.prod(shape))
        else:
            self.image_shape, self.channels_first = None, False
            flat = _flat_dim(observation_space)
        self._n_actions = int(n_actions)
        sizes = [flat, *map(int, hidden_sizes), int(n_actions) + (head == "dueling")]  # dueling: V's row too
        self.target.check(self.config, sizes, self.conv_geometry)
        # each layer's widths on the target (weight bits, activation bits, largest code): fixed with the network
        self.precision = self.target.precision(self.config, len(self.conv_specs) + len(sizes) - 1, bool(self.conv_specs))
        # the modules hold the parameters; forward pads, strides and pools as the chip does (conv_forward)
        convs = [nn.Conv2d(g.in_shape[2], spec.filters, spec.kernel, spec.stride)
                 for g, spec in zip(self.geometries, self.conv_specs)]
        self.layers = nn.ModuleList([*convs, *(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))])
        clip_shapes = [(sizes[i + 1],) if self.per_unit_steps else () for i in range(len(self.layers) - 1)]
        self.clips = nn.ParameterList(
            nn.Parameter(torch.full(shape, float(activation_clip))) for shape in clip_shapes
        )
        obs_dim = 0 if self.is_image else flat  # frames have no range to calibrate
        if obs_range is not None:
            low, high = (np.broadcast_to(np.asarray(v, dtype=np.float64), (obs_dim,)) for v in obs_range)
            bounded = np.ones(obs_dim, dtype=bool)
        elif self.is_image:
            low = high = np.zeros(0)
            bounded = np.ones(0, dtype=bool)
        else:
            low = np.asarray(observation_space.low, dtype=np.float64)
            high = np.asarray(observation_space.high, dtype=np.float64)
            bounded = bounded_dimensions(low, high)
        low, high = np.where(bounded, low, 0.0), np.where(bounded, high, 0.0)
        self.register_buffer("obs_low", torch.as_tensor(low, dtype=torch.float64))
        self.register_buffer("obs_high", torch.as_tensor(high, dtype=torch.float64))
        self.register_buffer("obs_calibrated", torch.as_tensor(bounded))
        # saved with the weights: a state dict says which units its first layer is in (one without it, "normalised")
        self.register_buffer("first_layer_in_observation_units",
                             torch.tensor(input_units == "observation" and not self.conv_specs))  # frames: pixels
        self._quantization_cache: dict[int, tuple] = {}
        # True for a network whose weights are written in place through ``.data`` (SB3's target network, under
        # ``polyak_update``), which the version counters do not see: its cache then compares the weights themselves
        self.weights_written_in_place = False
        # the learned clips' gradient rule (rivc.quant.clip_gradient_weights): a training choice, not saved
        self.clip_gradient = "pact"
        # with tracked_statistic (clip tracking, "max" or "mse": rivc.quant.clip_statistic): the clip each hidden
        # layer's exact pre-activations asked for on the last batch a gradient pass saw (per unit: an array)
        self.tracked_statistic: str | None = None
        self.batch_clip_targets: list[float | np.ndarray] = [0.0] * len(self.clips)
        self._refresh_parameters()
        self.register_load_state_dict_post_hook(self._refresh_parameters)
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)
        self._refresh_input_quantizer()

    # -- input range ----------------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        return bool(self.conv_specs)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.observation_space.shape)

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.obs_shape))

    @property
    def n_actions(self) -> int:
        return self._n_actions

    def _head_values(self, values):
        """Q-values from the last layer's values (its rows: :meth:`rivc.integer_net.IntegerNetwork.head_values`)."""
        return dueling_q_values(values) if self.head == "dueling" else values

    @property
    def linears(self) -> list[nn.Linear]:
        """The dense layers (after the conv layers, if any)."""
        return list(self.layers[len(self.conv_specs):])

    @property
    def sizes(self) -> list[int]:
        """The dense part: ``[inputs, hidden..., head rows]`` (``[obs_dim, ...]`` for an MLP; the head's rows are
        ``n_actions``, one more for a dueling head's value)."""
        return [self.linears[0].in_features, *(linear.out_features for linear in self.linears)]

    @property
    def conv_geometry(self) -> list[tuple[ConvGeometry, int]]:
        """``(geometry, filters)`` of each conv layer, as ``rivc.chip.ChipTarget.check`` takes them."""
        return [(g, spec.filters) for g, spec in zip(self.geometries, self.conv_specs)]

    @property
    def needs_calibration(self) -> bool:
        return self._needs_calibration

    def input_quantizer(self) -> InputQuantizer | ImageInput:
        self._check_calibrated()
        return self._input_quantizer

    def _refresh_input_quantizer(self) -> None:
        # inv_step is computed by numpy so that torch and the integer reference use the same float64
        # copies: an exported network keeps its range when this module is calibrated or loaded again
        quantizer = InputQuantizer(self.obs_low.cpu().numpy().copy(), self.obs_high.cpu().numpy().copy(),
                                   self.config.input_bits)
        self._needs_calibration = not bool(self.obs_calibrated.all())
        self._inv_step = torch.as_tensor(quantizer.inv_step, dtype=torch.float64, device=self.obs_low.device)
        if self.is_image:
            self._input_quantizer = ImageInput(self.image_shape, self.channels_first, self.config.input_bits)
        else:
            self._input_quantizer = quantizer  # what export() hands over (its bounds are frozen once calibrated)
        zero_point = self._input_quantizer.zero_point  # input codes run from -zero_point (frames: 0, pixels as they are)
        self._input_code_range = (-zero_point, 2**self.config.input_bits - 1 - zero_point)
        # value of one input code (float32, as in every layer): a power of two, so codes * step is exact
        self._input_step_value = ImageInput.step if self.is_image else 1.0 / 2 ** (self.config.input_bits - 1)
        self.folds_input_range = bool(self.first_layer_in_observation_units) and not self.is_image
        if not self.is_image:  # what the fold and the observation values read, per range (see _fold_input_range)
            scale, offset = self.input_affine()
            live = scale > 0
            step = np.divide(1.0, quantizer.inv_step, out=np.zeros_like(quantizer.inv_step), where=quantizer.inv_step > 0)
            self._fold_terms = (np.where(live, scale, 1.0), offset, None if live.all() else ~live, step)
        self._quantization_cache.clear()  # the first layer's quantization reads the range where it is folded in

    def calibrate_input_range(self, observations, margin: float = INPUT_RANGE_MARGIN, all_dims: bool = False) -> None:
        """Set the range of unbounded dimensions (or all, with ``all_dims``) from observed data.

        The range is the data's min/max widened by ``margin`` of its width on each side; values
        outside it are clipped at run time. Call once before training and keep it frozen (or move it with
        :meth:`move_input_range`). Camera frames have a fixed range (0..255): nothing to calibrate.
        """
        if self.is_image:
            return
        lo, hi = observed_range(observations, self.obs_dim, margin)
        mask = np.ones(self.obs_dim, bool) if all_dims else ~self.obs_calibrated.cpu().numpy()
        self._set_input_range(np.where(mask, lo, self.obs_low.cpu().numpy()),
                              np.where(mask, hi, self.obs_high.cpu().numpy()))

    def _set_input_range(self, low: np.ndarray, high: np.ndarray) -> None:
        self.obs_low.copy_(torch.as_tensor(low))
        self.obs_high.copy_(torch.as_tensor(high))
        self.obs_calibrated.fill_(True)
        self._refresh_input_quantizer()

    def input_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, offset)`` per input dimension: the input codes are worth ``scale * obs + offset`` (about [-1, 1];
        the codes round it), what a ``"normalised"`` first layer reads."""
        quantizer = self._input_quantizer  # (dimensions not calibrated yet read 0 * obs - 1)
        scale = quantizer.inv_step * self._input_step_value
        offset = (-quantizer.low * quantizer.inv_step - quantizer.zero_point) * self._input_step_value
        return scale, offset

    @property
    def input_units(self) -> str:
        """The units the first layer's weights are trained in (:data:`rivc.config.INPUT_UNITS`; frames: ``"normalised"``)."""
        return "observation" if self.folds_input_range else "normalised"

    def observation_values(self, codes: np.ndarray) -> np.ndarray:
        """The observations that input codes ``[B, obs_dim]`` stand for (float32; a dimension without a range reads its
        ``low``): what a first layer in the observation's units reads, ``low + (code + zero_point) / inv_step``."""
        quantizer = self._input_quantizer
        return (quantizer.low + (codes + quantizer.zero_point) * self._fold_terms[3]).astype(np.float32)

    def _surrogate_input(self, codes: np.ndarray, step: float) -> np.ndarray:
        """What the first layer's float surrogate reads (float32): the observations the codes stand for where the
        range is folded in, else ``codes * step`` (exact: a power of two)."""
        if self.folds_input_range:
            return self.observation_values(codes)
        return np.multiply(codes, step, dtype=np.float32)

    def _fold_input_range(self, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A first layer in the observation's units as the chip runs it, on codes worth ``x = a obs + c``:
        ``(W' / a, b' - (W' / a) c)`` (float32, computed in float64); a dimension without a range (``a = 0``) reads
        its ``low``, a constant, into the bias."""
        scale, offset, dead, _ = self._fold_terms  # (scale: 1 where dead; dead: None where every dimension has a range)
        weight64 = weight.astype(np.float64)
        folded = weight64 / scale
        if dead is not None:
            folded[:, dead] = 0.0
        folded_bias = bias - folded @ offset
        if dead is not None:
            folded_bias += weight64[:, dead] @ self._input_quantizer.low[dead]
        return folded.astype(np.float32), folded_bias.astype(np.float32)

    def move_input_range(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Quantize the inputs over ``[low, high]`` from now on, keeping the network's function (exact but for the
        input codes' rounding). Where the first layer is in the observation's units its weights stay as they are;
        ``"normalised"``: its weights and biases absorb the change of the inputs' scale and offset (dimensions that
        had no range yet, or one so narrow that their inputs were constant, keep their weights). Returns each input
        column's weight factor (all 1 where nothing moved; an optimiser's moments of those weights scale by its
        inverse). Vector observations only: frames are read as 0..255."""
        if self.is_image:
            raise ValueError("camera frames are read as 0..255 pixels: their input range does not move")
        low, high = (np.asarray(v, dtype=np.float64).reshape(self.obs_dim) for v in (low, high))
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low)):
            raise ValueError("a new input range needs finite bounds with high > low in every dimension")
        if self.folds_input_range:
            self._set_input_range(low, high)
            return np.ones(self.obs_dim)
        old_scale, old_offset = self.input_affine()
        self._set_input_range(low, high)
        new_scale, new_offset = self.input_affine()
        # obs = (x_new - new_offset) / new_scale, so the old input x_old = factor * x_new + shift
        had_range = (old_scale > 0) & (old_scale < MAX_RANGE_FACTOR * new_scale)  # (a near-empty range read nothing)
        factor = np.where(had_range, old_scale / new_scale, 1.0)
        shift = np.where(had_range, old_offset - factor * new_offset, 0.0)
        first = self.layers[0]
        with torch.no_grad():  # in place: the version counters that the quantization cache reads count it
            weight = first.weight.detach().double()
            first.bias.add_((weight @ torch.as_tensor(shift, device=weight.device)).to(first.bias.dtype))
            first.weight.mul_(torch.as_tensor(factor, dtype=first.weight.dtype, device=first.weight.device))
        return factor

    def _check_calibrated(self) -> None:
        if self.needs_calibration:
            dims = np.flatnonzero(~self.obs_calibrated.cpu().numpy()).tolist()
            raise RuntimeError(
                f"observation dimensions {dims} have no finite bounds: call "
                "calibrate_input_range(observations) or pass obs_range=(low, high)"
            )

    def _apply(self, fn, recurse=True):  # keep the cached inv_step on the module's device
        out = super()._apply(fn, recurse)
        self._refresh_input_quantizer()
        self._refresh_parameters()
        return out

    def _refresh_parameters(self, *args) -> None:
        """(weight, bias) per layer, read without nn.Module's attribute look-ups (refreshed where the
        modules may get new Parameter objects: .to(), load_state_dict(assign=True))."""
        self._parameters_of = [(layer.weight, layer.bias) for layer in self.layers]
        # per layer, what quantize_layer reads that never changes: conv geometry, weight bits, shape
        self._layer_facts = [
            (self.geometries[i] if i < len(self.geometries) else None,
             self.precision[i].weight_bits, tuple(layer.weight.shape))
            for i, layer in enumerate(self.layers)]
        self._parameter_views: dict[int, tuple] = {}
        self._clip_parameters = list(self.clips)
        self._clip_views: tuple[list[int], list[np.ndarray]] | None = None  # made by _clip_floats
        self._quantization_cache.clear()

    def __setstate__(self, state) -> None:  # copy.deepcopy, pickle: the caches name the old parameters
        super().__setstate__(state)
        if "first_layer_in_observation_units" not in self._buffers:  # pickled before the units: normalised
            self._buffers["first_layer_in_observation_units"] = torch.tensor(False)
            self._refresh_input_quantizer()
        self._refresh_parameters()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh_input_quantizer()

    # -- forward ----------------------------------------------------------------------------------
    def _check_input(self, obs: torch.Tensor) -> None:
        if obs.ndim != len(self.obs_shape) + 1 or tuple(obs.shape[1:]) != self.obs_shape:
            batch_shape(obs.shape, self.obs_shape, batched=True)  # raises, naming the shape expected
        finite = np.isfinite(obs.detach().numpy()).all() if obs.device.type == "cpu" else torch.isfinite(obs).all()
        if not finite:  # (numpy: cheaper than torch on a small batch)
            raise ValueError(NON_FINITE_OBSERVATION)
        self._check_calibrated()

    def _frames(self, obs: torch.Tensor) -> torch.Tensor:
        """Validated frames as pixel codes, NCHW float64."""
        if tuple(obs.shape[1:]) != self.obs_shape or obs.ndim != 4:
            self._check_input(obs)  # raises with the shapes
        codes = obs.to(torch.float64)
        if obs.dtype != torch.uint8 and not are_pixels(codes):
            raise ValueError(PIXELS_ERROR)
        return codes if self.channels_first else codes.permute(0, 3, 1, 2)

    def _input_codes(self, obs: torch.Tensor) -> torch.Tensor:
        """Validated observations as input codes (float64 holding exact integers; frames NCHW), computed
        by the exported network's own input quantizer."""
        if self.is_image:
            return self._frames(obs)
        self._check_calibrated()
        if tuple(obs.shape[1:]) != self.obs_shape or obs.ndim != 2:
            self._check_input(obs)  # raises with the shapes
        return torch.from_numpy(self._input_quantizer.codes(obs.detach().cpu().numpy())).to(obs.device)

    def _input_float(self, obs: torch.Tensor) -> torch.Tensor:
        """Validated observations without rounding, in the first layer's units (the float network's input)."""
        if self.is_image:
            return (self._frames(obs) * ImageInput.step).to(torch.float32)
        self._check_input(obs)
        clipped = torch.clamp(obs.to(torch.float64), self.obs_low, self.obs_high)
        if self.folds_input_range:  # the first layer reads observations (clipped to the range, as the codes are)
            return clipped.to(torch.float32)
        zero_point = 2 ** (self.config.input_bits - 1)
        x = (clipped - self.obs_low) * self._inv_step
        return ((x - zero_point) / zero_point).to(torch.float32)

    def _layer(self, i: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """Layer ``i``'s linear map (conv with padding and pooling, or dense; a feature map is flattened NHWC);
        ``exact``: on integer codes, by matrix products only (exact; a conv algorithm may not be)."""
        if i < len(self.geometries):
            return (exact_conv if exact else conv_forward)(x, weight, bias, self.geometries[i])
        return torch.addmm(bias, flatten_nhwc(x), weight.T)

    def _float_pass(self, obs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The float network: each hidden layer's ReLU output and the Q-values."""
        x, hidden = self._input_float(obs), []
        for i, layer in enumerate(self.layers[:-1]):
            x = torch.relu(self._layer(i, x, layer.weight, layer.bias))
            hidden.append(x)
        out = self._layer(len(self.layers) - 1, x, self.layers[-1].weight, self.layers[-1].bias)
        return hidden, self._head_values(out)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``[B, n_actions]`` for observations ``[B, *obs_shape]``: the exact integer values, and
        with gradients a float surrogate that carries them (for an MLP one autograd node: :mod:`rivc.fast_path`)."""
        if not self.qat:
            return self._float_pass(obs)[1]
        if self._fast_path(obs):
            return self._mlp_forward(obs)
        codes = self._input_codes(obs)
        step, last = self._input_step_value, len(self.layers) - 1
        surrogate = torch.is_grad_enabled()  # without gradients only the exact integer path is needed
        if surrogate:  # the first layer's float input
            x = ((codes * step).to(torch.float32) if self.is_image  # a power of two: exact
                 else torch.from_numpy(self._surrogate_input(codes.cpu().numpy(), step)).to(codes.device))
        clip_values = self._clip_floats()
        for i, (weight, bias) in enumerate(self._parameters_of):
            clip = None if i == last else self._clip_parameters[i]
            clip_value = None if clip is None else clamped_clip(clip_values[i])  # clamp_min(MIN_CLIP)
            quantized = self.quantize_layer(i, step, clip_value)
            exact = quantized.exact_dtype
            acc = self._layer(i, codes.to(exact), quantized.weight_codes, quantized.bias_codes, exact=True).double()
            if surrogate and i == 0 and self.folds_input_range:  # observations in, the weights' own units: their gradients
                z = self._layer(i, x, weight, bias)  # are the folded layer's (straight through its quantization)
            elif surrogate:  # the float surrogate that carries the gradients
                z = self._layer(i, x, straight_through(weight, quantized.weight), straight_through(bias, quantized.bias))
            if i == last:
                q = self._head_values(acc * quantized.integer_torch.scale).float()
                return straight_through(self._head_values(z), q) if surrogate else q
            codes = quantized.integer_torch.activation(acc)
            step = activation_step(clip_value, self.precision[i].levels)
            if surrogate:  # min(relu(z), clip) backward (PACT's or LSQ's) at the exact pre-activation, the chip's forward
                pre_activation = acc * quantized.integer_torch.scale
                if self.tracked_statistic is not None:
                    self.batch_clip_targets[i] = clip_statistic(pre_activation, self.precision[i].levels,
                                                                self.tracked_statistic, self.per_unit_steps)
                values = codes * (torch.from_numpy(step).to(codes.device) if self.per_unit_steps else step)
                x = straight_through_clip(z, clip.clamp_min(MIN_CLIP), values.float(), pre_activation,
                                          self.clip_gradient, codes, self.precision[i].levels)
        raise AssertionError("unreachable")

    def _fast_path(self, obs: torch.Tensor) -> bool:
        """Whether a QAT pass over ``obs`` takes :mod:`rivc.fast_path` (an MLP on the CPU)."""
        return self.fused_surrogate and not self.is_image and obs.device.type == "cpu"

    def _mlp_forward(self, obs: torch.Tensor) -> torch.Tensor:
        """An MLP's forward pass on the CPU: :func:`rivc.fast_path.mlp_forward` (the same values and gradients)."""
        return mlp_forward(self, obs)

    @property
    def values_per_row(self) -> bool:
        """Whether :meth:`values` gives each row the same bits whatever else is in the batch: a QAT MLP on the CPU (the
        exact integer path), so that passes may be merged. (A float network's matrix products may round differently
        with the batch's size.)"""
        return self.qat and self.fused_surrogate and not self.is_image and self.linears[0].weight.device.type == "cpu"

    def values(self, obs: torch.Tensor) -> np.ndarray:
        """The forward's Q-values without gradients, as a numpy array ``[B, n_actions]`` (float32): what a value target
        reads. A QAT MLP on the CPU takes :func:`rivc.fast_path.mlp_values` (the same bits, without the tensors and
        modules around the exact pass)."""
        if self.qat and self._fast_path(obs):
            return mlp_values(self, obs)
        with torch.no_grad():
            return self(obs).cpu().numpy()

    def huber_loss_backward(self, obs: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> float:
        """The Huber loss (``F.smooth_l1_loss``: mean, beta 1) of the Q-values of ``actions`` (``[B]`` or ``[B, 1]``)
        at ``obs`` against ``targets`` ``[B]``, its gradients written to the parameters' ``.grad`` (what was there
        replaced, as after ``zero_grad()``); returns the loss. A QAT MLP on the CPU computes them without autograd's
        graph, bit for bit the same (:func:`rivc.fast_path.huber_loss_backward`)."""
        if self.qat and self._fast_path(obs):
            return huber_loss_backward(self, obs, actions, targets)
        q_taken = self(obs).gather(1, actions.reshape(-1, 1).long()).squeeze(1)
        loss = F.smooth_l1_loss(q_taken, targets.reshape(-1))
        self.zero_grad(set_to_none=True)
        loss.backward()
        return loss.item()

    def quantize_layer(self, i: int, input_step: float, clip: float | None = None) -> QuantizedLinear:
        """Layer ``i`` as the target computes it, for inputs worth ``input_step`` per code and (hidden
        layers) activations clipped at ``clip`` with ``L`` levels (both float32 values): the one
        description of the layer that the forward pass and :meth:`export` share. numpy throughout:
        on a few small arrays its per-call cost is a fraction of torch's, and conversion runs after every update.

        Cached until the parameters change: their version counters move on every optimizer step and
        ``load_state_dict``; edits through ``.data`` (SB3's ``polyak_update`` of the target network) do not move
        them, so a network with ``weights_written_in_place`` compares the weights the entry was made from.
        """
        weight, bias = self._parameters_of[i]
        key = (weight.data_ptr(), bias.data_ptr(), weight._version, bias._version,
               *((_cache_key(input_step), _cache_key(clip)) if self.per_unit_steps else (input_step, clip)))
        cached = self._quantization_cache.get(i)
        if cached is not None and cached[0] == key and (not self.weights_written_in_place
                                                         or cached[2].same(weight, bias, key[:2])):
            return cached[1]
        weight_array, bias_array = self._numpy_parameters(i, key[:2])
        if i == 0 and self.folds_input_range:
            weight_array, bias_array = self._fold_input_range(weight_array, bias_array)
        conv, bits, shape = self._layer_facts[i]  # shape: [out, in] or [F, C, k, k]
        input_steps = None
        if isinstance(input_step, np.ndarray):  # per-unit steps of the layer before: folded into the columns
            input_steps, input_step = input_step, 1.0  # (the codes then count accumulator units of W * step)
            weight_array = weight_array * input_steps  # float32, rounded once
        codes, w_scale = weight_codes(weight_array.reshape(shape[0], -1), bits)
        acc_scale = w_scale[:, 0] * np.float32(input_step)  # float32: the value of one accumulator unit
        acc_scale64 = acc_scale.astype(np.float64)
        b_float = bias_codes(bias_array, acc_scale)
        # a non-finite weight makes its row's scale non-finite (a max or mean of |w|), a non-finite bias its code;
        # cheap checks: the agent validates only its first conversion
        largest_bias = np.maximum.reduce(np.abs(b_float), axis=None, initial=0.0)
        if not (np.isfinite(np.add.reduce(w_scale, axis=None)) and largest_bias < 2.0**62):
            raise ValueError(f"layer {i} has non-finite (or overflowing) weights or biases: training diverged (lower "
                             "the learning rate or max_grad_norm)")
        b_codes = b_float.astype(np.int64)
        if largest_bias > self.target.max_bias_kept_as_is:  # (else every bias is its own code: skip the checks)
            b_codes = quantize_bias(b_codes, self.target.bias_bits, self.target.bias_limit)
        requant = None
        if clip is not None:  # the activation step as the forward's clip / levels
            requant = fit_requantization(acc_scale64, activation_step(clip, self.precision[i].levels), self.precision[i],
                                         self.target)
        input_codes = self._input_code_range if i == 0 else (0, self.precision[i - 1].levels)
        quantized = QuantizedLinear(codes, w_scale, b_codes, acc_scale64, requant, conv, self.precision[i].weight_levels,
                                    input_codes, shape, weight.device, input_steps)
        self._quantization_cache[i] = (key, quantized, _Snapshot(weight, bias) if self.weights_written_in_place else None)
        return quantized

    def _numpy_parameters(self, i: int, pointers: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Layer ``i``'s weight and bias as numpy arrays: views of a CPU parameter's memory (kept while
        its storage is the same, so they follow in-place updates), copies from another device."""
        weight, bias = self._parameters_of[i]
        if weight.device.type != "cpu":
            return weight.detach().cpu().numpy(), bias.detach().cpu().numpy()
        views = self._parameter_views.get(i)
        if views is None or views[0] != pointers:
            views = self._parameter_views[i] = (pointers, weight.detach().numpy(), bias.detach().numpy())
        return views[1], views[2]

    def _clip_floats(self) -> list[float] | list[np.ndarray]:
        """The PACT clips' current values (float32 values as Python floats; per-unit clips as float32 arrays, copies),
        read through numpy views of CPU clips (cheaper than ``float(tensor)``), kept while each clip's storage is the
        same (they follow in-place updates; a copied, unpickled or reassigned clip gets new views)."""
        clips = self._clip_parameters
        if not all(clip.device.type == "cpu" for clip in clips):
            views = [clip.detach().cpu().numpy() for clip in clips]
        else:
            pointers = [clip.data_ptr() for clip in clips]
            if self._clip_views is None or self._clip_views[0] != pointers:
                self._clip_views = (pointers, [clip.detach().numpy() for clip in clips])
            views = self._clip_views[1]
        if self.per_unit_steps:
            return [view.copy() for view in views]
        return [float(view) for view in views]

    @torch.no_grad()
    def scale_head(self, factor: float) -> None:
        """Multiply the Q-values by ``factor`` (> 0): the head's weights and bias (the greedy action unchanged; the
        head's rows quantize on scales that follow)."""
        head = self.linears[-1]
        head.weight.mul_(factor)
        head.bias.mul_(factor)
        self.clear_quantization_cache()

    def clear_quantization_cache(self) -> None:
        self._quantization_cache.clear()

    def with_config(self, config: QuantConfig) -> QuantizedQNetwork:
        """The same network (weights, clips, input range) at other bit widths: what post-training requantization
        to ``config`` gives (``rivc.chip.TargetError`` where the target cannot run it)."""
        self.target.check(config, self.sizes, self.conv_geometry)
        other = QuantizedQNetwork(self.observation_space, self.n_actions, config, hidden_sizes=self.sizes[1:-1],
                                  qat=self.qat, target=self.target, conv_layers=self.conv_specs,
                                  input_units=self.input_units, activation_steps=self.activation_steps, head=self.head)
        other.load_state_dict(self.state_dict())
        return other.to(self.obs_low.device)

    # -- export -----------------------------------------------------------------------------------
    @torch.no_grad()
    def float_activation_max(self, observations) -> list[float] | list[np.ndarray]:
        """Largest ReLU output of each hidden layer of the float (unquantized) network on ``observations`` (per-unit
        steps: of each unit, float32 arrays), at least ``MIN_CLIP``."""
        obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32, device=self.obs_low.device)
        hidden, _ = self._float_pass(obs.reshape(-1, *self.obs_shape))
        if self.per_unit_steps:
            return [np.maximum(x.max(dim=0).values.cpu().numpy(), np.float32(MIN_CLIP)) for x in hidden]
        return [max(float(x.max()), MIN_CLIP) for x in hidden]

    @torch.no_grad()
    def calibrate_activation_clips(self, observations) -> None:
        """Start each PACT clip at the float network's largest activation on ``observations``.

        A clip far above the activations wastes the few levels a 2- or 4-bit neuron has (and
        makes the SNN's spike counts sparse); QAT then keeps learning the clips.
        """
        for clip, value in zip(self.clips, self.float_activation_max(observations)):
            clip.copy_(torch.as_tensor(value, dtype=clip.dtype))

    @torch.no_grad()
    def track_activation_clips(self, decay: float) -> None:
        """Move each clip toward the clip its layer's pre-activations asked for on the last training batch
        (``tracked_statistic``, set before the gradient pass: their largest value, or the least-squares clip):
        ``clip <- decay * clip + (1 - decay) * target``, a moving-average range as TensorFlow's and
        PyTorch's quantization-aware training keep one. A learned clip can fall behind activations
        that grow as the network learns and leave a hidden layer all but binary (docs/zoo_notes.md)."""
        for clip, top in zip(self._clip_parameters, self.batch_clip_targets):
            if isinstance(top, np.ndarray):  # per unit
                clip.mul_(decay).add_(torch.as_tensor((1.0 - decay) * np.maximum(top, MIN_CLIP32), device=clip.device))
            else:
                clip.mul_(decay).add_((1.0 - decay) * max(top, MIN_CLIP32))

    def activation_clips(self, calibration_obs=None) -> list[float] | list[np.ndarray]:
        """Clip value per hidden layer (per-unit steps: an array each): learned or tracked (QAT) or, for a float
        network, the calibration max."""
        if self.qat:
            return [clamped_clip(clip) for clip in self._clip_floats()]  # clamp_min(MIN_CLIP), float32
        if calibration_obs is None:
            raise ValueError(
                "a float (qat=False) network needs calibration_obs for post-training quantization: "
                "pass a batch of typical observations (e.g. from the replay buffer)"
            )
        return self.float_activation_max(calibration_obs)

    def export(self, calibration_obs=None, check: bool = True) -> IntegerNetwork:
        """The integer network (numpy) of the target; post-training quantized if ``qat=False``.
        ``check=False`` skips :meth:`IntegerNetwork.validate` (the agent's conversions after the first:
        the same code path, new numbers)."""
        clips = self.activation_clips(calibration_obs)
        step = self._input_step_value
        layers = []
        for i in range(len(self.layers)):
            clip = _float32_clip(clips[i]) if i < len(clips) else None  # the forward's float32 clip
            layers.append(self.quantize_layer(i, step, clip).integer)
            if clip is not None:
                step = activation_step(clip, self.precision[i].levels)
        return IntegerNetwork(config=self.config, input=self.input_quantizer(), layers=layers, target=self.target.name,
                              head=self.head,
                              check=check)


def _cache_key(value: float | np.ndarray | None):
    """A step or clip as a cache key compares it: per-unit arrays by their bytes."""
    return value.tobytes() if isinstance(value, np.ndarray) else value


def _float32_clip(clip: float | np.ndarray) -> float | np.ndarray:
    """A clip as the forward holds it: a float32 value (a Python float), or per unit a float32 array."""
    if isinstance(clip, np.ndarray):
        return clip.astype(np.float32)
    return float(np.float32(clip))


def _rename_legacy_keys(state_dict, prefix, *args) -> None:
    """Checkpoints from before conv layers named the layers ``linears``; those from before ``input_units`` trained
    the first layer on the input codes' scale."""
    for key in [k for k in state_dict if k.startswith(prefix + "linears.")]:
        state_dict[prefix + "layers." + key[len(prefix + "linears."):]] = state_dict.pop(key)
    if prefix + "obs_low" in state_dict:  # (a state dict of this module, not a partial one)
        state_dict.setdefault(prefix + "first_layer_in_observation_units", torch.tensor(False))
