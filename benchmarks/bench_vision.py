"""Vision policies: image-mode training throughput of RIVC (CnnPolicy, conversion after every update,
the SNN acting) against Stable-Baselines3's DQN CnnPolicy with the same conv architecture, env and
hyperparameters, in the same run; and the conversion time and per-action latency of the conv network.

    python benchmarks/bench_vision.py
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

import rivc.envs  # noqa: F401  (registers the environments)
from benchmarks.bench_train import steps_per_second
from benchmarks.common import print_table, time_call
from rivc.agents import RIVC
from rivc.agents.policies import DEFAULT_CONV_ARCH
from rivc.neurochip import make_backend

ENV_ID = "rivc/PanTrack-v0"
SHARED = dict(learning_rate=1e-3, buffer_size=20_000, learning_starts=500, batch_size=32, gamma=0.99,
              train_freq=4, gradient_steps=1, target_update_interval=500, exploration_fraction=0.2,
              exploration_final_eps=0.02, max_grad_norm=10.0, device="cpu")


class ChipCNN(BaseFeaturesExtractor):
    """SB3 feature extractor with RIVC's default conv layers (3x3, stride 2, 16-32-32 filters), float."""

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        channels, height, width = observation_space.shape  # SB3 hands CnnPolicy frames channel-first
        layers, in_channels = [], channels
        for spec in DEFAULT_CONV_ARCH:
            layers += [nn.Conv2d(in_channels, spec.filters, spec.kernel, spec.stride, padding=spec.kernel // 2), nn.ReLU()]
            in_channels = spec.filters
        cnn = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            features = cnn(torch.zeros(1, channels, height, width)).shape[1]
        super().__init__(observation_space, features)
        self.cnn = cnn

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.cnn(observations)


def training_throughput(timesteps: int) -> None:
    sb3_kwargs = dict(policy_kwargs=dict(features_extractor_class=ChipCNN, net_arch=[64]), **SHARED)
    runs = {
        "SB3 DQN CnnPolicy (float, same conv layers)": lambda: DQN("CnnPolicy", ENV_ID, seed=0, **sb3_kwargs),
        "RIVC CnnPolicy, target akida, snntorch emulation": lambda: RIVC("CnnPolicy", ENV_ID, seed=0, **SHARED),
        "RIVC CnnPolicy, conversion error on every conversion": lambda: RIVC(
            "CnnPolicy", ENV_ID, seed=0, conversion={"eval_every": 1}, **SHARED),
        "RIVC CnnPolicy, target akd1000": lambda: RIVC("CnnPolicy", ENV_ID, seed=0, target="akd1000", **SHARED),
        "RIVC CnnPolicy variant fpnn (no conversion)": lambda: RIVC("CnnPolicy", ENV_ID, seed=0, variant="fpnn",
                                                                    **SHARED),
    }
    results = {name: steps_per_second(make, timesteps) for name, make in runs.items()}
    peer = next(iter(results.values()))
    print_table(f"Image-mode training throughput on {ENV_ID} (32x32x3 frames), {timesteps} steps, train_freq 4",
                ["agent", "env steps/s", "x SB3 DQN"], [[name, sps, sps / peer] for name, sps in results.items()])


def conversion_and_latency() -> None:
    env = gym.make(ENV_ID)
    frames = np.stack([env.reset(seed=i)[0] for i in range(8)])
    rows = []
    for target in ("akida", "akd1000", "rate"):
        model = RIVC("CnnPolicy", env, target=target, seed=0, learning_starts=0)
        qnet = model.q_network
        qnet.calibrate_activation_clips(frames)
        obs = torch.as_tensor(frames[:1])
        with torch.no_grad():
            torch_forward = time_call(lambda: qnet(obs))
        for backend in ("snntorch", "akida") if target != "rate" else ("snntorch",):
            converter = make_backend(backend)
            convert = time_call(lambda: converter.convert(qnet.export()), repeats=3)
            policy = converter.convert(qnet.export())
            act = time_call(lambda: policy.predict(frames[0]), repeats=3)
            rows.append([target, backend, 1e3 * convert, 1e3 * act, 1e3 * torch_forward, act / torch_forward])
    print_table("Conv network (default CnnPolicy, 32x32x3 frames): export + convert, and one action at batch 1",
                ["target", "backend", "convert ms", "SNN action ms", "QAT torch fwd ms", "SNN / torch"], rows)


def main(timesteps: int = 2_500) -> None:
    conversion_and_latency()
    training_throughput(timesteps)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
