"""docs/BAD_INPUTS.md: bad arguments and damaged files given to the `rivc` CLI, and what each gets (exit code, the
one line it prints). Every case must end in exit 2 with one line and no traceback.

    python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARGUMENTS = [
    "train --timesteps 0", "train --timesteps -5", "train --timesteps x", "train --beta inf", "train --beta 0",
    "train --alpha 1", "train --alpha -0.1", "train --gap-clip 0.5", "train --learning-rate nan", "train --eval-episodes 0",
    "train --threads 0", "train --select-episodes 0", "train --quantization-delay -5", "train --eval-freq -1", "train --bits 3", "train --bits 9", "train --target akd1000 --bits 8",
    "train --bits 8 --activation-bits 4", "train --layer-bits 8/x", "train --layer-bits 8/8,8/32",
    "train --bits 4 --layer-bits 4/4,4/4,4", "train --env NoSuchEnv-v0", "train --env Pendulum-v1",
    "train --clip-decay often", "train --clip-decay auto", "train --input-range box", "train --input-units raw", "train --max-learning-rate 0", "train --nonsense", "evaluate {missing}", "evaluate {run} --episodes 0",
    "convert {run} --episodes -1", "export {run} --out {run}", "export {run} --out {file} --force",
    "deploy {missing}", "deploy {policy} --episodes 0", "deploy {policy} --env rivc/PanTrackState-v0",
    "report {policy} --json ''", "precision {run} --agreement 1.5", "precision {run} --max-memory 0",
    "precision {run} --widths four", "convert-model {missing} --env CartPole-v1", "convert-model {file} --env CartPole-v1",
    "convert-model {missing} --env CartPole-v1 --finetune -5", "train --out {run}", "train --out {missing} --resume",
    "train --out {run} --resume --bits 8", "train --out {run} --resume --env Acrobot-v1",
    "train --out {run} --resume --input-units normalised", "train --env Pendulum-v1 --action-bins 1",
    "train --env Pendulum-v1 --action-bins 3,3", "train --env CartPole-v1 --action-bins 3",
    "train --env Pendulum-v1 --action-bins 4:per_joint", "train --env HalfCheetah-v5 --action-bins 5",
    "train --reward-scale often", "train --reward-scale -1",
]


def damaged_files(run: Path, policy: Path, root: Path) -> list[tuple[str, list[str]]]:
    """Policy folders with one damage each, and the deploy command that reads them."""
    from rivc import IntegerNetwork

    cases = []
    network = IntegerNetwork.load(policy / "network.npz")
    head = len(network.layers) - 1
    for name, key, value in (("NaN head scale", f"s{head}", np.full(network.n_actions, np.nan)),
                             ("inf head scale", f"s{head}", np.full(network.n_actions, np.inf)),
                             ("weight codes that are not whole numbers", "w1", network.layers[1].weights + 0.5),
                             ("a NaN weight cast to int64", "w1", np.full_like(network.layers[1].weights, np.iinfo(np.int64).min))):
        folder = root / name.replace(" ", "_")
        folder.mkdir()
        (folder / "policy.json").write_text((policy / "policy.json").read_text())
        np.savez(folder / "network.npz", **{**network.to_arrays(), key: value})
        cases.append((f"deploy a policy folder with {name}", ["deploy", str(folder), "--episodes", "1"]))
    truncated = root / "truncated"
    truncated.mkdir()
    (truncated / "policy.json").write_text((policy / "policy.json").read_text())
    (truncated / "network.npz").write_bytes((policy / "network.npz").read_bytes()[:500])
    cases.append(("deploy a policy folder with a cut network.npz", ["deploy", str(truncated)]))
    spaces = root / "spaces"
    spaces.mkdir()
    (spaces / "network.npz").write_bytes((policy / "network.npz").read_bytes())
    (spaces / "policy.json").write_text(json.dumps({**json.loads((policy / "policy.json").read_text()), "n_actions": 3}))
    cases.append(("deploy a policy folder whose policy.json disagrees with its network", ["deploy", str(spaces)]))
    bins = root / "bins"
    bins.mkdir()
    (bins / "network.npz").write_bytes((policy / "network.npz").read_bytes())
    (bins / "policy.json").write_text(json.dumps({**json.loads((policy / "policy.json").read_text()),
                                                  "action_bins": {"bins": "five"}}))
    cases.append(("deploy a policy folder whose action bins are not numbers", ["deploy", str(bins)]))
    broken = root / "broken_model"
    broken.mkdir()
    (broken / "model.zip").write_bytes(b"not a zip")
    cases.append(("evaluate a run whose model.zip is garbage", ["evaluate", str(broken)]))
    return cases


def run(argv: list[str]) -> tuple[int, str]:
    from rivc.agents.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException as exc:  # noqa: BLE001 (what the table is for: a traceback is a failure)
            return -1, f"TRACEBACK: {type(exc).__name__}: {exc}"
    return code, err.getvalue().strip()


def table() -> tuple[list[str], int]:
    """Every case run: the table's rows and how many did not end in one line and exit 2."""
    from rivc.agents.cli import main as rivc

    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir, policy = root / "run", root / "policy"
        with contextlib.redirect_stdout(io.StringIO()):
            rivc(["train", "--timesteps", "600", "--out", str(run_dir), "--eval-episodes", "1", "--hyperparams", "defaults"])
            rivc(["export", str(run_dir), "--out", str(policy), "--episodes", "1"])
        (root / "file").write_text("x")
        names = {"run": run_dir, "policy": policy, "missing": root / "missing", "file": root / "file"}
        cases = [(f"rivc {text}", text.format(**names).split()) for text in ARGUMENTS]
        cases = [(about.format(**{k: k.upper() for k in names}), [a.strip("'") for a in argv]) for about, argv in cases]
        for about, argv in [*cases, *damaged_files(run_dir, policy, root)]:
            code, message = run(argv)
            ok = code == 2 and message.count("\n") == 0 and "TRACEBACK" not in message
            failures += not ok
            rows.append(f"| `{about}` | {code} | {message.replace(tmp, '...').replace('|', '/')} | {'yes' if ok else 'NO'} |")
    return rows, failures


def main() -> int:
    rows, failures = table()
    lines = ["# Bad inputs: what the CLI says", "",
             f"Generated by `python benchmarks/bad_inputs.py` on {time.strftime('%Y-%m-%d')}: {len(rows)} cases, "
             f"{len(rows) - failures} end in exit 2 with one line and no traceback.", "",
             "| input | exit | message | one line, exit 2 |", "|---|---|---|---|", *rows]
    (ROOT / "docs" / "BAD_INPUTS.md").write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} cases, {failures} not a one-line exit 2; wrote docs/BAD_INPUTS.md")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
