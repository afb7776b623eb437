"""Convert the float Q-networks users already have into spiking policies for a chip target.

A Stable-Baselines3 ``DQN`` (a saved ``.zip``, or the model itself) or a ``torch.nn.Sequential`` of
``Linear``/``ReLU`` layers is quantized post-training for the target (its activation ranges and
unbounded input ranges calibrated on states the float policy visits), converted, and compared with
the float policy: greedy agreement on visited states and the return of both. ``finetune`` then
trains it with RIVC (QAT with the target's arithmetic, gap-increasing update, SNN acting) to win
back what quantization lost.

SB3 zips are read without unpickling: the policy class is checked in the zip's JSON and the weights
are loaded with ``torch.load(weights_only=True)``; the observation and action spaces come from the env.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rivc import QuantConfig, QuantizedQNetwork
from rivc.agents.rollout import rollout
from rivc.chip import DEFAULT_TARGET
from rivc.integer_net import CorruptFileError, IntegerNetwork
from rivc.metrics import ConversionError, conversion_error
from rivc.neurochip import SpikingPolicy, make_backend
from rivc.neurochip.deploy import check_env

SUPPORTED = ("a Stable-Baselines3 DQN with MlpPolicy (a .zip or the model) or a torch.nn.Sequential of "
             "Linear and ReLU layers ending in Linear")


def _check_layers(modules: list[nn.Module], what: str) -> list[nn.Linear]:
    """The Linear layers of ``Linear, ReLU, ..., Linear``; anything else is refused, naming it."""
    for i, module in enumerate(modules):
        expected = nn.Linear if i % 2 == 0 else nn.ReLU
        if not isinstance(module, expected):
            raise ValueError(f"{what}: layer {i} is {type(module).__name__}, expected {expected.__name__}; "
                             f"rivc converts {SUPPORTED}")
    if not modules or not isinstance(modules[-1], nn.Linear):
        raise ValueError(f"{what} must end in a Linear layer (the Q-values); rivc converts {SUPPORTED}")
    return [m for m in modules if isinstance(m, nn.Linear)]


def _read_sb3_zip(path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
            state = torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True, map_location="cpu")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, RuntimeError, EOFError,
            pickle.UnpicklingError) as exc:
        raise CorruptFileError(f"{path} is not a readable Stable-Baselines3 model ({type(exc).__name__}: {exc})") from exc
    policy_class = (data.get("policy_class") or {}) if isinstance(data, dict) else {}
    if policy_class.get("__module__") != "stable_baselines3.dqn.policies":
        init = str(policy_class.get("__init__", ""))  # "<function ActorCriticPolicy.__init__ at ...>"
        name = init.split()[1].split(".")[0] if init.startswith("<function ") else "an unknown policy"
        raise ValueError(f"{path} holds {name} ({policy_class.get('__module__', 'no policy class')}), not a DQN "
                         f"Q-network: rivc converts {SUPPORTED}")
    activation = json.dumps((data.get("policy_kwargs") or {}).get("activation_fn", "torch.nn.modules.activation.ReLU'>"))
    if not activation.rstrip('"').endswith(".ReLU'>"):  # not LeakyReLU, ReLU6, Tanh...
        raise ValueError(f"{path}: the Q-network's activation is not ReLU ({activation}); rivc converts {SUPPORTED}")
    if any(key.startswith("q_net.features_extractor.") for key in state):
        raise ValueError(f"{path}: a CnnPolicy (image features) is not an MLP; rivc converts {SUPPORTED}")
    layers, i = [], 0
    while f"q_net.q_net.{i}.weight" in state:
        layers.append((state[f"q_net.q_net.{i}.weight"], state[f"q_net.q_net.{i}.bias"]))
        i += 2  # Linear, ReLU, Linear, ...
    if not layers:
        raise CorruptFileError(f"{path}: no q_net.q_net layers in policy.pth")
    return layers


def read_float_q_network(source: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(weight, bias)`` per Linear layer of a float Q-network (see the module docstring)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no model at {path}: pass a Stable-Baselines3 DQN .zip")
        return _read_sb3_zip(path)
    if isinstance(source, nn.Sequential):
        linears = _check_layers(list(source), "the Sequential")
    else:
        from stable_baselines3 import DQN

        if not isinstance(source, DQN):
            raise ValueError(f"cannot convert a {type(source).__name__}: rivc converts {SUPPORTED}")
        linears = _check_layers(list(source.q_net.q_net), "the DQN's q_net")
    return [(linear.weight.detach().cpu(),
             torch.zeros(linear.out_features) if linear.bias is None else linear.bias.detach().cpu()) for linear in linears]


def _check_env(env: gym.Env, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    from rivc.agents.rivc_agent import check_env_spaces

    check_env_spaces(env)
    float_network = SimpleNamespace(obs_shape=(layers[0][0].shape[1],), n_actions=layers[-1][0].shape[0])
    check_env(float_network, env, what="the float network")


def _float_mlp(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> nn.Sequential:
    """The user's float network as it was trained: raw observations in, Q-values out."""
    modules: list[nn.Module] = []
    for i, (weight, bias) in enumerate(layers):
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        modules += [linear] if i == len(layers) - 1 else [linear, nn.ReLU()]
    return nn.Sequential(*modules).eval()


class _GreedyPolicy:
    """A torch Q-network as a ``predict(obs)`` policy for :func:`rollout`."""

    def __init__(self, q_network: nn.Module) -> None:
        self.q_network = q_network

    def predict(self, obs, deterministic: bool = True):  # noqa: ARG002 (SB3 signature)
        with torch.no_grad():
            q = self.q_network(torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1)))
        return int(q.argmax(1)[0]), None


def _input_range(space: spaces.Box, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The space's bounds where finite, else the visited states' range widened as RIVC calibrates it."""
    probe = QuantizedQNetwork(space, 1, QuantConfig(), hidden_sizes=(), qat=False, target="rate")
    if probe.needs_calibration:
        probe.calibrate_input_range(states)
    return probe.obs_low.numpy(), probe.obs_high.numpy()


def _copy_into(net: QuantizedQNetwork, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Copy the float network into ``net``: its first layer is in the observation's units, as the float network's
    (the input range is folded in where ``net`` quantizes it)."""
    with torch.no_grad():
        for linear, (weight, bias) in zip(net.linears, layers):
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)


def _visited_states(layers, env: gym.Env, episodes: int, seed: int):
    result = rollout(_GreedyPolicy(_float_mlp(layers)), env, episodes, seed=seed, record_states=True)
    return result, np.asarray(result.observations, dtype=np.float64)


@dataclass
class ModelConversion:
    """A float Q-network converted for a chip target, and how it compares with the float policy."""

    network: IntegerNetwork
    policy: SpikingPolicy
    error: ConversionError  # greedy agreement with the float network on states the float policy visits
    float_return: float
    snn_return: float
    states: int

    def describe(self) -> str:
        return (f"target {self.network.target}: greedy agreement with the float network "
                f"{100 * self.error.action_agreement:.1f} % on {self.states} visited states; return float "
                f"{self.float_return:.1f}, SNN {self.snn_return:.1f}")


def convert_float_model(
    source: Any, env: gym.Env | str, target: str = DEFAULT_TARGET, quant: QuantConfig | None = None,
    backend: str = "snntorch", episodes: int = 10, seed: int = 1000,
) -> ModelConversion:
    """Post-training quantize ``source`` for ``target``, convert it on ``backend`` and compare it with the
    float policy (``episodes`` greedy episodes each, from ``env.reset(seed=seed + i)``)."""
    env = gym.make(env) if isinstance(env, str) else env
    layers = read_float_q_network(source)
    _check_env(env, layers)
    visited, states = _visited_states(layers, env, episodes, seed)
    net = QuantizedQNetwork(env.observation_space, int(env.action_space.n), quant or QuantConfig(),
                            hidden_sizes=[w.shape[0] for w, _ in layers[:-1]], qat=False, target=target,
                            obs_range=_input_range(env.observation_space, states))
    _copy_into(net, layers)
    network = net.export(calibration_obs=states)
    policy = make_backend(backend).convert(network)
    snn = rollout(policy, env, episodes, seed=seed)
    return ModelConversion(network, policy, agreement_with_float(layers, policy, states), visited.mean_return,
                           snn.mean_return, len(states))


def agreement_with_float(source: Any, policy: SpikingPolicy, states: np.ndarray) -> ConversionError:
    """Greedy agreement (and mean |dQ|) of a spiking policy with the float network on ``states``."""
    layers = source if isinstance(source, list) else read_float_q_network(source)
    with torch.no_grad():
        q_float = _float_mlp(layers)(torch.as_tensor(states, dtype=torch.float32)).numpy()
    return conversion_error(q_float, *policy.q_values_and_spikes(states))


def float_visited_states(source: Any, env: gym.Env | str, episodes: int = 10, seed: int = 1000) -> np.ndarray:
    """States the float policy visits in greedy episodes (to compare policies on)."""
    env = gym.make(env) if isinstance(env, str) else env
    return _visited_states(read_float_q_network(source), env, episodes, seed)[1]


# fine-tuning a trained policy: a short warm-up and low exploration
FINETUNE_OPTIONS = dict(learning_starts=200, exploration_initial_eps=0.05, exploration_final_eps=0.02,
                        exploration_fraction=0.1, learning_rate=1e-4)


def finetune(source: Any, env: gym.Env | str, timesteps: int, target: str = DEFAULT_TARGET,
             quant: QuantConfig | None = None, seed: int = 0, **rivc_kwargs: Any):
    """A RIVC agent started from the float network and trained for ``timesteps`` steps (QAT with the
    target's arithmetic, gap-increasing update, the SNN acting). It starts as the post-training
    conversion does: input ranges and activation clips from states the float policy visits, converted
    at once; a short warm-up (200 steps) and low exploration, since the policy is already trained."""
    from rivc.agents.rivc_agent import RIVC

    for key in ("policy_kwargs", "calibration"):
        if key in rivc_kwargs:
            raise ValueError(f"finetune sets {key} itself (the architecture and ranges of the float network)")
    env = gym.make(env) if isinstance(env, str) else env
    layers = read_float_q_network(source)
    _check_env(env, layers)
    if len(layers) < 2:
        raise ValueError("fine-tuning needs a network with at least one hidden layer")
    _, states = _visited_states(layers, env, 5, seed=10_000 + seed)
    # the rewards as they are: the float network's Q-values are in their units, and fine-tuning keeps them there; so
    # the gap term unbounded, as docs/FLOAT_MODELS.md ran (RIVC's bound is set in rewards of order one a step)
    options = {**FINETUNE_OPTIONS, "reward_scale": 1.0, "gap_clip": None, **rivc_kwargs}
    model = RIVC("MlpPolicy", env, target=target, quant=quant, seed=seed, calibration={"clips": False}, **options,
                 policy_kwargs={"net_arch": [w.shape[0] for w, _ in layers[:-1]],
                                "obs_range": _input_range(env.observation_space, states)})
    for net in (model.q_net.net, model.q_net_target.net):
        _copy_into(net, layers)
        net.calibrate_activation_clips(states)
    model.convert()  # the SNN that acts from the first step is the folded network's
    model.learn(timesteps)
    return model
