"""One episode-rollout function for the CLI, the benchmarks and the tests (numpy only: a deployed
policy on an edge board runs it without torch)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RolloutResult:
    """What greedy episodes of one policy gave (episode ``i`` starts from ``env.reset(seed=seed + i)``)."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)  # info["is_success"] at the end, where the env sets it
    latencies_ms: list[float] = field(default_factory=list)  # per action
    observations: list[np.ndarray] = field(default_factory=list)  # every visited state, with record_states
    actions: list[int] = field(default_factory=list)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def success_rate(self) -> float | None:
        return float(np.mean(self.successes)) if self.successes else None

    @property
    def ms_per_action(self) -> float:
        return float(np.mean(self.latencies_ms))

    def describe(self) -> str:
        success = f", success {100 * self.success_rate:.0f} %" if self.success_rate is not None else ""
        return (f"return {self.mean_return:.1f} +- {self.std_return:.1f} over {len(self.returns)} episodes{success} "
                f"({self.ms_per_action:.3f} ms per action)")


def greedy_actor(policy) -> Callable[[np.ndarray], int]:
    """``obs -> action`` for an agent (SB3 ``predict``) or a deployed ``SpikingPolicy`` (batch of one)."""
    from rivc.neurochip import SpikingPolicy

    if isinstance(policy, SpikingPolicy):
        return lambda obs: int(policy.predict(obs)[0])
    return lambda obs: int(policy.predict(obs, deterministic=True)[0])


def rollout(policy, env, episodes: int, seed: int = 1000, record_states: bool = False) -> RolloutResult:
    """Run ``episodes`` greedy episodes of ``policy`` (an agent or a ``SpikingPolicy``) on ``env``."""
    act = greedy_actor(policy)
    result = RolloutResult()
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        done, total, length = False, 0.0, 0
        while not done:
            start = time.perf_counter()
            action = act(obs)
            result.latencies_ms.append(1e3 * (time.perf_counter() - start))
            if record_states:
                result.observations.append(np.asarray(obs))
                result.actions.append(action)
            obs, reward, terminated, truncated, info = env.step(action)
            total, length, done = total + float(reward), length + 1, terminated or truncated
        result.returns.append(total)
        result.lengths.append(length)
        if "is_success" in info:
            result.successes.append(bool(info["is_success"]))
    return result
