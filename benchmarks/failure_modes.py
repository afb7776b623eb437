"""Why a CartPole policy stops short of 500: how its episodes end, and what its inputs and Q-values look like.

    python benchmarks/failure_modes.py                       # rivc / naive / qat at 4 and 8 bits, seed 0
    python benchmarks/failure_modes.py --runs rivc:8:0 naive:8:0 --timesteps 40000

Trains each ``variant:bits:seed`` as the ablation does (tuned hyperparameters, snntorch backend),
then runs the acting policy for ``--episodes`` episodes and reports, per run:

* how episodes end: the cart leaves the track (|x| > 2.4), the pole falls (|theta| > 12 deg), or
  the 500-step limit;
* input saturation: the share of visited observations outside the frozen input range (those
  values are clipped before the 8-bit input quantizer, so the policy cannot see them);
* the trained network's action gap (best minus second-best Q) against the conversion error
  (mean |Q_snn - Q|), and the greedy agreement of the SNN with the network, on the visited states:
  RIVC's premise is a gap well above the error.

Runs go to parallel processes; the table is printed and written to ``docs/failure_modes.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV_ID = "CartPole-v1"
X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * np.pi / 360  # CartPole-v1's termination thresholds


def diagnose(run: str, timesteps: int, episodes: int) -> dict:
    """Train one ``variant:bits:seed`` and describe how its acting policy fails."""
    import gymnasium as gym
    import torch

    from rivc.agents.hyperparams import tuned_hyperparams
    from benchmarks.ablation import RunSpec, make_model, run_params
    from rivc.metrics import conversion_error

    variant, bits, seed = run.split(":")
    model = make_model(RunSpec(ENV_ID, variant, int(bits), int(seed), timesteps,
                               run_params(variant, tuned_hyperparams(ENV_ID))))
    model.learn(timesteps)
    env = gym.make(ENV_ID)
    ends = {"cart left the track": 0, "pole fell": 0, "time limit": 0}
    observations, returns = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=200_000 + episode)
        done, steps = False, 0
        while not done:
            observations.append(obs)
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = env.step(int(action))
            steps += 1
            done = terminated or truncated
        returns.append(steps)
        if truncated and not terminated:
            ends["time limit"] += 1
        elif abs(obs[0]) > X_LIMIT:
            ends["cart left the track"] += 1
        else:
            ends["pole fell"] += 1
    observations = np.asarray(observations)
    net = model.q_network
    low, high = net.obs_low.cpu().numpy(), net.obs_high.cpu().numpy()
    outside = (observations < low) | (observations > high)
    record = {"run": run, "return": float(np.mean(returns)), "ends": ends,
              "saturated": float(outside.any(axis=1).mean()), "saturated_dims": outside.mean(axis=0).round(3).tolist()}
    if model.snn_acting:
        with torch.no_grad():
            q = model.q_net(torch.as_tensor(observations, dtype=torch.float32)).numpy()
        top2 = np.sort(q, axis=1)[:, -2:]
        error = conversion_error(q, model.spiking_policy.q_values(observations))
        record["action_gap"] = float(np.mean(top2[:, 1] - top2[:, 0]))
        record["mean_abs_dq"] = error.mean_abs_dq
        record["agreement"] = error.action_agreement
    return record


def table(records: list[dict], timesteps: int, episodes: int) -> str:
    lines = [f"# CartPole-v1 failure modes ({timesteps:,} training steps, {episodes} evaluation episodes)", "",
             "Produced by `python benchmarks/failure_modes.py`. Input saturation: share of visited states with "
             "a dimension outside the frozen input range (clipped before quantization); per dimension x, x_dot, "
             "theta, theta_dot. Action gap: the trained network's best minus second-best Q; |dQ|: mean "
             "|Q_snn - Q|; agreement: SNN vs network greedy action; all on the visited states.", "",
             "| run (variant:bits:seed) | return | cart left track | pole fell | time limit | saturated | "
             "per dimension | action gap | abs dQ | agreement |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        e = r["ends"]
        snn = [f"{r[k]:.3f}" if k in r else "-" for k in ("action_gap", "mean_abs_dq", "agreement")]
        lines.append(f"| {r['run']} | {r['return']:.1f} | {e['cart left the track']} | {e['pole fell']} | "
                     f"{e['time limit']} | {r['saturated']:.3f} | {r['saturated_dims']} | {' | '.join(snn)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["rivc:4:0", "naive:4:0", "qat:4:0", "rivc:8:0", "naive:8:0",
                                                      "qat:8:0", "fpnn:4:0"])
    parser.add_argument("--timesteps", type=int, default=40_000)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "failure_modes.md"))
    args = parser.parse_args(argv)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        records = list(pool.map(diagnose, args.runs, [args.timesteps] * len(args.runs), [args.episodes] * len(args.runs)))
    text = table(records, args.timesteps, args.episodes)
    print(text)
    from rivc.integer_net import atomic_write_bytes

    atomic_write_bytes(Path(args.out), text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
