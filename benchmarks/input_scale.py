"""Is RIVC's input scale a cause? SB3's DQN on inputs normalised as RIVC normalises them ([-1, 1] over the
observation space's bounds), and RIVC's float loop (``fpnn``) with an input range that keeps the observations near
their own scale, beside the Zoo sweep's DQN (raw inputs) and ``fpnn`` (normalised) rows: the RL Zoo's settings and
budget, the final greedy policy's return over 20 episodes (seeds 1000-1019, as benchmarks/zoo.py). Resumable: a
record that exists is not run again. Records: docs/results/input_scale/<env>.jsonl.

    python benchmarks/input_scale.py --env MountainCar-v0 --seeds 0-4 --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORDS = ROOT / "docs" / "results" / "input_scale"
PROBES = {
    "dqn-normalised": "SB3 DQN, inputs mapped to [-1, 1] over the space's bounds (RIVC's float input)",
    "fpnn-near-raw": "RIVC's float loop (fpnn), input range -1.2..1.2 (MountainCar's states at about their own scale; "
                     "another task's may be clipped)",
}


def make_env(env_id: str, probe: str):
    import gymnasium as gym
    import numpy as np
    from gymnasium.wrappers import TransformObservation

    env = gym.make(env_id)
    if probe == "dqn-normalised":
        low, high = env.observation_space.low, env.observation_space.high
        space = gym.spaces.Box(-1.0, 1.0, low.shape, np.float32)
        env = TransformObservation(env, lambda o: (2 * (o - low) / (high - low) - 1).astype(np.float32), space)
    return env


def run_one(env_id: str, probe: str, seed: int) -> dict:
    import torch
    from stable_baselines3 import DQN

    from benchmarks.zoo import EVAL_EPISODES, EVAL_SEED
    from rivc.agents import RIVC
    from rivc.agents.hyperparams import zoo_hyperparams
    from rivc.agents.rollout import rollout

    torch.set_num_threads(1)
    zoo = zoo_hyperparams(env_id)
    kwargs = dict(zoo.kwargs)
    if probe == "dqn-normalised":
        model = DQN("MlpPolicy", make_env(env_id, probe), seed=seed, device="cpu", **kwargs)
    else:
        kwargs["policy_kwargs"] = dict(kwargs.get("policy_kwargs", {}), obs_range=[-1.2, 1.2])
        model = RIVC("MlpPolicy", make_env(env_id, probe), seed=seed, variant="fpnn", **kwargs)
    model.learn(zoo.timesteps)
    final = rollout(model, make_env(env_id, probe), EVAL_EPISODES, seed=EVAL_SEED)
    return {"env_id": env_id, "probe": probe, "about": PROBES[probe], "seed": seed, "timesteps": zoo.timesteps,
            "kwargs": kwargs, "final_return": float(final.mean_return)}


def seeds(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MountainCar-v0")
    parser.add_argument("--seeds", type=seeds, default=seeds("0-4"))
    parser.add_argument("--probe", action="append", choices=list(PROBES))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    path = RECORDS / f"{args.env.replace('/', '_')}.jsonl"
    done = set()
    if path.is_file():
        done = {(r["probe"], r["seed"]) for r in map(json.loads, path.read_text().splitlines())}
    todo = [(p, s) for p in (args.probe or PROBES) for s in args.seeds if (p, s) not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool:
        for record in pool.map(run_one, [args.env] * len(todo), *zip(*todo)) if todo else ():
            with path.open("a") as out:  # one line per finished run: an interrupted sweep resumes
                out.write(json.dumps(record) + "\n")
            print(f"{record['probe']} seed {record['seed']}: {record['final_return']:.1f}")
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    for probe in PROBES:
        returns = [r["final_return"] for r in records if r["probe"] == probe]
        if returns:
            print(f"{probe}: {sum(returns) / len(returns):.1f} mean / {min(returns):.1f} worst over {len(returns)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
