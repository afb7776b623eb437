"""The `make run` recipe over seeds: `rivc train` (CartPole-v1, 40k steps, best of 16 evaluations kept),
`rivc export --backend akida`, `rivc deploy`, per seed and bit width. Resumable: a seed whose record exists
is not run again. Records: docs/results/recipe/<target>_<widths>.jsonl; prints mean and worst.

    python benchmarks/recipe_seeds.py --bits 8 --seeds 0-4
    python benchmarks/recipe_seeds.py --layer-bits 8/8,8/4,4/32 --seeds 0-4
    python benchmarks/recipe_seeds.py --input-units normalised   # the first layer on the codes' scale (until 2026-12)
    python benchmarks/recipe_seeds.py --input-range space        # the space's bounds, fixed (default until 2026-12-06)
    python benchmarks/recipe_seeds.py --clip-decay 0.99          # the clips follow the activations, not learned
    python benchmarks/recipe_seeds.py --gap-clip none            # the gap term unbounded (default until 2026-12-07)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "results" / "recipe"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "rivc.agents.cli", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"rivc {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def one_seed(seed: int, widths: list[str], target: str, timesteps: int, runs: Path, units: str,
             input_range: str, clip_decay: str, gap_clip: str) -> dict:
    out = runs / f"seed{seed}"
    start = time.perf_counter()
    trained = run("train", "--env", "CartPole-v1", "--target", target, *widths, "--timesteps", str(timesteps), "--force",
                  "--seed", str(seed), "--eval-freq", "2500", "--input-units", units, "--input-range", input_range,
                  "--clip-decay", clip_decay, "--gap-clip", gap_clip, "--out", str(out))
    exported = run("export", str(out), "--backend", "akida", "--out", str(out / "policy"), "--force")
    deployed = run("deploy", str(out / "policy"))
    summary = json.loads((out / "summary.json").read_text())
    final = re.search(r"final policy .*?return ([-\d.]+)", trained)
    return {
        "seed": seed, "target": target, "widths": widths, "timesteps": timesteps, "input_units": units,
        "input_range": input_range, "clip_decay": clip_decay, "gap_clip": gap_clip,
        "input_range_moves": summary["input_range"]["moves"],  # what the range did (fit: the inputs it tracked)
        "tracked_inputs": summary["input_range"].get("tracked_inputs"),
        "kept_step": summary["kept_step"], "return": summary["eval_return_mean"],
        "final_return": float(final.group(1)) if final else None,
        "identical_actions": re.search(r"identical actions to the training-time policy on ([\d.]+) %", exported).group(1),
        "deployed": re.search(r"deployed akida policy return ([-\d.]+)", deployed).group(1),
        "equal_episode_for_episode": "deployed returns equal it episode for episode" in deployed,
        "seconds": round(time.perf_counter() - start, 1), "date": time.strftime("%Y-%m-%d"),
    }


# what older records ran
UNNAMED = {"input_units": "normalised", "input_range": "space", "clip_decay": "learned", "gap_clip": "none"}


def gap_clip(text: str) -> str:
    """An argparse type: the gap term's bound as `rivc train --gap-clip` takes it, written as the records write it
    ("-10", "-1", "none")."""
    from rivc.agents.cli import real_or_none

    bound = real_or_none(-math.inf, 0.0, high_open=True)(text)
    return bound if bound == "none" else f"{bound:g}"


def ran_with(record: dict, key: str):
    """The setting ``key`` a record ran with: its own, or for an older record that names none, ``UNNAMED``'s."""
    return record.get(key, UNNAMED.get(key))


def check_records(path: Path, records: list[dict], settings: dict) -> None:
    """A resumed file holds this recipe's runs only: a record run with other settings stops the sweep."""
    for record in records:
        differ = {key: ran_with(record, key) for key, value in settings.items() if ran_with(record, key) != value}
        if differ:
            raise SystemExit(f"{path}: seed {record['seed']} ran with {differ}, not this recipe's settings: "
                             "move the file away or pass --records DIR")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=None)
    parser.add_argument("--layer-bits", default=None)
    parser.add_argument("--target", default="akida")
    parser.add_argument("--seeds", default="0-4", help="first-last")
    parser.add_argument("--timesteps", type=int, default=40_000)
    parser.add_argument("--input-units", default="observation", choices=["observation", "normalised"])
    parser.add_argument("--input-range", default="fit", choices=["fit", "space", "data", "track"])
    parser.add_argument("--clip-decay", default="learned", help="DECAY or 'learned' (rivc train --clip-decay)")
    parser.add_argument("--gap-clip", type=gap_clip, default=None,
                        help="L0 or 'none' (rivc train --gap-clip); default: RIVC's")
    parser.add_argument("--records", type=Path, default=RECORDS, help=f"the records' folder (default {RECORDS})")
    args = parser.parse_args()
    from rivc.agents.config import DEFAULT_GAP_CLIP

    default_gap_clip = gap_clip(str(DEFAULT_GAP_CLIP))  # (None: "none")
    args.gap_clip = args.gap_clip or default_gap_clip
    widths = ["--layer-bits", args.layer_bits] if args.layer_bits else ["--bits", str(args.bits or 4)]
    tag = f"{args.target}_{(args.layer_bits or f'b{args.bits or 4}').replace('/', '-').replace(',', '_')}"
    tag += "_normalised" if args.input_units == "normalised" else ""
    tag += "" if args.input_range == "fit" else f"_{args.input_range}"  # records without one ran with "space"
    tag += "" if args.clip_decay == "learned" else f"_ema{args.clip_decay}"
    tag += "" if args.gap_clip == default_gap_clip else f"_gapclip{args.gap_clip}"  # records without one: "none"
    first, last = (int(v) for v in args.seeds.split("-"))
    args.records.mkdir(parents=True, exist_ok=True)
    path = args.records / f"{tag}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    check_records(path, records, {"target": args.target, "widths": widths, "input_units": args.input_units,
                                  "input_range": args.input_range, "clip_decay": args.clip_decay,
                                  "gap_clip": args.gap_clip})
    for seed in range(first, last + 1):
        if any(r["seed"] == seed and r["timesteps"] == args.timesteps for r in records):
            continue
        record = one_seed(seed, widths, args.target, args.timesteps, ROOT / "runs" / f"recipe_{tag}", args.input_units,
                          args.input_range, args.clip_decay, args.gap_clip)
        records.append(record)
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    returns = [r["return"] for r in records if first <= r["seed"] <= last and r["timesteps"] == args.timesteps]
    print(f"{tag}: seeds {first}-{last}: mean {sum(returns) / len(returns):.1f}, worst {min(returns):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
