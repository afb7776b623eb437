"""What trained policies cost per action on each chip target: `python benchmarks/cost_table.py` -> docs/COST.md.

Trains RIVC (4-bit, tuned settings, one seed: this table is about cost, not learning) on CartPole and the
robot tasks for each target, exports the acting policy, and runs `rivc report` on the states it visits.
Resumable: a task whose report JSON exists is not trained again (runs/cost/).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rivc.agents.cli import main as rivc

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"CartPole-v1": 40_000, "rivc/ArmReach-v0": 60_000, "rivc/MobileReach-v0": 60_000}
TARGETS = ("akida", "rate")


def measure(env_id: str, target: str, timesteps: int, runs: Path, seed: int) -> dict:
    folder = runs / f"{env_id.replace('/', '_')}__{target}__seed{seed}"
    report = folder / "cost.json"
    if not report.is_file():
        for argv in (["train", "--env", env_id, "--target", target, "--bits", "4", "--timesteps", str(timesteps),
                      "--seed", str(seed), "--out", str(folder), "--force"],  # (a run cut short is run again)
                     ["export", str(folder), "--out", str(folder / "policy"), "--episodes", "1", "--force"],
                     ["report", str(folder / "policy"), "--episodes", "5", "--json", str(report)]):
            if rivc(argv) != 0:
                raise SystemExit(f"rivc {' '.join(argv)} failed")
    cost = json.loads(report.read_text())
    evaluation = json.loads((folder / "summary.json").read_text())["evaluation"]
    return {"env_id": env_id, "target": target, "timesteps": timesteps, "seed": seed, "cost": cost,
            "evaluation": evaluation}


def table(rows: list[dict]) -> str:
    lines = ["| task | target | SNN return (success) | input MACs | accumulates | spikes | zero activations | "
             "parameters (KiB) | float32 (KiB) | energy ESTIMATE (pJ) | float network (pJ) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        c, e = row["cost"], row["evaluation"]
        success = e.get("success_rate")
        score = f"{e['mean']:.1f}" + (f" ({100 * success:.0f} %)" if success is not None else "")
        lines.append(f"| {row['env_id']} | {row['target']} | {score} | {c['input_macs']:.0f} | {c['accumulates']:.0f} | "
                     f"{c['spikes']:.0f} | {100 * c['activation_sparsity']:.0f} % | {c['memory_bits'] / 8192:.2f} | "
                     f"{c['float_memory_bits'] / 8192:.2f} | {c['energy_pj']:.0f} | {c['float_energy_pj']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "cost"))
    args = parser.parse_args()
    rows = [measure(env_id, target, steps, Path(args.runs), args.seed) for env_id, steps in TASKS.items()
            for target in TARGETS]
    text = f"""# What a policy costs per action

`python benchmarks/cost_table.py` (`rivc train` -> `rivc export` -> `rivc report` per task and target; RIVC
4-bit weights and activations, 8-bit inputs, tuned settings, seed {args.seed}). Per action, mean over the
states of 5 greedy episodes of the exported policy (`rivc.neurochip.cost`; the counts equal NeuroBench's
SynapticOperations and ActivationSparsity, tests/test_cost.py):

{table(rows)}

- *input MACs*: the observation's 8-bit codes times the first layer's weights (the rate target presents
  them at each of its T = 15 steps, so 15 times); *accumulates*: one per spike and non-zero outgoing
  weight; *zero activations*: hidden spike counts that are 0.
- *parameters*: weights, biases and requantization constants at the target's widths, against the same
  network as float32.
- *energy*: an ESTIMATE of the arithmetic alone, from Horowitz (ISSCC 2014, 45 nm: int8 multiply 0.2 pJ,
  int32 add 0.1 pJ, fp32 multiply 3.7 pJ and add 0.9 pJ), against the float network's MACs on a CPU. It
  leaves out memory traffic, static power and the chip itself; only a board's `model.statistics` measures
  energy (no board here).
- SNN return: the training run's final evaluation, 10 episodes (one seed: the learning results over seeds
  are in docs/RESULTS.md and docs/ZOO.md).
"""
    (ROOT / "docs" / "COST.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
