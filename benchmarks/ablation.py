"""The paper's ablation: variants fpnn / naive / qat / gap / rivc x bit widths x seeds x tasks.

    python benchmarks/ablation.py --quick        # about 10 minutes on 2 cores (4-bit only)
    python benchmarks/ablation.py                # full: 2, 4 and 8 bits (8 for rivc and naive)
    python benchmarks/ablation.py --report-only  # rebuild docs/ from stored results

Each run trains on the rate-coded target (``target="rate"``: the synchronous integrate-and-fire
schedule whose conversion error the paper's ablation is about, and the arithmetic the stored records
were measured with) with the snntorch backend and the task's tuned hyperparameters
(``rivc.agents.hyperparams``, from ``benchmarks/tune.py``; every variant gets the same ones, less those it
never reads), evaluates the acting policy (the SNN; the float network for fpnn) along the way,
and is stored as one JSON file (written atomically), so an interrupted
sweep resumes where it stopped. Runs go to parallel worker processes, one per core. The report
is ``docs/RESULTS.md`` (``docs/quick/RESULTS.md`` for --quick) plus learning-curve and
conversion-agreement PNGs; the per-run records live in ``docs/results/`` and are committed, so a
sweep can be resumed on another machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("fpnn", "naive", "qat", "gap", "rivc")
TASKS = {  # env id -> (quick steps, full steps)
    "CartPole-v1": (15_000, 40_000),
    "rivc/ArmReach-v0": (20_000, 60_000),
    "rivc/MobileReach-v0": (20_000, 60_000),
}
TARGET = "rate"  # the chip target of every run (the Akida targets convert exactly: agreement 1.0)
INPUT_RANGE = "space"  # the space's bounds, as every stored record ran (RIVC's default until 2026-12-06)
CLIP_DECAY = None  # learned clips at every width, as every stored record ran (the default)
REWARD_SCALE = 1.0  # the rewards as they are, as every stored record ran (the default until 2026-12-06)
GAP_CLIP = None  # the paper's unbounded gap term: the update the ablation is of, and as every record ran
EVAL_POINTS = 8  # learning-curve evaluations per run
EVAL_EPISODES = 5  # per curve point; the final evaluation uses 20
COLORS = dict(zip(VARIANTS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
STYLES = {2: ":", 4: "-", 8: "--"}  # line style per bit width


@dataclass(frozen=True)
class RunSpec:
    env_id: str
    variant: str
    bits: int
    seed: int
    timesteps: int
    params: tuple[tuple[str, Any], ...] = ()  # RIVC keyword arguments beyond the defaults, sorted

    @property
    def key(self) -> str:
        key = f"{self.env_id.replace('/', '_')}__{self.variant}__{self.bits}bit__seed{self.seed}__{self.timesteps}"
        return key + "".join(f"__{name}={value}" for name, value in self.params)


def run_params(variant: str, params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The hyperparameters a run of ``variant`` reads, as a sorted tuple (part of the run's key)."""
    from rivc.agents.hyperparams import effective_hyperparams

    return tuple(sorted(effective_hyperparams(variant, params).items()))


def grid(quick: bool, seeds: int) -> list[RunSpec]:
    """Every run of the sweep; each task uses its tuned hyperparameters (rivc.agents.hyperparams) for all variants."""
    from rivc.agents.hyperparams import tuned_hyperparams

    runs = []
    for env_id, (quick_steps, full_steps) in TASKS.items():
        tuned = tuned_hyperparams(env_id)
        for bits in ((4,) if quick else (2, 4, 8)):
            for variant in VARIANTS:
                if bits == 8 and variant not in ("rivc", "naive"):
                    continue
                if variant == "fpnn" and bits != 4:  # the float network acts: bit widths do not matter
                    continue
                for seed in range(seeds):
                    runs.append(RunSpec(env_id, variant, bits, seed, quick_steps if quick else full_steps,
                                        run_params(variant, tuned)))
    return runs


def evaluate(model, env_id: str, episodes: int, seed: int) -> tuple[float, float]:
    """Mean return and success rate (NaN where the env reports none) of the acting policy."""
    import gymnasium as gym

    from rivc.agents.rollout import rollout

    result = rollout(model, gym.make(env_id), episodes, seed=seed)
    return result.mean_return, np.nan if result.success_rate is None else result.success_rate


def make_model(spec: RunSpec):
    """The untrained agent of one run (one torch thread: runs go to parallel processes)."""
    import torch

    import rivc.envs  # noqa: F401
    from rivc.agents import RIVC

    torch.set_num_threads(1)
    params = {"calibration": {"input_range": INPUT_RANGE, "clip_decay": CLIP_DECAY}, "reward_scale": REWARD_SCALE,
              "gap_clip": GAP_CLIP, **dict(spec.params)}
    return RIVC("MlpPolicy", spec.env_id, target=TARGET, variant=spec.variant, seed=spec.seed,
                quant={"weight_bits": spec.bits, "activation_bits": spec.bits, "input_bits": 8}, **params)


def run_one(spec: RunSpec) -> dict:
    """Train one configuration and return its record (curves, final scores, wall time)."""
    from stable_baselines3.common.callbacks import BaseCallback

    start = time.perf_counter()
    model = make_model(spec)
    curve: list[list[float]] = []
    agreement: list[list[float]] = []
    every = spec.timesteps // EVAL_POINTS

    class Recorder(BaseCallback):
        def _on_step(self) -> bool:
            acting = self.model.spiking_policy is not None or not self.model.snn_acting
            if self.num_timesteps % every == 0 and acting:  # the SNN exists from the end of warm-up
                mean, success = evaluate(self.model, spec.env_id, EVAL_EPISODES, seed=10_000 + self.num_timesteps)
                curve.append([self.num_timesteps, mean, success])
                error = self.model.conversion_error() if self.model.snn_acting else None
                if error is not None:
                    agreement.append([self.num_timesteps, error.action_agreement])
            return True

    model.learn(spec.timesteps, callback=Recorder())
    final_return, final_success = evaluate(model, spec.env_id, 20, seed=100_000)
    final_agreement = None
    if model.snn_acting and model.spiking_policy is not None:
        error = model.conversion_error()
        final_agreement = None if error is None else error.action_agreement
    return {
        **asdict(spec), "params": dict(spec.params), "final_return": final_return, "final_success": final_success,
        "final_agreement": final_agreement, "curve": curve, "agreement_curve": agreement,
        "wall_seconds": time.perf_counter() - start,
    }


def _store(results_dir: Path, record: dict, key: str) -> None:
    from rivc.integer_net import atomic_write_bytes

    atomic_write_bytes(results_dir / f"{key}.json", json.dumps(record).encode())


@contextlib.contextmanager
def executor(workers: int, cluster: str | None = None) -> Iterator[Executor]:
    """A ``concurrent.futures`` executor: a local process pool, or a Dask cluster at ``cluster``
    (``tcp://host:8786``; ``pip install 'rivc[distributed]'``), so one sweep scales from a laptop to a cluster."""
    if cluster is None:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield pool
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("--cluster needs Dask's distributed package: pip install 'rivc[distributed]'") from exc
    with Client(cluster) as client:
        yield client.get_executor()


def run_sweep(todo: list, run: Callable[[Any], dict], store: Callable[[Any, dict], None],
              describe: Callable[[Any, dict], str], workers: int, cluster: str | None = None) -> None:
    """Run ``run(spec)`` for each spec on the executor and ``store`` each record as it finishes; a run that fails is
    reported in one line and the others go on (their records kept); a ``SystemExit`` at the end names the failures."""
    failures = []
    with executor(workers, cluster) as pool:
        futures = {pool.submit(run, spec): spec for spec in todo}
        for done, future in enumerate(as_completed(futures), start=1):
            spec = futures[future]
            try:
                record = future.result()
            except Exception as exc:  # noqa: BLE001 (one run's failure: reported, the sweep goes on)
                failures.append(spec.key)
                print(f"[{done}/{len(todo)}] {spec.key} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            store(spec, record)
            print(f"[{done}/{len(todo)}] {describe(spec, record)}", flush=True)
    if failures:
        raise SystemExit(f"{len(failures)} of {len(todo)} runs failed ({', '.join(failures)}); the others are stored: "
                         "run the sweep again to retry them")


def sweep(runs: list[RunSpec], results_dir: Path, workers: int, cluster: str | None = None) -> None:
    """Run every spec without a stored record (one JSON each, written atomically as it finishes):
    an interrupted sweep resumes where it stopped."""
    results_dir.mkdir(parents=True, exist_ok=True)
    todo = [spec for spec in runs if not (results_dir / f"{spec.key}.json").exists()]
    where = f"the Dask cluster at {cluster}" if cluster else f"{workers} workers"
    print(f"{len(runs)} runs, {len(runs) - len(todo)} already stored, {len(todo)} to go on {where}", flush=True)
    run_sweep(todo, run_one, lambda spec, record: _store(results_dir, record, spec.key),
              lambda spec, record: f"{spec.env_id} {spec.variant} {spec.bits}-bit seed {spec.seed}: return "
                                   f"{record['final_return']:.1f} ({record['wall_seconds']:.0f} s)", workers, cluster)


def load_records(results_dir: Path, runs: list[RunSpec]) -> list[dict]:
    return [json.loads((results_dir / f"{s.key}.json").read_text()) for s in runs if (results_dir / f"{s.key}.json").exists()]


def _fmt(values: list[float], digits: int = 1) -> str:
    values = [v for v in values if v is not None and not np.isnan(v)]
    if not values:
        return "-"
    return f"{np.mean(values):.{digits}f} +- {np.std(values):.{digits}f}"


def summary(records: list[dict]) -> list[str]:
    """The paper's claims, checked per task: RIVC at 4 bits vs fpnn, and RIVC vs naive per bit width."""
    def mean_return(env_id: str, variant: str, bits: int) -> float | None:
        values = [r["final_return"] for r in records if (r["env_id"], r["variant"], r["bits"]) == (env_id, variant, bits)]
        return float(np.mean(values)) if values else None

    all_bits = sorted({r["bits"] for r in records})
    lines = ["## Summary", "", "Mean final return over seeds. Target: RIVC at 4 bits >= 90 % of fpnn; naive clearly "
             "below RIVC at 2 and 4 bits.", "",
             "| task | rivc 4-bit / fpnn | " + " | ".join(f"rivc vs naive, {b}-bit" for b in all_bits) + " |",
             "|---|---|" + "---|" * len(all_bits)]
    for env_id in TASKS:
        rivc4, fpnn = mean_return(env_id, "rivc", 4), mean_return(env_id, "fpnn", 4)
        if rivc4 is None:
            continue
        ratio = f"{rivc4:.1f} / {fpnn:.1f} = {rivc4 / fpnn:.0%}" if fpnn and fpnn > 0 else "-"
        cells = []
        for bits in all_bits:
            rivc, naive = mean_return(env_id, "rivc", bits), mean_return(env_id, "naive", bits)
            cells.append("-" if rivc is None or naive is None else f"{rivc:.1f} vs {naive:.1f}")
        lines.append(f"| {env_id} | {ratio} | " + " | ".join(cells) + " |")
    return lines + [""]


def report(records: list[dict], docs: Path, title: str) -> Path:
    """Write ``docs/RESULTS.md`` and the PNG plots from stored records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs.mkdir(parents=True, exist_ok=True)
    lines = [f"# RIVC ablation: {title}", "",
             "SNN-policy return (the float network's for fpnn) and success rate after training, mean +- std",
             "over seeds; agreement = greedy-action agreement of the SNN with the trained network on replay",
             "states at the end of training. Produced by `python benchmarks/ablation.py"
             + (" --quick" if "quick" in title else "") + "`.", ""]
    lines += summary(records)
    for env_id in TASKS:
        task = [r for r in records if r["env_id"] == env_id]
        if not task:
            continue
        rivc_params = next((r.get("params") for r in task if r["variant"] == "rivc"), None)
        lines += [f"## {env_id}", "", "Hyperparameters (agents/hyperparams.py; variants share them, less those they "
                  f"never read): {', '.join(f'{k}={v}' for k, v in sorted((rivc_params or {}).items())) or 'RIVC defaults'}.",
                  "", "| variant | bits | seeds | return | success | agreement | wall s |",
                  "|---|---|---|---|---|---|---|"]
        for bits in sorted({r["bits"] for r in task}):
            for variant in VARIANTS:
                rs = [r for r in task if r["variant"] == variant and r["bits"] == bits]
                if rs:
                    lines.append(
                        f"| {variant} | {bits} | {len(rs)} | {_fmt([r['final_return'] for r in rs])} | "
                        f"{_fmt([r['final_success'] for r in rs], 2)} | {_fmt([r['final_agreement'] for r in rs], 3)} | "
                        f"{np.mean([r['wall_seconds'] for r in rs]):.0f} |")
        lines.append("")
        figure, axes = plt.subplots(1, 2, figsize=(11, 4))
        for variant in VARIANTS:
            for bits in sorted({r["bits"] for r in task}):
                rs = [r for r in task if r["variant"] == variant and r["bits"] == bits and r["curve"]]
                if not rs:
                    continue
                length = min(len(r["curve"]) for r in rs)
                steps = np.array(rs[0]["curve"][:length])[:, 0]
                values = np.array([np.array(r["curve"][:length])[:, 1] for r in rs])
                label, style = f"{variant} {bits}-bit", dict(color=COLORS[variant], linestyle=STYLES.get(bits, "-"))
                axes[0].plot(steps, values.mean(0), label=label, **style)
                axes[0].fill_between(steps, values.mean(0) - values.std(0), values.mean(0) + values.std(0),
                                     color=COLORS[variant], alpha=0.12)
                agree = [r for r in rs if r["agreement_curve"]]
                if agree:
                    n = min(len(r["agreement_curve"]) for r in agree)
                    a_steps = np.array(agree[0]["agreement_curve"][:n])[:, 0]
                    a_values = np.array([np.array(r["agreement_curve"][:n])[:, 1] for r in agree])
                    axes[1].plot(a_steps, a_values.mean(0), label=label, **style)
        axes[0].set(title=f"{env_id}: return of the acting policy", xlabel="environment steps", ylabel="return")
        axes[1].set(title="SNN vs trained network: action agreement", xlabel="environment steps", ylabel="agreement")
        axes[0].legend(fontsize=7)
        axes[1].legend(fontsize=7)
        figure.tight_layout()
        name = f"curves_{env_id.replace('/', '_')}.png"
        figure.savefig(docs / name, dpi=90)
        plt.close(figure)
        lines += [f"![{env_id}]({name})", ""]
    path = docs / "RESULTS.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4-bit only, short budgets (about 10 min on 2 cores)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cluster", default=None, help="a Dask scheduler address (tcp://host:8786) instead of local workers")
    parser.add_argument("--results", default=None, help="per-run records (default docs/results/quick|full)")
    parser.add_argument("--docs", default=None, help="report folder (default docs/ for full, docs/quick/ for quick)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    docs_root = Path(__file__).resolve().parents[1] / "docs"
    results = Path(args.results or docs_root / "results" / mode)
    docs = Path(args.docs or (docs_root / "quick" if args.quick else docs_root))
    runs = grid(args.quick, args.seeds)
    if not args.report_only:
        sweep(runs, results, args.workers, args.cluster)
    records = load_records(results, runs)
    done = "" if len(records) == len(runs) else f", {len(records)} of {len(runs)} runs (incomplete)"
    path = report(records, docs, f"{mode} mode, {args.seeds} seeds{done}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
