"""Share a run on the Hugging Face Hub (``pip install 'rivc[hub]'``).

``rivc push RUN --repo-id user/name`` uploads the run's model (``model.zip``), its deployable policy folder
(``policy/``: the integer network, ``policy.json`` and, where exported for Akida, ``akida_model.fbz``), a NIR file
where one is given, a manifest of every file's SHA-256 and a model card (task, target, bit widths, returns,
hardware fit, identical-action rate; tags the Hub's search knows). ``rivc pull user/name --out DIR`` downloads them
into ``DIR`` as one unit and checks each file against the manifest, then loads the model and the policy as
every loader does, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST, CARD = "rivc_manifest.json", "README.md"
MODEL_FILE, SUMMARY_FILE, POLICY_DIR, NIR_FILE = "model.zip", "summary.json", "policy", "policy.nir"


class HubError(ValueError):
    """A repository that is not a rivc share, or whose files do not match their manifest."""


def _api(token: str | None = None) -> Any:
    """The Hub's client (``huggingface_hub.HfApi``); tests put a local mock here."""
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:
        raise ImportError(f"sharing on the Hub needs huggingface_hub ({exc}): pip install 'rivc[hub]'") from exc
    return HfApi(token=token)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shared_files(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file a share holds (the card and the manifest aside)."""
    return {path.relative_to(folder).as_posix(): _sha256(path) for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name not in (MANIFEST, CARD) and not path.relative_to(folder).parts[0].startswith(".")}


def model_card(policy: dict[str, Any], summary: dict[str, Any], files: list[str], repo_id: str) -> str:
    """A Hub model card: YAML metadata (tags, the evaluation as the Hub's model index) and what a user needs."""
    env_id, target = policy.get("env_id", "unknown"), policy.get("target", "unknown")
    evaluation = policy.get("training_evaluation") or {}
    mean, std = evaluation.get("mean"), evaluation.get("std")
    quant = policy.get("quant", {})
    widths = (" ".join(f"{w}/{a if a is not None else 32}" for w, a in quant["layers"]) if quant.get("layers")
              else f"{quant.get('weight_bits')}-bit weights / {quant.get('activation_bits')}-bit activations")
    identical = policy.get("identical_actions") or {}
    fit = policy.get("fit")
    tags = ["reinforcement-learning", "deep-reinforcement-learning", "stable-baselines3", "rivc",
            "spiking-neural-network", "neuromorphic", env_id, target]
    if any(name.endswith(".fbz") for name in files) and "akida" not in tags:
        tags.append("akida")
    lines = ["---", "library_name: rivc", "tags:", *[f"- {tag}" for tag in tags], "model-index:", "- name: RIVC",
             "  results:", "  - task:", "      type: reinforcement-learning", "      name: reinforcement-learning",
             "    dataset:", f"      name: {env_id}", f"      type: {env_id}", "    metrics:",
             "    - type: mean_reward", f"      value: {mean:.2f} +/- {std:.2f}" if mean is not None else "      value: null",
             "      name: mean_reward", "      verified: false", "---", "",
             f"# RIVC spiking policy for {env_id}, target {target}", "",
             "A policy trained with Robust Iterative Value Conversion ([rivc](https://arxiv.org/abs/2408.13018)): a "
             "quantization-aware DQN value network converted into a spiking neural network after every update.", "",
             "| | |", "|---|---|", f"| task | `{env_id}` |", *_bins_row(policy.get("action_bins")),
             f"| target (chip arithmetic) | `{target}` |",
             f"| bit widths | {widths} (inputs {quant.get('input_bits')}-bit) |",
             f"| variant | `{policy.get('variant', 'rivc')}` |"]
    if mean is not None:
        lines.append(f"| return | {mean:.1f} +- {std:.1f} over {len(evaluation.get('returns', []))} episodes (seeds from "
                     f"{evaluation.get('seed')}) |")
    if identical:
        lines.append(f"| identical actions, deployed vs training-time policy | {100 * identical['rate']:.2f} % of "
                     f"{identical['states']} visited states |")
    if fit:
        lines.append(f"| hardware fit | {json.dumps(fit)} |")
    if summary.get("timesteps"):
        lines.append(f"| training | {summary.get('num_timesteps', summary['timesteps'])} steps, seed {summary.get('seed')} |")
    lines += ["", "## Files", "", *[f"- `{name}`" for name in files], "",
              f"Every file's SHA-256 is in `{MANIFEST}`; `rivc pull` checks them.", "", "## Usage", "", "```bash",
              f"rivc pull {repo_id} --out shared/", "rivc deploy shared/policy     # numpy (and akida); no torch",
              "```", ""]
    return "\n".join(lines)


def _bins_row(record: Any) -> list[str]:
    """The card's row for a continuous-action task's bins (the policy folder's record; none where it has none)."""
    from rivc.envs import ActionBins

    bins = ActionBins.from_dict(record)
    return [] if bins is None else [f"| actions | continuous, in bins `{bins.describe()}` (`rivc train --action-bins "
                                    f"{bins.describe()}`; `rivc deploy` makes the task so) |"]


def bundle(run_dir: str | os.PathLike, into: Path, repo_id: str, policy_dir: str | os.PathLike | None = None,
           nir: str | os.PathLike | None = None) -> dict[str, str]:
    """Copy what a share holds into ``into`` (model, summary, policy folder, NIR file), with its manifest and card;
    returns the manifest."""
    run = Path(run_dir)
    policy_path = Path(policy_dir) if policy_dir is not None else run / POLICY_DIR
    if not (run / MODEL_FILE).is_file():
        raise HubError(f"no trained model at {run / MODEL_FILE}: pass the --out folder of `rivc train`")
    if not (policy_path / "policy.json").is_file():
        raise HubError(f"no policy folder at {policy_path}: export one first (rivc export {run} --backend akida --out "
                       f"{policy_path}) or pass --policy DIR")
    if not _holds_the_models_network(run / MODEL_FILE, policy_path):
        raise HubError(f"the policy folder {policy_path} does not hold {run / MODEL_FILE}'s network: export it from "
                       f"this run (rivc export {run} --out {policy_path} --force)")
    shutil.copy2(run / MODEL_FILE, into / MODEL_FILE)
    if (run / SUMMARY_FILE).is_file():
        shutil.copy2(run / SUMMARY_FILE, into / SUMMARY_FILE)
    shutil.copytree(policy_path, into / POLICY_DIR, ignore=shutil.ignore_patterns(".*"))
    if nir is not None:
        shutil.copy2(nir, into / NIR_FILE)
    manifest = _shared_files(into)
    (into / MANIFEST).write_text(json.dumps({"format": "rivc.share", "version": 1, "files": manifest}, indent=2))
    policy = json.loads((into / POLICY_DIR / "policy.json").read_text())
    summary = json.loads((into / SUMMARY_FILE).read_text()) if (into / SUMMARY_FILE).is_file() else {}
    (into / CARD).write_text(model_card(policy, summary, sorted(manifest), repo_id))
    return manifest


def _holds_the_models_network(model_path: Path, policy_path: Path) -> bool:
    """Whether the policy folder (loaded, so checked) holds the model's integer network: the one the SNN that
    acted in training ran."""
    from rivc.agents.rivc_agent import RIVC
    from rivc.neurochip import load_policy

    model, policy = RIVC.load(model_path), load_policy(policy_path)
    ours = model.spiking_policy.network.to_arrays() if model.spiking_policy is not None else None
    theirs = policy.network.to_arrays()
    return ours is not None and ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)


def push(run_dir: str | os.PathLike, repo_id: str, policy_dir: str | os.PathLike | None = None,
         nir: str | os.PathLike | None = None, private: bool = False, token: str | None = None) -> list[str]:
    """Upload a run (model, policy folder, NIR file, manifest, model card) to the Hub repository ``repo_id``;
    returns the files uploaded."""
    api = _api(token)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = bundle(run_dir, Path(tmp), repo_id, policy_dir, nir)
        api.create_repo(repo_id=repo_id, exist_ok=True, private=private)
        api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=f"rivc push {Path(run_dir).name}",
                          delete_patterns="*")  # (an earlier push's files go: the share is this run, whole)
    return sorted([*manifest, MANIFEST, CARD])


def check_share(folder: Path) -> dict[str, str]:
    """Every file the manifest lists is there with its SHA-256, and nothing else is (card, manifest and hidden
    folders aside)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HubError(f"not a rivc share: {MANIFEST} is missing or unreadable ({exc}); push it with `rivc push`") \
            from None
    present = _shared_files(folder)
    if present != files:
        changed = sorted(name for name in set(files) | set(present) if files.get(name) != present.get(name))
        raise HubError(f"the downloaded files do not match {MANIFEST}: {', '.join(changed[:5])} (missing, extra or "
                       "changed); the share is damaged or was edited by hand")
    return files


def pull(repo_id: str, out: str | os.PathLike, force: bool = False, revision: str | None = None,
         token: str | None = None) -> Path:
    """Download the share ``repo_id`` into ``out`` as one unit, checked file by file, model and policy loaded."""
    from rivc.files import folder_unit

    api = _api(token)
    with folder_unit(out, force=force) as staging:
        api.snapshot_download(repo_id=repo_id, revision=revision, local_dir=str(staging))
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # (huggingface_hub's download metadata)
        check_share(staging)
        if not _holds_the_models_network(staging / MODEL_FILE, staging / POLICY_DIR):
            raise HubError(f"the share {repo_id}'s policy folder does not hold its model's network: push it again "
                           "from one run (rivc push RUN)")
    return Path(out)
