"""Which layer's width a trained policy needs: train one zoo-benchmark run, then requantize its weights with one
layer at a time at other widths (post-training, ``QuantizedQNetwork.with_config``) and report each variant's
greedy return and its actions' agreement with the trained network on replay states.

    python benchmarks/layer_widths_probe.py                     # Acrobot, 8-bit weights / 4-bit activations, seed 0
    python benchmarks/layer_widths_probe.py --task Acrobot-v1:zoo:rate-w8a4-ema --steps 40000 \
        --widths 8/4,8/4,4 8/4,4/4,8 4/4,8/4,8

The run's settings are the zoo benchmark's task (``benchmarks/zoo.py``); the widths are per layer, the head last
(``QuantConfig.parse_layers``), on the task's target (the rate-coded one takes any).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import zoo  # noqa: E402

EPISODES, EVAL_SEED = 10, 1000


def greedy_return(network, env_id: str) -> float:
    """Mean return of ``network``'s greedy actions over the evaluation episodes (seeds 1000...)."""
    import gymnasium as gym

    env, returns = gym.make(env_id), []
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED + episode)
        done, total = False, 0.0
        while not done:
            action = int(network.q_values(obs[None].astype(np.float32)).argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="Acrobot-v1:zoo:rate-w8a4-ema")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--widths", nargs="+", default=["8/4,8/4,4", "8/4,4/4,8", "4/4,8/4,8", "4/4,4/4,4"])
    args = parser.parse_args(argv)
    from rivc.config import QuantConfig

    spec = next(run for run in zoo.grid([args.task]) if run.agent == "rivc" and run.seed == args.seed)
    model = zoo.make_model(spec)
    model.learn(args.steps)
    net, states = model.q_network, model._replay_observations(limit=4096)
    trained = net.export()
    q = trained.q_values(states)
    top2 = np.sort(q, axis=1)[:, -2:]
    print(f"{args.task}, seed {args.seed}, {args.steps} steps: greedy return {greedy_return(trained, spec.env_id):.1f}, "
          f"Q mean {q.mean():.2f}, median gap between the best two actions {np.median(top2[:, 1] - top2[:, 0]):.2f}")
    print("| widths | actions as trained | mean abs dQ | greedy return |\n|---|---:|---:|---:|")
    for widths in args.widths:
        other = net.with_config(QuantConfig.parse_layers(widths)).export()
        q_other = other.q_values(states)
        agreement = float(np.mean(q_other.argmax(axis=1) == q.argmax(axis=1)))
        print(f"| {widths} | {100 * agreement:.1f} % | {np.abs(q_other - q).mean():.3f} | "
              f"{greedy_return(other, spec.env_id):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
