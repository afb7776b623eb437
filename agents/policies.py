"""Stable-Baselines3 policy whose Q-network is rivc's quantized network."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.dqn.policies import DQNPolicy

from rivc import QuantConfig
from rivc.agents.optim import FlatAdam
from rivc.chip import DEFAULT_TARGET
from rivc.conv import ConvSpec
from rivc.qnetwork import (DEFAULT_CONV_HIDDEN_SIZES, DEFAULT_HIDDEN_SIZES, INITIAL_ACTIVATION_CLIP,
                           QuantizedQNetwork)

#: CnnPolicy's default conv layers: 3x3 kernels, stride 2 (a 32x32 frame -> 4x4x32 = 512 features);
#: hardware-resident on both Akida targets' virtual devices up to 64x64 frames
DEFAULT_CONV_ARCH = (ConvSpec(16, 3, 2), ConvSpec(32, 3, 2), ConvSpec(32, 3, 2))


class QuantizedQPolicyNet(BasePolicy):
    """SB3's ``QNetwork`` role (``forward`` -> Q-values, ``_predict`` -> greedy action) for a
    :class:`~rivc.qnetwork.QuantizedQNetwork`."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        quant: dict[str, int],
        net_arch: list[int],
        qat: bool,
        activation_clip: float,
        obs_range: tuple | None,
        target: str,
        conv_arch: list | None = None,
        input_units: str = "observation",
        activation_steps: str = "layer",
        head: str = "q",
    ) -> None:
        super().__init__(observation_space, action_space, normalize_images=False)
        self.quant, self.net_arch, self.qat = quant, net_arch, qat
        self.activation_clip, self.obs_range, self.target = activation_clip, obs_range, target
        self.net = QuantizedQNetwork(
            observation_space, int(action_space.n), QuantConfig.from_dict(quant), hidden_sizes=net_arch,
            obs_range=obs_range, qat=qat, activation_clip=activation_clip, target=target, conv_layers=conv_arch or (),
            input_units=input_units, activation_steps=activation_steps, head=head,
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)  # uint8 frames stay uint8: the network reads pixels as they are

    def _predict(self, observation: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self(observation).argmax(dim=1).reshape(-1)


class RIVCPolicy(DQNPolicy):
    """DQN policy (online + target Q-network, optimizer) built from quantized Q-networks.

    policy_kwargs: ``net_arch`` (hidden sizes, default [64, 64]), ``activation_clip`` (initial
    PACT clip), ``obs_range`` ((low, high) for the input quantizer; default: the space's bounds,
    calibrated from replay data where they are infinite), ``input_units`` (the units the first layer's weights are
    trained in: ``"observation"``, default, or ``"normalised"``; ``rivc.qnetwork.QuantizedQNetwork``),
    ``activation_steps`` (``"layer"``, default: one activation step per hidden layer, or ``"unit"``: one per unit),
    ``head`` (``"q"``, default: a Q-value per row, or ``"dueling"``: a value row and an advantage row per action).
    The agent sets ``quant``, ``qat`` and ``target``.
    """

    default_conv_arch: tuple = ()

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule,
        net_arch: list[int] | None = None,
        quant: dict[str, int] | None = None,
        qat: bool = True,
        activation_clip: float = INITIAL_ACTIVATION_CLIP,
        obs_range: tuple | None = None,
        target: str = DEFAULT_TARGET,
        conv_arch: list | None = None,
        input_units: str = "observation",
        activation_steps: str = "layer",
        head: str = "q",
        optimizer_class: type[torch.optim.Optimizer] = FlatAdam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        conv_arch = self.default_conv_arch if conv_arch is None else conv_arch
        self.quant_args = {
            "quant": quant or QuantConfig().to_dict(), "qat": qat, "activation_clip": activation_clip,
            "obs_range": obs_range, "target": target, "conv_arch": [ConvSpec.parse(c).to_list() for c in conv_arch],
            "input_units": input_units, "activation_steps": activation_steps, "head": head,
        }
        super().__init__(
            observation_space, action_space, lr_schedule,
            net_arch=list(net_arch or (DEFAULT_CONV_HIDDEN_SIZES if conv_arch else DEFAULT_HIDDEN_SIZES)),
            normalize_images=False, optimizer_class=optimizer_class,
            # Adam's multi-tensor update where FlatAdam's does not apply (faster on a step's few small tensors;
            # docs/SPEED.md). Not the fused one: on the make-run recipe it learned far worse (5 seeds, final 29.3 against
            # 191.6; docs/zoo_notes.md)
            optimizer_kwargs={"foreach": True} if optimizer_kwargs is None and issubclass(optimizer_class, torch.optim.Adam)
            else optimizer_kwargs,
        )

    def make_q_net(self) -> QuantizedQPolicyNet:
        return QuantizedQPolicyNet(
            self.observation_space, self.action_space, net_arch=self.net_arch, **self.quant_args
        ).to(self.device)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.q_net_target.net.weights_written_in_place = True  # (SB3's target update writes through .data)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.pop("activation_fn", None)
        data.update(self.quant_args)
        return data


class RIVCCnnPolicy(RIVCPolicy):
    """:class:`RIVCPolicy` on camera frames (uint8, HWC or CHW): conv layers, then dense layers.

    policy_kwargs: ``conv_arch`` (``rivc.conv.ConvSpec`` or ``(filters, kernel, stride, pool)`` per
    layer; default ``DEFAULT_CONV_ARCH``), ``net_arch`` (dense hidden sizes after them, default [64]),
    ``activation_clip``. Every layer is one the target's chip runs (``rivc.chip``).
    """

    default_conv_arch = DEFAULT_CONV_ARCH
