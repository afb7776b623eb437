"""Quantized Q-network: an MLP trained with a chip target's arithmetic, exportable as integers.

Train what you deploy: with ``qat=True`` the forward pass returns exactly (bit for bit) the
Q-values of the integer network that :meth:`QuantizedQNetwork.export` writes, because both read
one description of each layer (:meth:`QuantizedQNetwork.quantize_layer`) and the target's
activation function (:mod:`rivc.chip`). Gradients flow through a float surrogate of the same
layer (straight-through estimators, PACT clips).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rivc.chip import (
    DEFAULT_TARGET,
    SCALE_SHIFT,
    ChipTarget,
    accumulator_clip,
    get_target,
    quantize_bias,
    requantization,
    threshold_step,
)
from rivc.config import QuantConfig
from rivc.integer_net import UNBOUNDED, InputQuantizer, IntegerLayer, IntegerNetwork
from rivc.quant import bias_codes, input_codes, straight_through, weight_codes

MIN_CLIP = 1e-4  # smallest activation clip value: keeps the activation step positive


class QuantizedLinear(NamedTuple):
    """A layer as the chip computes it (detached): the integer layer, and its torch views."""

    integer: IntegerLayer  # what export() writes and the integer reference runs
    weight: torch.Tensor  # codes * scale (float32): the surrogate's weights
    bias: torch.Tensor  # bias codes * accumulator scale (float32)
    weight_codes: torch.Tensor  # float64 [out, in], exact integers
    bias_codes: torch.Tensor  # float64 [out]
    integer_torch: IntegerLayer  # ``integer`` with torch float64 arrays, for the exact forward


def _flat_dim(observation_space: spaces.Space) -> int:
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"QuantizedQNetwork takes a flat Box observation space, got {observation_space}; "
            "flatten the observation (gymnasium.wrappers.FlattenObservation) first"
        )
    return int(observation_space.shape[0])


class QuantizedQNetwork(nn.Module):
    """MLP mapping observations to Q-values through quantized layers.

    ``qat=True`` (default): the forward pass computes the chip target's integer arithmetic (the
    exported network's Q-values, bit for bit) with straight-through gradients through fake-quantized
    weights, biases and PACT-clipped ReLUs (clip values learned per layer). ``qat=False``: a float
    network (the baselines' FPNN), exported by post-training quantization for the same target.
    ``target``: the chip (:data:`rivc.chip.TARGETS`); a network it cannot run is refused here.

    Inputs are normalised to about ``[-1, 1]`` over an observation range: the space's finite bounds,
    ``obs_range=(low, high)``, or, for unbounded dimensions, a range set by
    :meth:`calibrate_input_range` and frozen in every export.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        n_actions: int,
        config: QuantConfig | None = None,
        hidden_sizes: Sequence[int] = (64, 64),
        obs_range: tuple[np.ndarray, np.ndarray] | None = None,
        qat: bool = True,
        activation_clip: float = 2.0,
        target: str | ChipTarget = DEFAULT_TARGET,
    ) -> None:
        super().__init__()
        self.config = config or QuantConfig()
        self.target = get_target(target)
        self.qat = qat
        self.observation_space = observation_space
        obs_dim = _flat_dim(observation_space)
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions}")
        if activation_clip <= 0:
            raise ValueError(f"activation_clip must be > 0, got {activation_clip}")
        sizes = [obs_dim, *map(int, hidden_sizes), int(n_actions)]
        self.target.check(self.config, sizes)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.clips = nn.ParameterList(
            nn.Parameter(torch.tensor(float(activation_clip))) for _ in range(len(sizes) - 2)
        )
        if obs_range is not None:
            low, high = (np.broadcast_to(np.asarray(v, dtype=np.float64), (obs_dim,)) for v in obs_range)
            bounded = np.ones(obs_dim, dtype=bool)
        else:
            low = np.asarray(observation_space.low, dtype=np.float64)
            high = np.asarray(observation_space.high, dtype=np.float64)
            bounded = np.isfinite(low) & np.isfinite(high) & (np.abs(low) < UNBOUNDED) & (np.abs(high) < UNBOUNDED)
        low, high = np.where(bounded, low, 0.0), np.where(bounded, high, 0.0)
        self.register_buffer("obs_low", torch.as_tensor(low, dtype=torch.float64))
        self.register_buffer("obs_high", torch.as_tensor(high, dtype=torch.float64))
        self.register_buffer("obs_calibrated", torch.as_tensor(bounded))
        self._quantization_cache: dict[int, tuple] = {}
        self._refresh_input_quantizer()

    # -- input range ----------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return self.linears[0].in_features

    @property
    def n_actions(self) -> int:
        return self.linears[-1].out_features

    @property
    def sizes(self) -> list[int]:
        """``[obs_dim, hidden..., n_actions]``."""
        return [self.obs_dim, *(linear.out_features for linear in self.linears)]

    @property
    def needs_calibration(self) -> bool:
        return not bool(self.obs_calibrated.all())

    def input_quantizer(self) -> InputQuantizer:
        self._check_calibrated()
        return InputQuantizer(self.obs_low.cpu().numpy(), self.obs_high.cpu().numpy(), self.config.input_bits)

    def _refresh_input_quantizer(self) -> None:
        # inv_step is computed by numpy so that torch and the integer reference use the same float64
        inv = InputQuantizer(self.obs_low.cpu().numpy(), self.obs_high.cpu().numpy(), self.config.input_bits).inv_step
        self._inv_step = torch.as_tensor(inv, dtype=torch.float64, device=self.obs_low.device)
        # value of one input code after normalisation to about [-1, 1] (float32, as in every layer)
        self._input_step = torch.tensor(1.0 / 2 ** (self.config.input_bits - 1), device=self.obs_low.device)

    def calibrate_input_range(self, observations, margin: float = 0.1, all_dims: bool = False) -> None:
        """Set the range of unbounded dimensions (or all, with ``all_dims``) from observed data.

        The range is the data's min/max widened by ``margin`` of its width on each side; values
        outside it are clipped at run time. Call once before training and keep it frozen.
        """
        obs = np.asarray(observations.cpu() if torch.is_tensor(observations) else observations, dtype=np.float64)
        obs = obs.reshape(-1, self.obs_dim)
        if obs.shape[0] == 0 or not np.all(np.isfinite(obs)):
            raise ValueError("calibration needs at least one observation and only finite values")
        lo, hi = obs.min(axis=0), obs.max(axis=0)
        pad = margin * np.maximum(hi - lo, 1e-6)
        mask = np.ones(self.obs_dim, bool) if all_dims else ~self.obs_calibrated.cpu().numpy()
        low = np.where(mask, lo - pad, self.obs_low.cpu().numpy())
        high = np.where(mask, hi + pad, self.obs_high.cpu().numpy())
        self.obs_low.copy_(torch.as_tensor(low))
        self.obs_high.copy_(torch.as_tensor(high))
        self.obs_calibrated.fill_(True)
        self._refresh_input_quantizer()

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
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh_input_quantizer()

    # -- forward ----------------------------------------------------------------------------------
    def _check_input(self, obs: torch.Tensor) -> None:
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(
                f"observation shape {tuple(obs.shape)} does not match the network: expected (batch, {self.obs_dim})"
            )
        if not torch.isfinite(obs).all():
            raise ValueError("observation contains NaN or inf; check the environment's observations")
        self._check_calibrated()

    def _input_codes(self, obs: torch.Tensor) -> torch.Tensor:
        """Validated observations as signed input codes (float64 holding exact integers)."""
        self._check_input(obs)
        return input_codes(obs, self.obs_low, self.obs_high, self._inv_step, 2 ** (self.config.input_bits - 1))

    def _input_float(self, obs: torch.Tensor) -> torch.Tensor:
        """Validated observations normalised to about [-1, 1] without rounding (the float network's input)."""
        self._check_input(obs)
        zero_point = 2 ** (self.config.input_bits - 1)
        x = (torch.clamp(obs.to(torch.float64), self.obs_low, self.obs_high) - self.obs_low) * self._inv_step
        return ((x - zero_point) / zero_point).to(torch.float32)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``[B, n_actions]`` for observations ``[B, obs_dim]``."""
        if not self.qat:
            x = self._input_float(obs)
            for linear in self.linears[:-1]:
                x = torch.relu(linear(x))
            return self.linears[-1](x)
        codes = self._input_codes(obs)
        x = (codes / 2 ** (self.config.input_bits - 1)).to(torch.float32)  # codes / zero point, exact
        step = self._input_step
        levels = self.config.activation_levels
        last = len(self.linears) - 1
        for i, linear in enumerate(self.linears):
            clip = None if i == last else self.clips[i].clamp_min(MIN_CLIP)
            quantized = self.quantize_layer(i, step, None if clip is None else float(clip.detach()))
            weight = straight_through(linear.weight, quantized.weight)
            bias = straight_through(linear.bias, quantized.bias)
            z = torch.addmm(bias, x, weight.T)  # the float surrogate that carries the gradients
            acc = torch.addmm(quantized.bias_codes, codes, quantized.weight_codes.T)  # exact integers
            if i == last:
                return straight_through(z, (acc * quantized.integer_torch.scale).float())
            codes = quantized.integer_torch.activation(acc, levels)
            step = (clip / levels).detach()
            y = torch.minimum(torch.relu(z), clip)  # PACT: gradient reaches the clip where z > clip
            x = straight_through(y, (codes * step.double()).float())
        raise AssertionError("unreachable")

    @torch.no_grad()
    def quantize_layer(self, i: int, input_step: torch.Tensor, clip: float | None = None) -> QuantizedLinear:
        """Layer ``i`` as the target computes it, for inputs worth ``input_step`` per code and (hidden
        layers) activations clipped at ``clip`` with ``L`` levels: the one description of the layer
        that the forward pass and :meth:`export` share.

        Cached until the parameters change (their version counters move on every optimizer step
        or ``load_state_dict``); in-place edits through ``.data`` (e.g. SB3's ``polyak_update``)
        bypass the counters, so whoever makes them calls :meth:`clear_quantization_cache`.
        """
        linear = self.linears[i]
        key = (linear.weight.data_ptr(), linear.weight._version, linear.bias._version, float(input_step), clip)
        cached = self._quantization_cache.get(i)
        if cached is not None and cached[0] == key:
            return cached[1]
        bits = self.target.layer_weight_bits(i, self.config.weight_bits)
        codes, w_scale = weight_codes(linear.weight, bits)
        acc_scale = w_scale.squeeze(1) * input_step
        acc_scale64 = acc_scale.double().cpu().numpy()
        b_codes = quantize_bias(bias_codes(linear.bias, acc_scale).cpu().numpy().astype(np.int64),
                               self.target.bias_bits, self.target.bias_limit)
        integer = IntegerLayer(weights=codes.cpu().numpy().astype(np.int64), bias=b_codes, scale=acc_scale64)
        if clip is not None:
            # the same float32 arithmetic as forward's step = clip / levels
            step = float(torch.tensor(clip, dtype=torch.float32) / self.config.activation_levels)
            if self.target.requantization == SCALE_SHIFT:
                integer.multiplier, integer.shift = requantization(acc_scale64, step, self.target.scale_bits)
                if self.config.activation_bits < (self.target.min_output_bits or 0):  # wider output, clipped
                    integer.acc_clip = accumulator_clip(integer.multiplier, integer.shift,
                                                        self.config.activation_levels)
            else:
                integer.offset, integer.step = threshold_step(acc_scale64, step, self.config.activation_bits,
                                                              self.target.step_limit)
        device = linear.weight.device

        def tensor(array):
            return None if array is None else torch.as_tensor(np.asarray(array, dtype=np.float64), device=device)

        integer_torch = IntegerLayer(
            weights=integer.weights, bias=integer.bias, scale=tensor(integer.scale), multiplier=tensor(integer.multiplier),
            shift=integer.shift, acc_clip=tensor(integer.acc_clip), offset=tensor(integer.offset),
            step=tensor(integer.step))
        bias_tensor = tensor(b_codes)
        quantized = QuantizedLinear(
            integer=integer, weight=codes * w_scale, bias=(bias_tensor * acc_scale.double()).float(),
            weight_codes=codes.double(), bias_codes=bias_tensor, integer_torch=integer_torch)
        self._quantization_cache[i] = (key, quantized)
        return quantized

    def clear_quantization_cache(self) -> None:
        self._quantization_cache.clear()

    # -- export -----------------------------------------------------------------------------------
    @torch.no_grad()
    def float_activation_max(self, observations) -> list[float]:
        """Largest ReLU output of each hidden layer of the float (unquantized) network on ``observations``."""
        obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32, device=self.obs_low.device)
        x = self._input_float(obs.reshape(-1, self.obs_dim))
        maxima = []
        for linear in self.linears[:-1]:
            x = torch.relu(linear(x))
            maxima.append(max(float(x.max()), MIN_CLIP))
        return maxima

    @torch.no_grad()
    def calibrate_activation_clips(self, observations) -> None:
        """Start each PACT clip at the float network's largest activation on ``observations``.

        A clip far above the activations wastes the few levels a 2- or 4-bit neuron has (and
        makes the SNN's spike counts sparse); QAT then keeps learning the clips.
        """
        for clip, value in zip(self.clips, self.float_activation_max(observations)):
            clip.fill_(value)

    def activation_clips(self, calibration_obs=None) -> list[float]:
        """Clip value per hidden layer: learned (QAT) or, for a float network, the calibration max."""
        if self.qat:
            return [float(c.detach().clamp_min(MIN_CLIP)) for c in self.clips]
        if calibration_obs is None:
            raise ValueError(
                "a float (qat=False) network needs calibration_obs for post-training quantization: "
                "pass a batch of typical observations (e.g. from the replay buffer)"
            )
        return self.float_activation_max(calibration_obs)

    @torch.no_grad()
    def export(self, calibration_obs=None) -> IntegerNetwork:
        """The integer network (numpy) of the target; post-training quantized if ``qat=False``."""
        clips = self.activation_clips(calibration_obs)
        step = self._input_step
        layers = []
        for i in range(len(self.linears)):
            clip = clips[i] if i < len(clips) else None
            # the forward's clip, as the float32 the forward's clamp_min returns
            clip = None if clip is None else float(torch.tensor(clip, dtype=torch.float32))
            layers.append(self.quantize_layer(i, step, clip).integer)
            if clip is not None:
                step = torch.tensor(clip, dtype=torch.float32, device=step.device) / self.config.activation_levels
        return IntegerNetwork(config=self.config, input=self.input_quantizer(), layers=layers, target=self.target.name)
