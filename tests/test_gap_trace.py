"""benchmarks/gap_trace.py: the trace reads a run without changing it, and bounds the returns as the rewards allow."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gap_trace import replay_rows, trace_point  # noqa: E402
from rivc.agents import RIVC  # noqa: E402

SHORT = dict(learning_starts=200, batch_size=32, buffer_size=5000, target_update_interval=100)


class TraceEvery100(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.points: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        if self.num_timesteps % 100 == 0 and self.num_timesteps > self.model.learning_starts:
            self.points.append(trace_point(self.model))
        return True


def test_a_traced_run_is_the_untraced_run_bit_for_bit():
    plain = RIVC("MlpPolicy", "CartPole-v1", seed=0, **SHORT)  # (one after the other: the seed is global)
    plain.learn(600)
    traced, trace = RIVC("MlpPolicy", "CartPole-v1", seed=0, **SHORT), TraceEvery100()
    traced.learn(600, callback=trace)
    assert len(trace.points) == 4
    for a, b in zip(traced.q_net.parameters(), plain.q_net.parameters(), strict=True):
        assert torch.equal(a, b)
    state, torch_state = np.random.get_state(), torch.get_rng_state()
    trace_point(traced)
    after = np.random.get_state()
    assert np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_the_trace_reads_every_stored_transition_and_bounds_the_returns():
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **SHORT)
    model.learn(400)
    rows = replay_rows(model)
    assert rows.tolist() == list(range(400))  # every stored transition, in order
    assert len(replay_rows(model, limit=7)) == 7
    point = trace_point(model)
    # CartPole's reward is 1 on every step: (1 + alpha log 2 / beta) / (1 - gamma)
    assert point["return_bound"] == pytest.approx((1 + model.alpha * np.log(2) / model.beta) / (1 - model.gamma))
    assert point["gap_p1"] <= point["gap_p10"] <= point["gap_p50"] <= np.log(2) / model.beta + 1e-9
    # on DQN's target (the qat variant: alpha 0) no gap term: the gaps to the max, and the rewards' bound alone
    qat = RIVC("MlpPolicy", "CartPole-v1", seed=0, variant="qat", **SHORT)
    qat.learn(400)
    point = trace_point(qat)
    assert point["return_bound"] == pytest.approx(1 / (1 - qat.gamma)) and point["gap_p50"] <= 0.0


def test_the_trace_says_how_its_run_compares_with_the_stored_record(tmp_path, monkeypatch):
    import json

    from benchmarks import zoo
    from benchmarks.gap_trace import against_record

    monkeypatch.setattr(zoo, "RESULTS", tmp_path)
    spec = zoo.RunSpec("CartPole-v1", "rivc", 0, 1000, json.dumps({"seed": 1}), "probe")
    assert against_record(spec, 10.0) == "no stored record"
    path = tmp_path / f"{spec.key}.json"
    path.write_text(json.dumps({"kwargs": {"seed": 1}, "final_return": 10.0, "gap_clip": -10.0}))  # (as run_one writes)
    assert against_record(spec, 10.0) == "the stored record's, bit for bit"
    assert against_record(spec, 10.5) == "the stored record's is 10.0: it ran with other code"
    path.write_text(json.dumps({"kwargs": {"seed": 2}, "final_return": 10.0, "gap_clip": -10.0}))
    assert against_record(spec, 10.0) == "the stored record ran other settings"
