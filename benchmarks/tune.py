"""Tune RIVC's own knobs per task with Optuna: TPE sampling, a median pruner on learning-curve evaluations, seeds
as repeats, and a storage that several processes and machines share.

    python benchmarks/tune.py --env CartPole-v1 --trials 20            # `make tune`; run it again (or on
                                                                        # another machine) to add trials
    python benchmarks/tune.py --env CartPole-v1 --storage sqlite:///tune.db   # a database instead of the journal
    python benchmarks/tune.py --report                                  # docs/TUNING.md from the studies

The search space is ``rivc.agents.hyperparams.TUNABLE`` (RIVC at 4 bits, target ``rate``, as the ablation runs).
Each trial trains one run per tuning seed (seeds the ablation never evaluates), evaluating the SNN policy at
``EVAL_POINTS`` points of its curve; a trial's score is the mean over seeds of (final return + mean return over
the second half of the curve) / 2, the final evaluation alone being too noisy to rank on. The median pruner stops
a trial whose curve falls below the median of earlier trials at the same point. The default storage is a journal
file (``runs/tune/study.log``): Optuna appends to it under a file lock, so `make tune` in two processes, or on two
machines that share the folder, adds to one study.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TUNING_SEEDS = (100, 101)
BITS, TARGET = 4, "rate"
EVAL_POINTS, EVAL_EPISODES, FINAL_EPISODES = 8, 5, 10
DEFAULT_STORAGE = ROOT / "runs" / "tune" / "study.log"
DEFAULT_TIMESTEPS = {"CartPole-v1": 40_000, "rivc/ArmReach-v0": 60_000, "rivc/MobileReach-v0": 60_000}


def storage_of(text: str | Path) -> Any:
    """A database URL as it is; a file path as a journal file (created with its folder)."""
    import optuna

    text = str(text)
    if "://" in text:
        return text
    Path(text).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(text))


def score(curve: list[float], final: float) -> float:
    """(final return + mean return over the second half of the curve) / 2."""
    return 0.5 * (final + float(np.mean(curve[len(curve) // 2:])))


def sample(trial: Any) -> dict[str, Any]:
    """RIVC's keyword arguments from ``TUNABLE``'s values (the first of each is the agent's default)."""
    from rivc.agents.hyperparams import TUNABLE

    return {name: trial.suggest_categorical(name, list(values)) for name, values in TUNABLE.items()}


def objective(trial: Any, env_id: str, timesteps: int, seeds: tuple[int, ...]) -> float:
    """Train one run per seed with the trial's settings; report each curve point to the pruner."""
    import gymnasium as gym
    import optuna

    import rivc.envs  # noqa: F401
    from rivc.agents import RIVC
    from rivc.agents.rollout import rollout

    from stable_baselines3.common.callbacks import BaseCallback

    params = sample(trial)
    every = max(timesteps // EVAL_POINTS, 1)
    scores, points = [], []  # points: every curve evaluation so far, all seeds

    class CurvePoints(BaseCallback):
        """Evaluate the acting policy every ``every`` steps of one ``learn`` (the schedule `rivc train` runs) and
        report the mean of all points so far to the pruner; stop the run when it prunes."""

        def __init__(self) -> None:
            super().__init__()
            self.curve, self.pruned = [], False

        def _on_step(self) -> bool:
            if self.num_timesteps % every:
                return True
            self.curve.append(rollout(self.model, gym.make(env_id), EVAL_EPISODES,
                                      seed=10_000 + len(self.curve)).mean_return)
            points.append(self.curve[-1])
            trial.report(float(np.mean(points)), len(points) - 1)
            self.pruned = trial.should_prune()
            return not self.pruned

    for seed in seeds:
        model = RIVC("MlpPolicy", gym.make(env_id), target=TARGET, quant={"weight_bits": BITS, "activation_bits": BITS},
                     seed=seed, verbose=0, **params)
        points_of_run = CurvePoints()
        model.learn(every * EVAL_POINTS, callback=points_of_run)
        if points_of_run.pruned:
            raise optuna.TrialPruned()
        final = rollout(model, gym.make(env_id), FINAL_EPISODES, seed=20_000).mean_return
        scores.append(score(points_of_run.curve, final))
        trial.set_user_attr(f"seed{seed}", round(scores[-1], 2))
    return float(np.mean(scores))


def tune(env_id: str, trials: int, storage: Any, timesteps: int, seeds: tuple[int, ...], study_name: str | None = None):
    import optuna

    from rivc.agents.config import DEFAULT_GAP_CLIP as bound  # what the trials run (no trial samples it)

    study = optuna.create_study(  # the budget in the name: trials of other budgets do not mix in one study
        study_name=study_name or f"rivc-{env_id.replace('/', '_')}-{timesteps}", storage=storage, direction="maximize",
        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=int(time.time_ns() % 2**31)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=EVAL_POINTS // 2))
    if study.user_attrs.get("gap_clip", None) != bound and study.trials:  # a study from before: the gap term unbounded
        raise ValueError(f"study {study.study_name!r} ran with the gap term bound at {study.user_attrs.get('gap_clip')}, "
                         f"its trials now run at {bound}: pass another --study")
    study.set_user_attr("gap_clip", bound)
    study.set_user_attr("env_id", env_id)
    study.set_user_attr("timesteps", timesteps)
    study.set_user_attr("seeds", list(seeds))
    study.optimize(lambda trial: objective(trial, env_id, timesteps, seeds), n_trials=trials)
    return study


def report(storage: Any, out: Path, command: str) -> Path:
    """docs/TUNING.md: every study in the storage, its trials ranked, the best settings."""
    import optuna

    lines = ["# Tuning RIVC with Optuna", "",
             f"Generated by `{command}` on {time.strftime('%Y-%m-%d')} from the studies in the storage. TPE sampling, "
             f"median pruning on learning-curve evaluations ({EVAL_POINTS} per run, {EVAL_EPISODES} episodes each), "
             f"RIVC at {BITS} bits on the `{TARGET}` target. Score: mean over the tuning seeds of (final return over "
             f"{FINAL_EPISODES} episodes + mean return over the second half of the curve) / 2. "
             "`rivc.agents.hyperparams.TUNED_HYPERPARAMS` came from an earlier one-at-a-time sweep "
             "([TUNING_SWEEP.md](TUNING_SWEEP.md)); a study here is evidence for changing them only where its best "
             "trial beats the defaults by more than the seed spread.", ""]
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
        attrs = study.user_attrs
        lines += [f"## {summary.study_name}: {attrs.get('env_id')}, {attrs.get('timesteps')} steps per run, seeds "
                  f"{attrs.get('seeds')}", "",
                  f"{len(study.trials)} trials: {len(done)} complete, {len(pruned)} pruned.", ""]
        if done:
            names = sorted({name for t in done for name in t.params})
            lines += ["| rank | score | per seed | " + " | ".join(names) + " |",
                      "|---|---|---|" + "---|" * len(names)]
            for rank, t in enumerate(sorted(done, key=lambda t: -t.value), 1):
                seeds = ", ".join(f"{v}" for k, v in sorted(t.user_attrs.items()) if k.startswith("seed"))
                lines.append(f"| {rank} | {t.value:.1f} | {seeds} | " + " | ".join(str(t.params.get(n)) for n in names)
                             + " |")
            lines += ["", f"Best: {study.best_trial.params} (score {study.best_value:.1f})", ""]
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--trials", type=int, default=20, help="trials this process adds to the study")
    parser.add_argument("--timesteps", type=int, default=None, help="steps per run (default: the ablation's budget)")
    parser.add_argument("--seeds", default=",".join(map(str, TUNING_SEEDS)), help="tuning seeds, the trials' repeats")
    parser.add_argument("--storage", default=str(DEFAULT_STORAGE), help="a journal file, or a database URL")
    parser.add_argument("--study", default=None, help="study name (default: rivc-ENV-TIMESTEPS)")
    parser.add_argument("--report", action="store_true", help="write docs/TUNING.md from the storage's studies")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "TUNING.md")
    args = parser.parse_args(argv)
    storage = storage_of(args.storage)
    if args.report:
        print(f"wrote {report(storage, args.out, 'python benchmarks/tune.py --report')}")
        return 0
    seeds = tuple(int(s) for s in args.seeds.split(","))
    try:
        study = tune(args.env, args.trials, storage, args.timesteps or DEFAULT_TIMESTEPS.get(args.env, 50_000), seeds,
                     args.study)
    except ValueError as exc:  # a study of other settings
        print(f"tune.py: {exc}", file=sys.stderr)
        return 2
    complete = [t for t in study.trials if t.value is not None]
    best = f"best {study.best_trial.params} (score {study.best_value:.1f})" if complete else "none complete"
    print(f"{study.study_name}: {len(study.trials)} trials in {args.storage}; {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
