"""Trace the gap term and the value range of one run of the Zoo sweep: is the value function in the range the
rewards allow, and how far does the gap term widen the gaps?

    python benchmarks/gap_trace.py --task InvertedDoublePendulum-v5@5:defaults:fpnn-gap-scaled-fit --seed 0
    python benchmarks/gap_trace.py --task HalfCheetah-v5@3.per_joint:defaults --seed 0

The run is the sweep's (``benchmarks/zoo.py``: the same row, seed and settings): the trace reads the replay buffer
by index and draws no random numbers, and the last line says whether the final return equals the sweep's stored
record. Every tenth of the budget, on up to 1,024 stored transitions spread over the replay, from the target
network: the gap term ``Q'(s, a) - m_beta Q'(s)`` of the stored actions before any ``gap_clip`` (1st, 10th and
50th percentiles), the state values ``m_beta Q'(s)`` (smallest and largest) and the largest return the rewards
allow, ``(max(0, r_max) + alpha log|A| / beta) / (1 - gamma)``, with ``r_max`` the largest (scaled) reward stored:
a state value above it is a value function that has left the task's range. A variant on DQN's target (alpha 0)
has no gap term: its "gap" is ``Q'(s, a) - max Q'(s)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from rivc.agents.rivc_agent import RIVC

TRACE_POINTS, TRACE_SAMPLES = 10, 1024


def replay_rows(model: RIVC, limit: int = TRACE_SAMPLES) -> np.ndarray:
    """Indices of up to ``limit`` stored transitions spread evenly over the filled replay (no random draw)."""
    filled = model.replay_buffer.size()
    return np.unique(np.linspace(0, filled - 1, min(limit, filled)).astype(int))


def trace_point(model: RIVC) -> dict[str, float]:
    """The gap term's percentiles, the state values' range and the returns' bound on the replay, now, with the
    variant's own target (``RIVC.target_alpha_operator``, as ``RIVC.td_target`` takes it)."""
    import torch

    from rivc.targets import soft_max_operator

    alpha, operator = model.target_alpha_operator
    buffer, rows = model.replay_buffer, replay_rows(model)
    obs = torch.as_tensor(buffer.observations[rows, 0], dtype=torch.float32)
    actions = buffer.actions[rows, 0].reshape(-1).astype(int)
    scale = 1.0 if model.reward_scale is None else model.reward_scale
    r_max = float(buffer.rewards[:buffer.size()].max()) * scale
    with torch.no_grad():
        q = model.q_net_target(obs).cpu().numpy().astype(np.float64)
    values = soft_max_operator(q, model.beta, operator)
    gap = q[np.arange(len(rows)), actions] - values
    bound = (max(0.0, r_max) + alpha * np.log(q.shape[1]) / model.beta) / (1.0 - model.gamma)
    p1, p10, p50 = np.percentile(gap, [1, 10, 50])
    return {"gap_p1": p1, "gap_p10": p10, "gap_p50": p50, "value_min": float(values.min()),
            "value_max": float(values.max()), "return_bound": bound}


def main(argv: list[str] | None = None) -> int:
    """Train the row's run with the trace, then evaluate it as the sweep does and compare with its record."""
    from benchmarks import zoo

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=[zoo.task_name(t) for t in zoo.TASKS], metavar="ROW",
                        help="a row of benchmarks/zoo.py (ENV:SETTINGS[:TAG], as its --task takes it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed takes a seed >= 0, got {args.seed}")

    from stable_baselines3.common.callbacks import BaseCallback

    spec = next(run for run in zoo.grid([args.task], [args.seed]) if run.agent == "rivc")
    model = zoo.make_model(spec)
    every = spec.timesteps // TRACE_POINTS
    print(f"{args.task}, seed {args.seed}: {json.loads(spec.kwargs)}")
    print("steps | gap term p1 / p10 / p50 | state values min / max | largest return the rewards allow")

    class Trace(BaseCallback):
        """One line every tenth of the budget, once updates have begun."""

        def _on_step(self) -> bool:
            if self.num_timesteps % every == 0 and self.num_timesteps > self.model.learning_starts:
                p = trace_point(self.model)
                print(f"{self.num_timesteps} | {p['gap_p1']:.1f} / {p['gap_p10']:.1f} / {p['gap_p50']:.2f} | "
                      f"{p['value_min']:.1f} / {p['value_max']:.1f} | {p['return_bound']:.1f}", flush=True)
            return True

    model.learn(spec.timesteps, callback=Trace())
    final = zoo.final_rollout(model, zoo.make_task_env(spec.env_id)).mean_return
    print(f"final policy: {final:.1f} mean over {zoo.EVAL_EPISODES} episodes (the sweep's evaluation; "
          f"{against_record(spec, final)})")
    return 0


def against_record(spec, final: float) -> str:
    """How ``final`` compares with the sweep's stored record of the same run (``zoo.RunSpec``), if it has one."""
    from benchmarks import zoo

    stored = zoo.RESULTS / f"{spec.key}.json"
    if not stored.exists():
        return "no stored record"
    record = json.loads(stored.read_text())
    if not zoo.ran_as_asked(record, json.loads(spec.kwargs)):
        return "the stored record ran other settings"
    if record["final_return"] == final:
        return "the stored record's, bit for bit"
    return f"the stored record's is {record['final_return']:.1f}: it ran with other code"


if __name__ == "__main__":
    sys.exit(main())
