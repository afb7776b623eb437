"""The fixed-rate control loop (rivc.neurochip.control): deadlines, skipped releases and stops, driven by a fake
clock; then the real loop on a deployed policy, and `rivc run` stopped by a signal, without torch."""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from rivc.neurochip import SpikingPolicy
from rivc.neurochip.control import GymnasiumIO, LoopReport, run_loop


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, deadline: float, stop=None) -> None:
        self.t = max(self.t, deadline)


class SlowPolicy(SpikingPolicy):
    """Takes ``costs[k]`` seconds of the fake clock for its k-th action; always action 1."""

    def __init__(self, clock: FakeClock, costs: list[float]) -> None:
        self.clock, self.costs, self.calls = clock, costs, 0

    def q_values(self, obs):
        self.clock.t += self.costs[min(self.calls, len(self.costs) - 1)]
        self.calls += 1
        return np.array([[0.0, 1.0]])


def loop(costs, **kwargs) -> tuple[LoopReport, list[int]]:
    clock, sent = FakeClock(), []
    report = run_loop(SlowPolicy(clock, costs), lambda: np.zeros(4), sent.append, clock=clock, **kwargs)
    return report, sent


def test_on_time_actions_keep_the_rate_and_miss_nothing():
    report, sent = loop([0.005], rate_hz=50, steps=10)
    assert sent == [1] * 10 and report.actions == 10 and report.stopped_by == "steps"
    assert report.missed_deadlines == 0 and report.skipped_releases == 0
    np.testing.assert_allclose(report.latencies, 0.005)
    assert report.seconds == pytest.approx(0.2) and report.achieved_hz == pytest.approx(50.0)


def test_a_late_action_is_a_missed_deadline_and_the_overrun_releases_are_skipped():
    costs = [0.005, 0.005, 0.030, 0.005, 0.065, 0.005]  # 30 ms overruns one 20 ms release, 65 ms three
    report, _ = loop(costs, rate_hz=50, steps=6)
    assert report.missed_deadlines == 2 and report.skipped_releases == 1 + 3
    np.testing.assert_allclose(report.latencies, costs)
    assert report.percentile_ms(report.latencies, 100) == pytest.approx(65.0)
    assert report.seconds == pytest.approx(0.02 * (6 + 4))  # six releases acted on, four skipped
    assert report.achieved_hz == pytest.approx(30.0)


@pytest.mark.parametrize("rate, seconds", [(100, 0.5), (10, 1.0), (60, 1.0), (7, 3.0), (50, 0.01)])
def test_the_loop_acts_once_per_release_within_the_time_asked(rate, seconds):
    report, _ = loop([0.001], rate_hz=rate, seconds=seconds)
    assert report.actions == max(1, round(rate * seconds)) and report.stopped_by == "time"
    assert report.seconds == pytest.approx(report.actions / rate) and report.achieved_hz == pytest.approx(rate)


def test_an_action_sent_exactly_at_its_deadline_is_on_time():
    report, _ = loop([0.02], rate_hz=50, steps=3)
    assert report.missed_deadlines == 0 and report.skipped_releases == 0


def test_a_stop_wakes_the_loop_from_a_long_period():
    from rivc.neurochip.control import SystemClock

    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.perf_counter()
    report = run_loop(SlowPolicy(FakeClock(), [0.0]), lambda: np.zeros(4), lambda a: None, rate_hz=0.5, seconds=60,
                      clock=SystemClock(), stop=stop)
    assert report.stopped_by == "signal" and report.actions == 1 and time.perf_counter() - started < 1.5


def test_the_loop_stops_on_a_signal_and_when_the_source_runs_out():
    stop = threading.Event()
    clock = FakeClock()
    sink = lambda action: stop.set() if clock.t > 0.035 else None  # noqa: E731 (a signal during the 5th action)
    report = run_loop(SlowPolicy(clock, [0.001]), lambda: np.zeros(4), sink, rate_hz=100, clock=clock, stop=stop)
    assert report.actions == 5 and report.stopped_by == "signal"
    observations = iter([np.zeros(4)] * 3)
    report = run_loop(SlowPolicy(FakeClock(), [0.0]), lambda: next(observations, None), lambda a: None, rate_hz=100,
                      clock=FakeClock(), seconds=10)
    assert report.actions == 3 and report.stopped_by == "source"
    with pytest.raises(ValueError, match="run forever"):
        run_loop(SlowPolicy(FakeClock(), [0.0]), lambda: np.zeros(4), lambda a: None, rate_hz=50)
    with pytest.raises(ValueError, match="rate"):
        run_loop(SlowPolicy(FakeClock(), [0.0]), lambda: np.zeros(4), lambda a: None, rate_hz=0, steps=1)


@pytest.fixture(scope="module")
def policy_folder(tmp_path_factory):
    from rivc.agents.cli import main

    root = tmp_path_factory.mktemp("control")
    assert main(["train", "--out", str(root / "run"), "--timesteps", "600", "--eval-episodes", "1",
                 "--hyperparams", "defaults"]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "policy"), "--episodes", "1"]) == 0
    return root / "policy"


def test_a_deployed_policy_runs_an_env_at_a_fixed_rate_on_the_system_clock(policy_folder):
    from rivc.neurochip import load_policy

    policy = load_policy(policy_folder)
    io = GymnasiumIO(gym.make("CartPole-v1"), seed=0)
    report = run_loop(policy, io.source, io.sink, rate_hz=100, seconds=0.3)
    assert 25 <= report.actions <= 31 and report.stopped_by == "time" and io.returns  # episodes ended and reset
    greedy = GymnasiumIO(gym.make("CartPole-v1"), seed=0)
    for _ in range(int(io.returns[0])):  # CartPole: the return counts the steps; the same actions as a plain rollout
        greedy.sink(int(policy.predict(greedy.source()[None])[0]))
    assert greedy.returns[:1] == io.returns[:1]


def test_rivc_run_stops_cleanly_on_sigint_without_importing_torch(policy_folder):
    script = textwrap.dedent("""
        import sys
        from rivc.agents.cli import main
        code = main(sys.argv[1:])
        print("torch imported:", "torch" in sys.modules)
        sys.exit(code)
    """)
    process = subprocess.Popen([sys.executable, "-c", script, "run", str(policy_folder), "--rate", "50", "--seconds",
                                "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # imports, then the loop
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped by" in out and "signal" in out and "missed deadlines" in out and "p50 / p99 / max" in out
    assert "torch imported: False" in out
