"""Tune RIVC's hyperparameters per task: a one-at-a-time sweep around the defaults, then one combination.

    python benchmarks/tune.py                         # all ablation tasks (about 40 minutes on 2 cores)
    python benchmarks/tune.py --tasks CartPole-v1     # one task
    python benchmarks/tune.py --report-only           # rebuild docs/TUNING.md from stored runs

RIVC at 4 bits (weights and activations), the ablation's full step budget, on tuning seeds the
ablation never evaluates (100, 101), so the tuned values are not fitted to the reported seeds.
Stage 1 changes one parameter of ``rivc.agents.hyperparams.TUNABLE`` at a time; stage 2 combines, per
task, every change that beat the defaults. The configuration with the best score wins, where

    score = mean over seeds of ( final return + mean return over the second half of the curve ) / 2

(the final evaluation alone is 20 episodes of one policy snapshot, too noisy to rank on). A change
counts as better only when its score beats the defaults' by more than the seed spread (the larger
std of the two); otherwise the defaults stay: two seeds cannot tell such changes from noise. Runs
are stored like the ablation's (one JSON each, atomic, resumable) in ``docs/results/tuning``;
the report is ``docs/TUNING.md``, ending with the ``TUNED_HYPERPARAMS`` to put in
``agents/hyperparams.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ablation import TASKS, RunSpec, _fmt, load_records, sweep  # noqa: E402

TUNING_SEEDS = (100, 101)
BITS = 4


def single_changes() -> list[dict[str, Any]]:
    """The defaults, then every tunable value but the default, one parameter at a time."""
    from rivc.agents.hyperparams import TUNABLE

    return [{}] + [{name: value} for name, values in TUNABLE.items() for value in values[1:]]


def spec(env_id: str, params: dict[str, Any], seed: int) -> RunSpec:
    return RunSpec(env_id, "rivc", BITS, seed, TASKS[env_id][1], tuple(sorted(params.items())))


def score(record: dict) -> float:
    """Final return and second-half curve return, averaged: what a config is ranked by."""
    curve = np.array(record["curve"])[:, 1]
    return 0.5 * (record["final_return"] + float(curve[len(curve) // 2:].mean()))


def scored(env_id: str, configs: list[dict[str, Any]], results: Path) -> list[tuple[dict[str, Any], list[dict]]]:
    """Each config with its stored records over the tuning seeds (configs with none are left out)."""
    out = []
    for params in configs:
        records = load_records(results, [spec(env_id, params, seed) for seed in TUNING_SEEDS])
        if records:
            out.append((params, records))
    return out


def mean_score(records: list[dict]) -> float:
    return float(np.mean([score(r) for r in records]))


def beats(records: list[dict], baseline: list[dict]) -> bool:
    """Better than the baseline by more than the seed spread of either."""
    spread = max(float(np.std([score(r) for r in rs])) for rs in (records, baseline))
    return mean_score(records) - mean_score(baseline) > spread


def defaults_records(stage1: list[tuple[dict[str, Any], list[dict]]]) -> list[dict] | None:
    return next((records for params, records in stage1 if not params), None)


def combination(env_id: str, results: Path) -> dict[str, Any] | None:
    """Stage 2: the best value of each parameter whose change beat the defaults, all together.

    None when fewer than two parameters improved (then the combination is one of stage 1's runs).
    """
    stage1 = scored(env_id, single_changes(), results)
    baseline = defaults_records(stage1)
    if baseline is None:
        return None
    best: dict[str, tuple[float, Any]] = {}
    for params, records in stage1:
        for name, value in params.items():
            value_score = mean_score(records)
            if beats(records, baseline) and value_score > best.get(name, (-np.inf, None))[0]:
                best[name] = (value_score, value)
    return {name: value for name, (_, value) in best.items()} if len(best) >= 2 else None


def configs_for(env_id: str, results: Path) -> list[dict[str, Any]]:
    combined = combination(env_id, results)
    return single_changes() + ([combined] if combined else [])


def describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"


def report(tasks: list[str], results: Path, docs: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Write docs/TUNING.md; return it and the chosen parameters per task."""
    from rivc.agents.hyperparams import TUNABLE

    chosen: dict[str, dict[str, Any]] = {}
    lines = ["# RIVC hyperparameter tuning", "",
             f"RIVC, {BITS}-bit weights and activations, snntorch backend, seeds {', '.join(map(str, TUNING_SEEDS))} "
             "(the ablation reports seeds 0-2). Produced by `python benchmarks/tune.py`.",
             "score = (final return + mean return over the second half of the learning curve) / 2, "
             "mean over seeds; success and agreement at the end of training.", "",
             "Values tried (the first is RIVC's default): "
             + "; ".join(f"{name} {', '.join(map(str, values))}" for name, values in TUNABLE.items()) + ".", ""]
    for env_id in tasks:
        rows = scored(env_id, configs_for(env_id, results), results)
        if not rows:
            continue
        rows.sort(key=lambda row: -mean_score(row[1]))
        baseline = defaults_records(rows)
        better = [params for params, records in rows if baseline is None or beats(records, baseline)]
        chosen[env_id] = better[0] if better else {}
        lines += [f"## {env_id} ({TASKS[env_id][1]:,} steps)", "",
                  "| configuration | seeds | score | beats defaults | final return | success | agreement |",
                  "|---|---|---|---|---|---|---|"]
        for params, records in rows:
            mark = " **(chosen)**" if params == chosen[env_id] else ""
            verdict = "-" if not params else ("yes" if baseline is not None and beats(records, baseline) else "no")
            lines.append(
                f"| {describe(params)}{mark} | {len(records)} | {_fmt([score(r) for r in records])} | {verdict} | "
                f"{_fmt([r['final_return'] for r in records])} | {_fmt([r['final_success'] for r in records], 2)} | "
                f"{_fmt([r['final_agreement'] for r in records], 3)} |")
        lines.append("")
    lines += ["## Chosen (agents/hyperparams.py)", "", "```python", "TUNED_HYPERPARAMS = {"]
    lines += [f"    {env_id!r}: {params!r}," for env_id, params in chosen.items()]
    lines += ["}", "```", ""]
    docs.mkdir(parents=True, exist_ok=True)
    path = docs / "TUNING.md"
    path.write_text("\n".join(lines))
    return path, chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cluster", default=None, help="a Dask scheduler address (tcp://host:8786) instead of local workers")
    parser.add_argument("--results", default=None, help="per-run records (default docs/results/tuning)")
    parser.add_argument("--docs", default=None, help="report folder (default docs/)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    docs_root = Path(__file__).resolve().parents[1] / "docs"
    docs = Path(args.docs) if args.docs else docs_root
    results = Path(args.results) if args.results else docs_root / "results" / "tuning"
    if not args.report_only:
        for stage in (1, 2):  # stage 2's combination depends on stage 1's scores
            runs = [spec(env_id, params, seed) for env_id in args.tasks
                    for params in (single_changes() if stage == 1 else configs_for(env_id, results))
                    for seed in TUNING_SEEDS]
            print(f"stage {stage}:", end=" ")
            sweep(runs, results, args.workers, args.cluster)
    path, chosen = report(args.tasks, results, docs)
    for env_id, params in chosen.items():
        print(f"{env_id}: {describe(params)}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
