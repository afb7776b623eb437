"""The RIVC agent: quantization-aware DQN with the gap-increasing update, converted to a spiking
policy after every update; the spiking policy collects the data.

Built on Stable-Baselines3's DQN (replay buffer, exploration schedule, target updates, logger,
callbacks, progress bar); ``train`` and ``predict`` are overridden so that the loop is

    SNN policy acts -> env.step -> replay buffer -> QAT update (gap-increasing target) -> convert -> ...
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from numbers import Real
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import VecTransposeImage, is_vecenv_wrapped
from threadpoolctl import threadpool_limits

from rivc import QuantConfig
from rivc.agents import persistence
from rivc.agents.config import (AUTO, DEFAULT_GAP_CLIP, DEFAULT_MAX_LEARNING_RATE, LEGACY_KEYS, CalibrationConfig,
                                 ConversionConfig, as_config)
from rivc.agents.optim import clip_gradient_norm
from rivc.agents.policies import RIVCCnnPolicy, RIVCPolicy
from rivc.agents.replay import FreshSampleReplayBuffer
from rivc.agents.variants import EXPLORATIONS, VARIANTS, Variant
from rivc.chip import DEFAULT_TARGET, get_target
from rivc.envs.wrappers import ActionBins
from rivc.integer_net import NON_FINITE_OBSERVATION, batch_shape, bounded_dimensions
from rivc.metrics import ConversionError, UnitShares, network_conversion_error, unit_shares
from rivc.neurochip import SpikingPolicy, make_backend
from rivc.qnetwork import check_image_space, observed_range, widened
from rivc.targets import OPERATORS, gap_increasing_target


MIN_CALIBRATION_SAMPLES = 100  # fewer warm-up observations give ranges that later states saturate
REWARD_SCALE_SAMPLES = 1_000  # reward_scale="auto" is measured on this many stored rewards
# transitions a train() call samples at once (whole batches, at least one) where the target network's values are exact,
# the same bits in any batch (QuantizedQNetwork.values_per_row): one pass of it makes their value targets
# (RIVC.td_targets), and the memory they hold stays small; elsewhere a batch at a time, as DQN
TARGET_TRANSITIONS = 8_192
# input_range="fit": an input's declared bounds are loose where the replay's 1-99 % of states span less than this share
# of them (its states then get fewer than 5 of the 8 input bits)
FIT_LOOSE_SHARE = 1 / 8


def check_env_spaces(env: gym.Env | Any, image: bool = False) -> None:
    """The spaces RIVC takes: Discrete actions; a flat Box (``MlpPolicy``) or uint8 frames (``CnnPolicy``)."""
    if not isinstance(env.action_space, spaces.Discrete):
        raise ValueError(
            f"RIVC needs a Discrete action space, got {env.action_space}: wrap a continuous-action env "
            "with rivc.envs.DiscretizeAction(env, bins=3) (mode='per_joint' for many joints; rivc train: --action-bins 3 "
            "or 3:per_joint)"
        )
    obs = env.observation_space
    if image:
        check_image_space(obs)
    elif not isinstance(obs, spaces.Box) or len(obs.shape) != 1:
        hint = ("it looks like camera frames: use RIVC('CnnPolicy', env)" if isinstance(obs, spaces.Box)
                and len(obs.shape) == 3 else "flatten it with gymnasium.wrappers.FlattenObservation")
        raise ValueError(f"MlpPolicy needs a flat Box observation space, got {obs}: {hint}")


@contextmanager
def matrix_threads(threads: int | None) -> Iterator[None]:
    """numpy's BLAS and torch's intra-op pool (its int8 and float products) on ``threads`` threads inside the block, as
    they were after it (``None``: left as they are). Beside another busy process on the same cores, a pool of more
    threads than are free waits at every product for a thread that is not running (docs/SPEED.md)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def transitions(*batches: ReplayBufferSamples) -> tuple[torch.Tensor, ...]:
    """``(observations, actions, rewards, next_observations, dones)`` of replay batches, concatenated (as
    ``RIVC.td_target`` reads them)."""
    if len(batches) == 1:
        b = batches[0]
        return b.observations, b.actions, b.rewards, b.next_observations, b.dones
    return tuple(torch.cat(parts) for parts in zip(*(transitions(b) for b in batches)))


class RIVC(DQN):
    """Robust Iterative Value Conversion.

    :param target: the chip whose arithmetic is trained and deployed (``rivc.chip.TARGETS``):
        ``"akida"`` (Akida 2.0, default), ``"akd1000"`` (AKD1000/AKD1500) or ``"rate"`` (rate-coded IF,
        time-stepped chips). A network the chip cannot hold on hardware is refused here.
    :param backend: where the spiking policy runs while training: ``"snntorch"`` (integrate-and-fire
        emulation of the target, bit-exact for the Akida targets) or ``"akida"`` (Akida's engine).
    :param quant: bit widths (``QuantConfig`` or its dict); default 4-bit weights/activations, 8-bit input.
    :param variant: ``"rivc"`` | ``"naive"`` | ``"qat"`` | ``"gap"`` | ``"fpnn"`` (docs/DESIGN.md, "Variants").
    :param alpha: gap-increasing strength in [0, 1); the action gap grows about ``1 / (1 - alpha)``.
    :param gap_clip: a lower bound ``l0 < 0`` on the gap term ``Q'(s, a) - m_beta Q'(s)``, in the scaled rewards'
        units (Munchausen-DQN clips its log-policy term at ``l0 = -1``); default -10: ten rewards of order one, which
        a healthy run's gaps rarely pass and a diverging one does (docs/DESIGN.md); ``None``: unbounded, as the
        paper's update.
    :param quantization_delay: environment steps at whose end QAT starts (QuaRL's quantization delay): until then the
        float network (the same weights, unquantized) is trained on the variant's target and acts; then the clips
        start at its activations' maxima and the SNN takes over (``snn_from_step``). 0 (default): the SNN acts from
        the end of warm-up, as the paper's loop.
    :param max_learning_rate: the largest learning rate of quantization-aware training: a higher ``learning_rate``
        (or a schedule's value) is capped while the network trains quantized, with a warning. 1e-3 (default): the
        rate RIVC's defaults were tuned at (why a cap: docs/zoo_notes.md). ``None``: the given rate as it is. Networks
        trained in float (the variants without QAT, the float phase of a quantization delay) are not capped.
    :param beta: inverse temperature of the soft maximum (and of Boltzmann exploration).
    :param reward_scale: the factor on the rewards in the value target. ``"auto"`` (default): ``1 / max(1, mean
        |r|)`` over the first ``REWARD_SCALE_SAMPLES`` rewards stored (a random policy's where the warm-up is as
        long), fixed then: ``beta``, the gap term and the Huber loss's unit are set in the Q-values' units, which grow
        with the rewards; larger rewards are brought to order one per step (as Munchausen-DQN's settings assume
        clipped rewards), smaller ones are left as they are (a factor of exactly 1: the update is the unscaled one,
        bit for bit). The Q-values (the SNN's outputs too) are then in the scaled units; the greedy action is the
        same function of them. Updates made before it is fixed (a warm-up shorter than the sample) have their head
        rescaled with it. A number: that factor, fixed (1.0: the rewards as they are).
    :param operator: ``"logsumexp"`` (Conservative Value Iteration, default) or ``"boltzmann"``.
    :param exploration: ``"epsilon"`` (SB3's schedule, on the SNN's Q-values) or ``"boltzmann"``
        (sample from ``softmax(beta * Q_snn)``).
    :param conversion: when to convert and how often to measure the conversion error
        (``rivc.agents.config.ConversionConfig`` or its dict; default: convert after every update, measure
        on every 10th conversion).
    :param calibration: input ranges and PACT clips from the warm-up data (``CalibrationConfig`` or its dict).
    :param blas_threads: threads of the matrix products (numpy's BLAS and torch's pool: the exact integer path's and
        the update's) while ``learn`` runs; one by default: the products are small, and beside another process on the
        same cores more threads only wait for each other. ``None`` leaves the process's settings.
    Other parameters are Stable-Baselines3 DQN's, with defaults that train CartPole-v1 in minutes.
    """

    policy_aliases = {"MlpPolicy": RIVCPolicy, "CnnPolicy": RIVCCnnPolicy}  # noqa: RUF012 (SB3 style)

    def __init__(
        self,
        policy: str | type[RIVCPolicy],
        env: gym.Env | str | None,
        target: str = DEFAULT_TARGET,
        backend: str = "snntorch",
        backend_kwargs: dict[str, Any] | None = None,
        quant: QuantConfig | dict[str, int] | None = None,
        variant: str = "rivc",
        alpha: float = 0.9,
        gap_clip: float | None = DEFAULT_GAP_CLIP,
        quantization_delay: int = 0,
        max_learning_rate: float | None = DEFAULT_MAX_LEARNING_RATE,
        beta: float = 10.0,
        reward_scale: float | str = AUTO,
        operator: str = "logsumexp",
        exploration: str = "epsilon",
        conversion: ConversionConfig | dict[str, Any] | None = None,
        calibration: CalibrationConfig | dict[str, Any] | None = None,
        blas_threads: int | None = 1,
        learning_rate: float = 1e-3,
        buffer_size: int = 50_000,
        learning_starts: int = 1_000,
        batch_size: int = 64,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int = 4,
        gradient_steps: int = 1,
        target_update_interval: int = 500,
        exploration_fraction: float = 0.2,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.02,
        max_grad_norm: float = 10.0,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: str = "cpu",
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        for key in set(kwargs) & set(LEGACY_KEYS):
            config, field = LEGACY_KEYS[key]
            raise TypeError(f"RIVC takes {key} as {config}={config.capitalize()}Config({field}=...) (or "
                            f"{config}=dict({field}=...)); see rivc.agents.config")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if gap_clip is not None and (isinstance(gap_clip, bool) or not gap_clip < 0):
            raise ValueError(f"gap_clip must be a number below 0 (Munchausen-DQN's l0 = -1) or None, got {gap_clip!r}")
        if isinstance(quantization_delay, bool) or not isinstance(quantization_delay, int) or quantization_delay < 0:
            raise ValueError(f"quantization_delay must be a number of steps >= 0, got {quantization_delay!r}")
        if quantization_delay and not (VARIANTS[variant].qat and VARIANTS[variant].snn_acts):
            raise ValueError(f"quantization_delay delays quantization-aware training; variant {variant!r} has none: "
                             "leave it 0")
        if max_learning_rate is not None and (isinstance(max_learning_rate, bool) or not isinstance(max_learning_rate, Real)
                                              or not 0 < max_learning_rate < math.inf):
            raise ValueError(f"max_learning_rate must be a finite number > 0 (or None: no cap), got {max_learning_rate!r}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if reward_scale != AUTO and (isinstance(reward_scale, bool) or not isinstance(reward_scale, Real)
                                     or not 0 < reward_scale < math.inf):
            raise ValueError(f"reward_scale must be a finite number > 0 or {AUTO!r}, got {reward_scale!r}")
        self.reward_scale_asked = reward_scale if reward_scale == AUTO else float(reward_scale)
        self.reward_scale: float | None = None if reward_scale == AUTO else float(reward_scale)  # None: not yet measured
        if operator not in OPERATORS:
            raise ValueError(f"unknown operator {operator!r}; use one of {', '.join(OPERATORS)}")
        if blas_threads is not None and (isinstance(blas_threads, bool) or not isinstance(blas_threads, int)
                                         or blas_threads < 1):
            raise ValueError(f"blas_threads must be an integer >= 1 (or None: the process's setting), got {blas_threads!r}")
        self.blas_threads = blas_threads
        if exploration not in EXPLORATIONS:
            raise ValueError(f"unknown exploration {exploration!r}; use one of {', '.join(EXPLORATIONS)}")
        if isinstance(env, str):
            env = gym.make(env)
        policy_class = self.policy_aliases.get(policy, policy) if isinstance(policy, str) else policy
        if isinstance(policy, str) and policy not in self.policy_aliases:
            raise ValueError(f"unknown policy {policy!r}; use one of {', '.join(self.policy_aliases)}")
        if env is not None:
            check_env_spaces(env, image=issubclass(policy_class, RIVCCnnPolicy))
        self.quant = quant if isinstance(quant, QuantConfig) else QuantConfig.from_dict(quant or {})
        self.target = get_target(target).name
        self.variant = variant
        self.alpha, self.beta, self.operator, self.exploration = float(alpha), float(beta), operator, exploration
        self.gap_clip = None if gap_clip is None else float(gap_clip)
        self.quantization_delay = quantization_delay
        self.max_learning_rate = None if max_learning_rate is None else float(max_learning_rate)
        given = learning_rate(1.0) if callable(learning_rate) else learning_rate
        if _init_setup_model and VARIANTS[variant].qat and max_learning_rate is not None and given > max_learning_rate:
            warnings.warn(f"RIVC trains its quantized network at learning_rate {max_learning_rate:g} (given {given:g}): "
                          "max_learning_rate caps it; pass max_learning_rate=None to train at the given rate", stacklevel=2)
        self.snn_from_step: int | None = None  # the step at which the SNN took over from the float network
        self._float_phase = quantization_delay > 0
        self.conversion = as_config(conversion, ConversionConfig)
        calibration = as_config(calibration, CalibrationConfig)
        if calibration.clips is None:  # conv nets start with tiny activations that grow as they learn
            calibration = replace(calibration, clips=not issubclass(policy_class, RIVCCnnPolicy))
        if calibration.clip_gradient != "pact" and not VARIANTS[variant].qat:
            raise ValueError(f"CalibrationConfig.clip_gradient learns the activation clips of quantization-aware training; "
                             f"variant {variant!r} trains a float network: leave clip_gradient 'pact'")
        if calibration.tracks_clips and not VARIANTS[variant].qat:
            raise ValueError(f"CalibrationConfig.clip_decay moves the activation clips of quantization-aware training; "
                             f"variant {variant!r} trains a float network: leave clip_decay None")
        self.calibration = calibration
        self.backend_name = backend if isinstance(backend, str) else getattr(backend, "name", type(backend).__name__)
        self.backend_kwargs = dict(backend_kwargs or {})
        self.backend = make_backend(backend, **self.backend_kwargs)  # fails early on a bad name/option
        if get_target(self.target).exact and getattr(self.backend, "timesteps", None) is not None:
            raise ValueError(f"target {self.target!r} is exact: each layer's neurons fire its code in T = L steps (its "
                             "largest code); backend_kwargs timesteps applies only to target='rate'")
        if self.backend_name == "akida" and get_target(self.target).ip_version is None:
            raise ValueError(f"the akida backend runs the Akida targets ('akida', 'akd1000'), not target={self.target!r}; "
                             "train the rate-coded target on backend='snntorch'")
        self.spiking_policy: SpikingPolicy | None = None
        # the task a loaded model records (its env's id, its actions' bins); a model saved with an env reads its spec
        self.env_id: str | None = None
        self.action_bins: ActionBins | None = None
        self._calibrated = False
        self.num_conversions = 0
        self.input_range_moves = 0  # CalibrationConfig(input_range="track"): how often the input range moved
        self._range_checked_at = 0  # the step of its last check
        self.converted_at_update: int | None = None  # the update count at the last conversion
        policy_kwargs = dict(policy_kwargs or {})
        policy_kwargs.update(quant=self.quant.to_dict(), qat=VARIANTS[variant].qat, target=self.target)
        super().__init__(
            policy, env, learning_rate=learning_rate, buffer_size=buffer_size,
            learning_starts=max(learning_starts, calibration.min_samples),  # (the ranges need that many states)
            batch_size=batch_size, tau=tau, gamma=gamma, train_freq=train_freq, gradient_steps=gradient_steps,
            target_update_interval=target_update_interval, exploration_fraction=exploration_fraction,
            exploration_initial_eps=exploration_initial_eps, exploration_final_eps=exploration_final_eps,
            max_grad_norm=max_grad_norm, tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs,
            verbose=verbose, seed=seed, device=device, _init_setup_model=_init_setup_model, **kwargs,
        )

    @staticmethod
    def _wrap_env(env, verbose: int = 0, monitor_wrapper: bool = True):
        """SB3's wrapping, without the channel transposition it adds for frames: the network reads them
        in the env's own layout (HWC or CHW), as the deployed policy will get them."""
        transposed = hasattr(env, "num_envs") and is_vecenv_wrapped(env, VecTransposeImage)
        wrapped = DQN._wrap_env(env, verbose, monitor_wrapper)
        return wrapped.venv if isinstance(wrapped, VecTransposeImage) and not transposed else wrapped

    def _setup_model(self) -> None:
        """SB3's set-up, then the chip check: a network the target cannot hold on hardware is refused
        now (akida's mapper, where the package is installed), not at export. A network whose input
        range is known converts at once; one with unbounded inputs at the end of warm-up."""
        # SB3's ReplayBuffer, its samples not copied twice (n-step returns: SB3's NStepReplayBuffer)
        if self.replay_buffer_class is None and self.n_steps == 1 and isinstance(self.observation_space, spaces.Box):
            self.replay_buffer_class = FreshSampleReplayBuffer
        super()._setup_model()
        self._sample_rng = np.random.default_rng(self.seed)  # replay samples for measuring, apart from exploration
        # the declared space's finite bounds (-inf/inf where unbounded): a tracked range's margin stops at them; where
        # they are the input range, states that leave them are counted (a range from the data clips at the data's)
        self._declared_bounds = None
        if not self.q_network.is_image:
            space = self.observation_space
            bounded = bounded_dimensions(space.low, space.high)
            low, high = np.where(bounded, space.low, -np.inf), np.where(bounded, space.high, np.inf)
            self._declared_bounds = (low.reshape(-1).astype(np.float64), high.reshape(-1).astype(np.float64))
        self._space_bounds = self._declared_bounds if self.calibration.input_range in ("space", "fit") else None
        self._outside, self._observed, self._warned_outside = np.zeros(self.q_network.obs_dim, np.int64), 0, False
        self._fitted_inputs: np.ndarray | None = None  # input_range="fit": the inputs whose range is tracked
        chip = get_target(self.target)
        for net in (self.q_net.net, self.q_net_target.net):
            net.clip_gradient = self.calibration.clip_gradient
        if self.calibration.tracks_clips:  # the clips follow the activations: not learned
            self.q_net.net.tracked_statistic = self.calibration.clip_statistic
            for net in (self.q_net.net, self.q_net_target.net):
                for clip in net.clips:
                    clip.requires_grad_(False)
        if chip.device is not None:
            from rivc.neurochip.akida_backend import check_hardware_fit

            check_hardware_fit(self.q_network.config, self.q_network.sizes, chip, self.q_network.conv_geometry)
        for net in (self.q_net.net, self.q_net_target.net):
            net.qat = self.variant_spec.qat and not self._float_phase  # (a model saved inside the delay loads in it)
        if self.snn_acting and not self.q_network.needs_calibration and self.variant_spec.qat:
            self.convert()

    def _update_learning_rate(self, optimizers: list[torch.optim.Optimizer] | torch.optim.Optimizer) -> None:
        """SB3's schedule, capped at ``max_learning_rate`` while the network trains quantized (logged as used)."""
        rate = self.lr_schedule(self._current_progress_remaining)
        if self.max_learning_rate is not None and self.q_network.qat:
            rate = min(rate, self.max_learning_rate)
        self.logger.record("train/learning_rate", rate)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            update_learning_rate(optimizer, rate)

    # -- networks -------------------------------------------------------------------------------
    @property
    def variant_spec(self) -> Variant:
        return VARIANTS[self.variant]

    @property
    def target_alpha_operator(self) -> tuple[float, str]:
        """The gap term's strength and the soft maximum of the variant's value target: RIVC's, or DQN's (0, max)."""
        return (self.alpha, self.operator) if self.variant_spec.gap_increasing else (0.0, "max")

    @property
    def snn_acting(self) -> bool:
        """Whether the converted SNN acts (else the float network): the variant's rule, after the quantization delay."""
        return self.variant_spec.snn_acts and not self._float_phase

    def _end_quantization_delay(self) -> None:
        """QAT starts: each clip at the float network's largest activation on the replay data (as at the end of a
        warm-up), and the SNN takes over from this step."""
        observations = self._replay_observations()
        for net in (self.q_net.net, self.q_net_target.net):
            net.qat = True
            if self.calibration.clips and observations is not None:
                net.calibrate_activation_clips(observations)
        self._float_phase = False
        self.snn_from_step = self.num_timesteps
        self.convert(check=True)
        if self.verbose >= 1:
            print(f"quantization delay over at step {self.num_timesteps}: QAT starts, the SNN acts")

    @property
    def q_network(self):
        """The trained ``rivc.QuantizedQNetwork`` (float for the naive/gap/fpnn variants)."""
        return self.q_net.net

    def _replay_observations(self, limit: int | None = None) -> np.ndarray | None:
        """Replay observations, a random sample of ``limit`` of them (drawn from the agent's own
        generator: measuring never changes the exploration's random stream)."""
        buffer = self.replay_buffer
        if buffer is None or buffer.size() == 0:
            return None
        obs = buffer.observations[:buffer.size()].reshape(-1, *self.q_network.obs_shape)
        if limit is not None and len(obs) > limit:
            obs = obs[self._sample_rng.integers(0, len(obs), size=limit)]
        return obs

    def _ensure_calibrated(self) -> None:
        """Once, from the replay data (the warm-up's random rollouts): fix the input range of
        unbounded observation dimensions, and start the PACT clips at the activations' range."""
        if self._calibrated:
            return
        obs = self._replay_observations()
        if obs is None:
            if self.q_network.needs_calibration:
                raise RuntimeError(
                    "the observation space has unbounded dimensions and no data has been collected to "
                    "calibrate them: call learn() first or pass policy_kwargs=dict(obs_range=(low, high))"
                )
            return  # acting before any data: the space's bounds and the initial clips serve
        all_dims = self.calibration.input_range == "data"
        fixed_range = all_dims or (not self.tracks_input_range and self.q_network.needs_calibration)
        calibrated = [name for name, done in (("input range", fixed_range),
                                              ("activation clips", self.q_network.qat and self.calibration.clips)) if done]
        if calibrated and len(obs) < MIN_CALIBRATION_SAMPLES:
            fix = (f"set learning_starts >= {MIN_CALIBRATION_SAMPLES}" if self.learning_starts < MIN_CALIBRATION_SAMPLES
                   else "the run ended inside the warm-up: train for longer")
            warnings.warn(f"RIVC calibrates its {' and '.join(calibrated)} on {len(obs)} observation(s) "
                          f"(learning_starts={self.learning_starts}): ranges from so few states saturate on later "
                          f"ones; {fix}")
        tracked = self._tracked_range(obs)[2:] if self.tracks_input_range else None
        for net in (self.q_net.net, self.q_net_target.net):
            if tracked is not None:
                net.move_input_range(*tracked)
            elif net.needs_calibration or all_dims:
                net.calibrate_input_range(obs, margin=self.calibration.margin, all_dims=all_dims)
            if net.qat and self.calibration.clips:
                net.calibrate_activation_clips(obs)
        self._calibrated = True
        self._range_checked_at = self.num_timesteps

    @property
    def tracks_input_range(self) -> bool:
        """Whether the input range follows the data: ``input_range="track"`` where the range may move."""
        return self.calibration.input_range == "track" and self._input_range_may_move

    def _tracked_range(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(spread_low, spread_high, low, high)``: where ``input_range="track"`` finds these states (their quantile
        range: the data, not the declared space, as some environments leave their space), and the range asked of
        them: the spread widened by the margin, but not past the space's finite bounds where the states stay inside
        them (codes beyond a bound would stand for states the environment never returns: Acrobot's cosines)."""
        spread_low, spread_high = observed_range(obs, self.q_network.obs_dim, 0.0, self.calibration.quantile)
        low, high = widened(spread_low, spread_high, self.calibration.margin)
        bound_low, bound_high = self._declared_bounds
        return (spread_low, spread_high, np.minimum(np.maximum(low, bound_low), spread_low),
                np.maximum(np.minimum(high, bound_high), spread_high))

    @property
    def fits_input_range(self) -> bool:
        """Whether ``input_range="fit"`` may track inputs with loose bounds, where the range may move."""
        return self.calibration.input_range == "fit" and self._input_range_may_move

    @property
    def _input_range_may_move(self) -> bool:
        """Vector observations and no range given (``policy_kwargs=dict(obs_range=...)`` is kept as given)."""
        return not self.q_network.is_image and self.policy_kwargs.get("obs_range") is None

    def _fit_inputs(self, spread_low: np.ndarray, spread_high: np.ndarray) -> np.ndarray:
        """``input_range="fit"``: the inputs tracked from now on, those found with loose declared bounds (once
        tracked, always: a range does not switch back and forth)."""
        bound_low, bound_high = self._declared_bounds
        spread, bounds = spread_high - spread_low, bound_high - bound_low
        with np.errstate(invalid="ignore"):  # (unbounded inputs: inf - inf)
            # an input that has not varied yet (a flag never set) says nothing of its bounds: not loose
            loose = np.isfinite(bounds) & (spread > 0) & (spread < FIT_LOOSE_SHARE * bounds)
        self._fitted_inputs = loose if self._fitted_inputs is None else self._fitted_inputs | loose
        return self._fitted_inputs

    def _track_input_range(self) -> None:
        """``input_range="track"`` (``"fit"``: on the inputs it tracks): move the input range to the replay data's
        where they reach its ends or fill less than half of it (a bit of input resolution lost); the first layer
        keeps the function (a normalised one is rescaled, and Adam's moments of its weights follow their scale).
        Logs the share of replay states that the range clips (``calibration/input_clipped_share``)."""
        due = min(2 * self._range_checked_at, self._range_checked_at + self.calibration.track_every)
        if not (self.tracks_input_range or self.fits_input_range) or self.num_timesteps < max(due, 1):
            return
        self._range_checked_at = self.num_timesteps
        obs = self._replay_observations()
        if self.fits_input_range and (1.0 - self._current_progress_remaining < self.exploration_fraction
                                      or len(obs) < MIN_CALIBRATION_SAMPLES):
            return  # judged once exploration is at its final rate: the warm-up's random states alone mislead
        spread_low, spread_high, low, high = self._tracked_range(obs)
        net = self.q_network
        current_low, current_high = net.obs_low.cpu().numpy(), net.obs_high.cpu().numpy()
        if self.fits_input_range:  # only the inputs with loose bounds follow the data; the others keep their range
            fitted = self._fit_inputs(spread_low, spread_high)
            spread_low, low = np.where(fitted, spread_low, current_low), np.where(fitted, low, current_low)
            spread_high, high = np.where(fitted, spread_high, current_high), np.where(fitted, high, current_high)
        reached = np.any(spread_low < current_low) or np.any(spread_high > current_high)
        loose = np.any(current_high - current_low > 2 * (high - low))
        if reached or loose:
            self._move_input_range(low, high)
            current_low, current_high = net.obs_low.cpu().numpy(), net.obs_high.cpu().numpy()
        # the replay states that the range clips (in any dimension): the tails it leaves out
        flat = obs.reshape(len(obs), -1)
        self.logger.record("calibration/input_clipped_share",
                           float(np.mean(np.any((flat < current_low) | (flat > current_high), axis=1))))

    def _move_input_range(self, low: np.ndarray, high: np.ndarray) -> None:
        """Both networks' input range to ``[low, high]``, Adam's moments of the first layer's weights with them."""
        net = self.q_network
        factor = net.move_input_range(low, high)
        self.q_net_target.net.move_input_range(low, high)
        state = self.policy.optimizer.state.get(net.layers[0].weight, {})
        if "exp_avg" in state:
            scale = torch.as_tensor(factor, dtype=state["exp_avg"].dtype, device=state["exp_avg"].device)
            state["exp_avg"].div_(scale)
            state["exp_avg_sq"].div_(scale * scale)
        self.input_range_moves += 1
        self.logger.record("calibration/input_range_moves", self.input_range_moves)

    def convert(self, check: bool = False) -> SpikingPolicy:
        """Convert the current Q-network into a spiking policy on the backend (and use it to act); ``check``:
        validate the integer network (the first conversion always does; later ones are the same code on new
        numbers)."""
        calibration = None if self.variant_spec.qat else self._replay_observations(limit=1024)
        network = self.q_network.export(calibration_obs=calibration, check=check or self.num_conversions == 0)
        self.spiking_policy = self.backend.convert(network)
        self.num_conversions += 1
        self.converted_at_update = self._n_updates
        return self.spiking_policy

    def end_warmup(self) -> None:
        """At the end of warm-up (the first ``train``): calibrate on the warm-up data, and convert."""
        self._ensure_calibrated()
        if self.snn_acting:
            self.convert()

    def _setup_learn(self, total_timesteps: int, callback=None, reset_num_timesteps: bool = True, *args, **kwargs):
        """SB3's; a run that counts its steps anew (a loaded model's ``learn``) checks its input range anew too."""
        if reset_num_timesteps:
            self._range_checked_at = 0
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, *args, **kwargs)

    def learn(self, total_timesteps: int, *args: Any, **kwargs: Any) -> RIVC:
        """SB3's ``learn``; a run shorter than the warm-up still ends with a converted policy."""
        if self.verbose >= 1 and self.snn_acting:
            every, measured = self.conversion.every, self.conversion.eval_every
            print(f"RIVC converts after {'every update' if every == 1 else f'one update in {every}'}; the conversion "
                  f"error is measured on {'every conversion' if measured == 1 else f'one conversion in {measured}'} "
                  "(ConversionConfig.eval_every)")
        with matrix_threads(self.blas_threads):
            super().learn(total_timesteps, *args, **kwargs)
            self._warn_observations_outside()
            if not self._calibrated and self._replay_observations() is not None:
                self.end_warmup()
            elif self.snn_acting and self._calibrated and self.converted_at_update != self._n_updates:
                self.convert()  # ConversionConfig(every > 1): the policy learn() leaves is the latest network's
        return self

    def _store_transition(self, replay_buffer, buffer_action, new_obs, reward, dones, infos) -> None:
        """SB3's, refusing a non-finite reward (it would turn the weights to NaN) and noting observations outside
        the declared space (the input quantizer clips them)."""
        if not np.all(np.isfinite(reward)):
            raise ValueError(f"the environment returned the reward {np.asarray(reward).tolist()} at step "
                             f"{self.num_timesteps}: rewards must be finite; fix the environment or wrap its reward "
                             "(gymnasium.wrappers.TransformReward)")
        if self._space_bounds is not None and isinstance(new_obs, np.ndarray):
            low, high = self._space_bounds
            flat = new_obs.reshape(len(new_obs), -1)
            self._outside += ((flat < low) | (flat > high)).sum(axis=0)
            self._observed += len(flat)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    def _warn_observations_outside(self) -> None:
        """Once: where observations left the declared space (the input range), with the share per dimension. An
        input that ``"fit"`` tracks is left out: its states were clipped at the bounds only until it was tracked,
        and are clipped at its tracked range since (``calibration/input_clipped_share``)."""
        if self._observed == 0 or self._warned_outside:
            return
        dims = np.flatnonzero(self._outside)
        if self._fitted_inputs is not None:
            dims = dims[~self._fitted_inputs[dims]]
        if not len(dims):
            return
        self._warned_outside = True
        shares = ", ".join(f"{d}: {100 * self._outside[d] / self._observed:.1f} %" for d in dims[:8])
        warnings.warn(f"observations left the environment's declared observation space in dimension(s) {shares} of "
                      f"{self._observed} states; the input quantizer clips them to the space's bounds. Declare the "
                      "range the observations take (policy_kwargs=dict(obs_range=(low, high))), or take it from the "
                      "data: calibration=CalibrationConfig(input_range='data')")

    def _sample_action(self, learning_starts: int, action_noise=None, n_envs: int = 1):
        """SB3's action sampling; the first action after warm-up comes from the converted policy."""
        if not self._calibrated and self.num_timesteps >= learning_starts:
            self.end_warmup()
        return super()._sample_action(learning_starts, action_noise, n_envs)

    def conversion_error(self, observations: np.ndarray | None = None) -> ConversionError | None:
        """Conversion error of the acting spiking policy against the trained network, on
        ``observations`` (default: a sample of ``conversion.eval_size`` replay observations)."""
        obs = self._replay_observations(limit=self.conversion.eval_size) if observations is None else observations
        if obs is None or self.spiking_policy is None:
            return None
        return network_conversion_error(self.q_net, self.spiking_policy, obs)

    def unit_shares(self, observations: np.ndarray | None = None) -> UnitShares | None:
        """Dead and saturated hidden units of the acting policy's integer network on ``observations`` (default:
        a replay sample); ``None`` before the first conversion or without replay data."""
        obs = self._replay_observations(limit=self.conversion.eval_size) if observations is None else observations
        if obs is None or self.spiking_policy is None:
            return None
        return unit_shares(self.spiking_policy.network, obs)

    # -- the update -----------------------------------------------------------------------------
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """QAT gradient steps on the gap-increasing target, then one conversion: the SNN acts only between
        ``train`` calls, so converting between gradient steps would change nothing it does."""
        if not self._calibrated:
            self.end_warmup()
        if self._float_phase and self.num_timesteps >= self.quantization_delay:
            self._end_quantization_delay()
        self._track_input_range()
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self._decided_reward_scale()
        optimizer, network = self.policy.optimizer, self.q_network
        parameters = [p for group in optimizer.param_groups for p in group["params"]]  # (the q_net's)
        losses, updates_before = [], self._n_updates
        # batches sampled at once, their targets from one pass (where the target network's values are per row)
        group = max(1, TARGET_TRANSITIONS // batch_size) if self.q_net_target.net.values_per_row else 1
        for first in range(0, gradient_steps, group):
            batches = [self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
                       for _ in range(min(group, gradient_steps - first))]
            for data, td_target in zip(batches, self.td_targets(batches)):
                # Huber loss of Q(s, a) against the target, its gradients in .grad (an MLP's without autograd's graph)
                losses.append(network.huber_loss_backward(data.observations, data.actions, td_target))
                clip_gradient_norm(parameters, self.max_grad_norm)
                optimizer.step()
                if self.calibration.tracks_clips and network.qat:  # (a quantization delay's float phase: none)
                    network.track_activation_clips(self.calibration.clip_decay)
                self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/gradient_steps", gradient_steps, exclude="tensorboard")
        self.logger.record("train/loss", losses[0] if len(losses) == 1 else float(np.mean(losses)))
        if self.quantization_delay:
            self.logger.record("train/snn_acting", int(self.snn_acting))
        every = self.conversion.every  # convert when this cycle's updates reached a multiple of `every`
        if self.snn_acting and self._n_updates // every > updates_before // every:
            self._convert_and_measure()

    def td_targets(self, batches: list[ReplayBufferSamples]) -> list[torch.Tensor]:
        """The value targets of one ``train`` call's replay batches. SB3 updates the target network between calls
        (``_on_step``), so where its values are the same bits in any batch (``values_per_row``: the exact integer
        path), one pass over every batch's rows; else one pass per batch, as DQN."""
        if len(batches) <= 1 or not self.q_net_target.net.values_per_row:
            return [self.td_target(*transitions(b), discounts=b.discounts) for b in batches]
        discounts = None if batches[0].discounts is None else torch.cat([b.discounts for b in batches])
        return list(self.td_target(*transitions(*batches), discounts=discounts).split([len(b.actions) for b in batches]))

    def td_target(self, observations: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                  next_observations: torch.Tensor, dones: torch.Tensor,
                  discounts: torch.Tensor | None = None) -> torch.Tensor:
        """The variant's value target ``[B]`` for a batch of transitions (as the update and ``rivc precision`` read
        it), from one pass of the target network over s' (and s, where the variant has a gap term). ``discounts``:
        each transition's discount on the value at s' (n-step returns, ``n_steps > 1``: SB3's ``NStepReplayBuffer``
        samples ``gamma**k`` with the rewards of ``k`` steps); ``None``: ``gamma``."""
        q = self.q_net_target.net.values(self.target_rows(observations, next_observations))
        return torch.from_numpy(self.target_of_values(q, actions, rewards, dones, discounts)).to(observations.device)

    def target_rows(self, observations: torch.Tensor, next_observations: torch.Tensor) -> torch.Tensor:
        """The states whose target-network values the target reads: s', then s where the variant has a gap term."""
        return torch.cat([next_observations, observations]) if self.target_alpha_operator[0] else next_observations

    def target_of_values(self, q: np.ndarray, actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
                         discounts: torch.Tensor | None = None) -> np.ndarray:
        """The value target (float32 ``[B]``, numpy) from the target network's Q-values ``q`` at s' (``[B, A]``; with a
        gap term ``[2B, A]``, at s' then s): RIVC's gap-increasing target, or DQN's where the variant has none; the
        rewards scaled by ``reward_scale``."""
        alpha, operator = self.target_alpha_operator
        batch = len(actions)
        scale = 1.0 if self.reward_scale is None else self.reward_scale
        rewards = rewards.cpu().numpy()
        target = gap_increasing_target(
            q_target_next=q[:batch], q_target_current=q[batch:] if alpha else None, actions=actions.cpu().numpy(),
            rewards=rewards if scale == 1.0 else rewards * scale, dones=dones.cpu().numpy(),
            gamma=self.gamma if discounts is None else discounts.cpu().numpy().reshape(-1),
            alpha=alpha, beta=self.beta, operator=operator, gap_clip=self.gap_clip)
        return np.ascontiguousarray(target, dtype=np.float32)

    def _decided_reward_scale(self) -> float:
        """The factor on the rewards (``reward_scale``): "auto" is measured once the replay holds
        ``REWARD_SCALE_SAMPLES`` rewards (the first ones; every one where the buffer is full sooner), 1.0 until then."""
        if self.reward_scale is None:
            buffer = self.replay_buffer
            rewards = buffer.rewards[:buffer.size()].reshape(-1)  # (time, env)
            if not (buffer.full or len(rewards) >= REWARD_SCALE_SAMPLES):
                return 1.0
            mean = float(np.mean(np.abs(rewards[:REWARD_SCALE_SAMPLES], dtype=np.float64)))
            self.reward_scale = 1.0 / max(1.0, mean)
            if self.reward_scale != 1.0 and self._n_updates:  # Q-values learned unscaled: into the new units
                self._scale_head(self.reward_scale)
            if self.verbose >= 1:
                print(f"reward_scale auto: mean |r| {mean:.3g} over {min(len(rewards), REWARD_SCALE_SAMPLES)} rewards, "
                      f"rewards scaled by {self.reward_scale:.4g} in the value target")
        self.logger.record("train/reward_scale", self.reward_scale, exclude="tensorboard")
        return self.reward_scale

    def _scale_head(self, factor: float) -> None:
        """Both networks' Q-values times ``factor``, and the optimiser's moments of the head's parameters with them
        (Adam's first moment scales with the gradients, its second with their square)."""
        for net in (self.q_network, self.q_net_target.net):
            net.scale_head(factor)
        head = self.q_network.linears[-1]
        for parameter in (head.weight, head.bias):
            state = self.policy.optimizer.state.get(parameter, {})
            for key, power in (("exp_avg", 1), ("momentum_buffer", 1), ("exp_avg_sq", 2), ("max_exp_avg_sq", 2),
                               ("square_avg", 2)):
                if isinstance(state.get(key), torch.Tensor):
                    state[key].mul_(factor**power)

    def _convert_and_measure(self) -> None:
        """One conversion of the updated network (timed, counted), and on every ``eval_every``-th conversion
        its conversion error on replay states."""
        start = time.perf_counter()
        self.convert()
        self.logger.record("conversion/ms_per_conversion", 1e3 * (time.perf_counter() - start))
        self.logger.record("conversion/count", self.num_conversions, exclude="tensorboard")
        self.logger.record("conversion/error_measured_every", self.conversion.eval_every, exclude="tensorboard")
        if self.num_conversions % self.conversion.eval_every == 0:
            obs = self._replay_observations(limit=self.conversion.eval_size)  # one sample for both measures
            if obs is not None:
                for measured in (self.conversion_error(obs), self.unit_shares(obs)):
                    for key, value in measured.as_log().items():
                        self.logger.record(key, value)

    # -- acting -----------------------------------------------------------------------------------
    def q_values(self, observation: np.ndarray) -> np.ndarray:
        """Q-values ``[B, A]`` of the acting policy: the SNN (float network for ``fpnn``)."""
        obs = np.asarray(observation).reshape(-1, *self.q_network.obs_shape)  # the env's dtype, as when deployed
        if not self.snn_acting:
            self._ensure_calibrated()
            with torch.no_grad():
                return self.q_net(torch.as_tensor(obs, dtype=torch.float32, device=self.device)).cpu().numpy()
        if self.spiking_policy is None:
            raise RuntimeError(
                "no spiking policy yet: the network converts at the end of warm-up (learn()), or at once "
                "when the observation space is bounded; call convert() after setting an input range")
        return self.spiking_policy.q_values(obs)

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Actions of the spiking policy (SB3 signature): greedy when ``deterministic``, else
        epsilon-greedy or Boltzmann on the SNN's Q-values. Before the first conversion (a warm-up whose
        observations have unbounded dimensions) the agent's policy is the warm-up's: uniformly random actions,
        so that an evaluation callback during warm-up measures what acts."""
        obs = np.asarray(observation)
        batch = obs.reshape(batch_shape(obs.shape, self.observation_space.shape))
        vectorized = batch.ndim == obs.ndim
        in_warmup = self.spiking_policy is None and not self._calibrated and self.snn_acting
        if in_warmup and batch.dtype.kind == "f" and not np.isfinite(batch).all():
            raise ValueError(NON_FINITE_OBSERVATION)
        if in_warmup or (not deterministic and self.exploration == "epsilon" and np.random.rand() < self.exploration_rate):
            actions = np.array([self.action_space.sample() for _ in range(len(batch))])
        else:
            q = self.q_values(batch)
            if deterministic or self.exploration == "epsilon":
                actions = q.argmax(axis=1)
            else:
                logits = self.beta * (q - q.max(axis=1, keepdims=True))
                probs = np.exp(logits)
                probs /= probs.sum(axis=1, keepdims=True)
                actions = np.array([np.random.choice(len(p), p=p) for p in probs])
        return (actions if vectorized else actions[0]), state

    # -- persistence (rivc.agents.persistence) ---------------------------------------------------
    def set_parameters(self, load_path_or_dict: str | dict[str, Any], exact_match: bool = True,
                       device: str | torch.device = "auto") -> None:
        """SB3's; the parameters carry the input ranges and clips, so the warm-up has nothing left to calibrate,
        and the new weights are converted at once: the policy that acts is theirs."""
        super().set_parameters(load_path_or_dict, exact_match=exact_match, device=device)
        if not self.q_network.needs_calibration:
            self._calibrated = True
            if self.snn_acting:
                self.convert()

    def save_replay_buffer(self, path: str | os.PathLike) -> Path:
        """The replay buffer as ``.npz`` arrays and a JSON header (never pickled), written atomically."""
        return persistence.save_replay_buffer(self, path)

    def load_replay_buffer(self, path: str | os.PathLike, truncate_last_traj: bool = True,
                           allow_pickle: bool = False) -> None:
        """Load :meth:`save_replay_buffer`'s file into this model's buffer. Stable-Baselines3's pickled buffers run
        code when loaded: they are read only with ``allow_pickle=True``, for a file you trust."""
        if persistence.load_replay_buffer(self, path):
            return
        if not allow_pickle:
            raise ValueError(f"{path} is not a rivc replay buffer (.npz); a Stable-Baselines3 replay buffer is a pickle, "
                             "which runs code when loaded: pass allow_pickle=True only for a file you trust")
        super().load_replay_buffer(path, truncate_last_traj)

    def save(self, path: str | os.PathLike, exclude=None, include=None) -> Path:
        """Write ``path`` (a zip: JSON metadata, torch weights, the deployable integer network), atomically."""
        if exclude or include:
            raise ValueError("RIVC.save writes the whole model (settings, weights and the deployable integer network, "
                             "each needed to load it): exclude/include are not supported")
        return persistence.save(self, path)

    @classmethod
    def load(  # noqa: D417
        cls, path: str | os.PathLike, env: gym.Env | str | None = None, device: str = "cpu",
        custom_objects: dict[str, Any] | None = None, print_system_info: bool = False, force_reset: bool = True,
        **kwargs: Any,
    ) -> RIVC:
        """Load a model saved by :meth:`save`; never unpickles (JSON + ``torch.load(weights_only=True)``).

        ``env`` must have the saved observation space; without it the model can still predict. As
        Stable-Baselines3's ``load``: ``custom_objects`` replace saved values (settings such as ``learning_rate``,
        or attributes such as ``lr_schedule`` and ``exploration_schedule``, as the RL Zoo's scripts pass them),
        ``print_system_info`` prints this system's versions beside the saved ``rivc`` version, ``force_reset``
        resets the env before the next ``learn``.
        """
        if print_system_info:
            from stable_baselines3.common.utils import get_system_info

            print("== CURRENT SYSTEM INFO ==")
            get_system_info()
        custom = dict(custom_objects or {})
        settings = {key: custom.pop(key) for key in list(custom) if key in persistence.HYPERPARAMETERS}
        model = persistence.load(cls, path, env=env, device=device, force_reset=force_reset, **settings, **kwargs)
        if print_system_info:
            print(f"== SAVED MODEL ==\nrivc {model.saved_rivc_version}")
        model.__dict__.update(custom)
        return model
