"""Environment steps per second (random actions) for each registered id and observation mode,
next to Gymnasium's own MuJoCo Reacher-v5 measured in the same run.

    python benchmarks/bench_envs.py
"""

from __future__ import annotations

import time

import gymnasium as gym

import rivc.envs  # noqa: F401  (registers rivc/ ids)
from benchmarks.common import print_table


def steps_per_second(env: gym.Env, seconds: float = 1.5) -> float:
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    cases = {
        "Reacher-v5 (Gymnasium, peer)": lambda: gym.make("Reacher-v5"),
        "rivc/ArmReach-v0": lambda: gym.make("rivc/ArmReach-v0"),
        "rivc/MobileReach-v0 (state)": lambda: gym.make("rivc/MobileReach-v0"),
        "rivc/MobileReach-v0 (image 32x32)": lambda: gym.make("rivc/MobileReach-v0", obs_mode="image"),
        "rivc/MobileReach-v0 (image 64x64)": lambda: gym.make("rivc/MobileReach-v0", obs_mode="image", image_size=64),
    }
    results = {name: steps_per_second(make()) for name, make in cases.items()}
    peer = results["Reacher-v5 (Gymnasium, peer)"]
    print_table("Environment throughput (random actions)", ["env", "steps/s", "x Reacher-v5"],
                [[name, rate, rate / peer] for name, rate in results.items()])


if __name__ == "__main__":
    main()
