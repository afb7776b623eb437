"""A fixed-rate control loop for a deployed policy (numpy, and akida for Akida policies; no torch).

Every period ``1 / rate`` the loop is released, reads an observation from a *source*, acts with the policy and
hands the action to a *sink*. Latency runs from the release to the action handed over (the sink's call included);
the policy's own time is reported beside it. The action is due before the next release: one sent later is a missed deadline,
and the loop then skips the releases it overran (a robot wants the newest observation, not a backlog).

Sources and sinks are plain callables, what a ROS node or a serial link would call; :class:`GymnasiumIO` makes
both from a Gymnasium env, for simulation and tests. The clock is a parameter, so a test drives the loop with a
fake one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rivc.neurochip.base import SpikingPolicy


class Clock(Protocol):
    def now(self) -> float:
        """Seconds, monotonic."""

    def sleep_until(self, deadline: float, stop: threading.Event | None = None) -> None:
        """Return at ``deadline`` (at once if it has passed), or as soon as ``stop`` is set."""


class SystemClock:
    """``time.perf_counter``; sleeps with ``Event.wait`` / ``time.sleep`` (the OS's timer resolution bounds the
    jitter)."""

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, deadline: float, stop: threading.Event | None = None) -> None:
        delay = deadline - time.perf_counter()
        if delay > 0:
            stop.wait(delay) if stop is not None else time.sleep(delay)


@dataclass
class LoopReport:
    """What a run of the loop achieved."""

    rate_hz: float  # asked for
    actions: int
    seconds: float  # from the first release to the end (the release after the last action)
    latencies: np.ndarray = field(repr=False)  # per action: release -> action sent, seconds
    compute: np.ndarray = field(repr=False)  # per action: observation read -> action decided (the policy), seconds
    missed_deadlines: int
    skipped_releases: int  # releases overrun by late actions, not acted on
    stopped_by: str  # "time", "steps", "signal" or "source" (the source ran out)

    @property
    def achieved_hz(self) -> float:
        return self.actions / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q) * 1e3) if len(values) else math.nan

    def table(self) -> str:
        rows = [("actions", f"{self.actions}"), ("rate asked / achieved", f"{self.rate_hz:g} Hz / {self.achieved_hz:.1f} Hz"),
                ("missed deadlines", f"{self.missed_deadlines} ({100 * self.missed_deadlines / max(self.actions, 1):.1f} %)"),
                ("skipped releases", f"{self.skipped_releases}"), ("stopped by", self.stopped_by)]
        for name, values in (("latency (release -> action)", self.latencies), ("policy (observation -> action)", self.compute)):
            rows.append((f"{name} p50 / p99 / max", " / ".join(
                f"{self.percentile_ms(values, q):.3f}" for q in (50, 99, 100)) + " ms"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run_loop(policy: SpikingPolicy, source: Callable[[], Any], sink: Callable[[int], None], rate_hz: float,
             seconds: float | None = None, steps: int | None = None, clock: Clock | None = None,
             stop: threading.Event | None = None) -> LoopReport:
    """Act at ``rate_hz`` until ``seconds`` have passed, ``steps`` actions were sent, ``stop`` is set or the source
    returns None. ``source()`` gives one observation, ``sink(action)`` takes the action (an int)."""
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"the rate must be a finite number of Hz > 0, got {rate_hz!r}")
    if seconds is None and steps is None and stop is None:
        raise ValueError("give seconds, steps or a stop event: the loop would run forever")
    clock = clock or SystemClock()
    period = 1.0 / rate_hz
    releases = math.inf if seconds is None else math.ceil(seconds * rate_hz - 1e-9)  # release k at start + k * period
    latencies, compute, missed, skipped, stopped_by = [], [], 0, 0, "time"
    start, k = clock.now(), 0
    while True:
        if stop is not None and stop.is_set():
            stopped_by = "signal"
            break
        if steps is not None and len(latencies) >= steps:
            stopped_by = "steps"
            break
        if k >= releases:
            break
        release = start + k * period
        read = clock.now()
        observation = source()
        if observation is None:
            stopped_by = "source"
            break
        action = int(policy.predict(np.asarray(observation)[None])[0])
        decided = clock.now()
        sink(action)
        sent = clock.now()
        latencies.append(sent - release)
        compute.append(decided - read)
        following = max(k + 1, math.ceil((sent - start) / period - 1e-9))  # the first release not yet begun
        if following > k + 1:  # late: the action was due at release k + 1; the releases it overran are skipped
            missed += 1
            skipped += following - (k + 1)
        k = following
        if k < releases:
            clock.sleep_until(start + k * period, stop)
    return LoopReport(rate_hz, len(latencies), max(clock.now(), start + min(k, releases) * period) - start,
                      np.asarray(latencies), np.asarray(compute), missed, skipped, stopped_by)


class GymnasiumIO:
    """A Gymnasium env as the loop's source and sink: the source gives the current observation, the sink steps
    the env with the action (resetting it when an episode ends) and keeps the episodes' returns."""

    def __init__(self, env: Any, seed: int | None = None) -> None:
        self.env, self.seed = env, seed
        self.observation, _ = env.reset(seed=seed)
        self.returns: list[float] = []
        self._return = 0.0

    def source(self) -> np.ndarray:
        return self.observation

    def sink(self, action: int) -> None:
        self.observation, reward, terminated, truncated, _ = self.env.step(action)
        self._return += float(reward)
        if terminated or truncated:
            self.returns.append(self._return)
            self._return = 0.0
            self.observation, _ = self.env.reset()
