"""Training throughput: environment steps per second of RIVC (conversion after every update,
the SNN acting) against Stable-Baselines3's DQN on the same env and hyperparameters, same run.

    python benchmarks/bench_train.py
"""

from __future__ import annotations

import time

import torch
from stable_baselines3 import DQN

from rivc.agents import RIVC
from benchmarks.common import print_table

SHARED = dict(learning_rate=1e-3, buffer_size=50_000, learning_starts=1_000, batch_size=64, gamma=0.99,
              train_freq=4, gradient_steps=1, target_update_interval=500, exploration_fraction=0.2,
              exploration_final_eps=0.02, max_grad_norm=10.0, device="cpu")


def steps_per_second(make_model, timesteps: int) -> float:
    model = make_model()
    start = time.perf_counter()
    model.learn(timesteps)
    return timesteps / (time.perf_counter() - start)


def main(env_id: str = "CartPole-v1", timesteps: int = 10_000) -> None:
    runs = {
        "SB3 DQN (float MLP 64x64)": lambda: DQN("MlpPolicy", env_id, seed=0, **SHARED),
        "RIVC, target akida, snntorch emulation": lambda: RIVC("MlpPolicy", env_id, seed=0, **SHARED),
        "RIVC, target akida, conversion error every 10th": lambda: RIVC(
            "MlpPolicy", env_id, seed=0, conversion_eval_every=10, **SHARED),
        "RIVC, target akd1000, snntorch emulation": lambda: RIVC("MlpPolicy", env_id, seed=0, target="akd1000", **SHARED),
        "RIVC, target rate, snntorch synchronous": lambda: RIVC("MlpPolicy", env_id, seed=0, target="rate", **SHARED),
        "RIVC, target akida, akida engine acting": lambda: RIVC("MlpPolicy", env_id, seed=0, backend="akida", **SHARED),
        "RIVC variant naive (PTQ each conversion)": lambda: RIVC("MlpPolicy", env_id, seed=0, variant="naive", **SHARED),
        "RIVC variant fpnn (no conversion)": lambda: RIVC("MlpPolicy", env_id, seed=0, variant="fpnn", **SHARED),
    }
    results = {name: steps_per_second(make, timesteps) for name, make in runs.items()}
    peer = results["SB3 DQN (float MLP 64x64)"]
    rows = [[name, sps, sps / peer] for name, sps in results.items()]
    print_table(f"Training throughput on {env_id}, {timesteps} steps, train_freq 4 (target RIVC >= 0.7x DQN)",
                ["agent", "env steps/s", "x SB3 DQN"], rows)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
