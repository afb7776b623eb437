"""Trace one RIVC run: every 1,000 steps, the PACT clips, how many hidden activations sit at the clip
or at 0, the greedy-action balance and the training episodes' length (what failing seeds look like).

    python benchmarks/trace_run.py --seed 2                        # CartPole-v1 on the RL Zoo's settings
    python benchmarks/trace_run.py --seed 2 --stop 14000 --rivc '{"calibration": {"clips": false}}'

The run keeps its full budget's exploration schedule (``--stop`` ends it early, as a callback would).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop", type=int, default=None, help="end after this many steps (default: the budget)")
    parser.add_argument("--rivc", default="{}", help="RIVC keyword arguments on top of the Zoo's (JSON)")
    args = parser.parse_args(argv)

    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    import rivc.envs  # noqa: F401
    from rivc.agents import RIVC
    from rivc.agents.hyperparams import zoo_hyperparams

    torch.set_num_threads(1)
    zoo = zoo_hyperparams(args.env)
    model = RIVC("MlpPolicy", args.env, seed=args.seed, **{**zoo.kwargs, **json.loads(args.rivc)})
    stop = args.stop or zoo.timesteps
    print("steps | clips | at the clip per hidden layer | at 0 | greedy action shares | training episode length")

    class Trace(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % 1000 == 0 and self.model.spiking_policy is not None:
                obs = self.model._replay_observations(limit=512)
                network = self.model.spiking_policy.network  # the SNN's integer network
                hidden, acc = network.forward_codes(obs)
                q = network.head_values(acc * network.layers[-1].scale)
                shares = np.bincount(q.argmax(axis=1), minlength=q.shape[1]) / len(q)
                lengths = [episode["l"] for episode in self.model.ep_info_buffer]
                clips = [np.round(c.detach().numpy(), 3).tolist() for c in self.model.q_network.clips]
                print(f"{self.num_timesteps} | {clips} | "
                      f"{[round(float(np.mean(h == network.levels(i))), 2) for i, h in enumerate(hidden)]} | "
                      f"{[round(float(np.mean(h == 0)), 2) for h in hidden]} | {shares.round(2).tolist()} | "
                      f"{np.mean(lengths) if lengths else 0:.1f}", flush=True)
            return self.num_timesteps < stop

    model.learn(zoo.timesteps, callback=Trace())
    return 0


if __name__ == "__main__":
    sys.exit(main())
