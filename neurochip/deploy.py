"""Portable policy folders: what runs on an edge board with numpy (and akida), without torch.

A folder written by :func:`save_policy` holds ``network.npz`` (the integer network),
``policy.json`` (backend, its options, spaces, provenance) and, for Akida, ``akida_model.fbz``
(BrainChip's own model file, loadable with ``akida.Model(path)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rivc.envs.wrappers import ActionBins
from rivc.files import folder_unit
from rivc.integer_net import CorruptFileError, IntegerNetwork, atomic_write_bytes
from rivc.neurochip.base import SpikingPolicy, make_backend

FORMAT_NAME, FORMAT_VERSION = "rivc.policy", 1
NETWORK_FILE, META_FILE, AKIDA_FILE = "network.npz", "policy.json", "akida_model.fbz"


def save_policy(
    path: str | os.PathLike, network: IntegerNetwork, backend: str = "snntorch",
    backend_options: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None, force: bool = False,
) -> Path:
    """Write a deployable policy folder as one unit (``rivc.files.folder_unit``: a reader sees the old folder or
    the new one; an existing folder with files is replaced only with ``force``); converts once first, to check
    that the backend accepts the network."""
    backend_options = dict(backend_options or {})
    policy = make_backend(backend, **backend_options).convert(network)
    meta = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "backend": backend, "backend_options": backend_options,
        "obs_dim": network.obs_dim, "obs_shape": list(network.obs_shape), "n_actions": network.n_actions,
        "quant": network.config.to_dict(), **(metadata or {}),
    }
    if network.head != "q":  # the chip's outputs are V, then each action's A: Q = V + A - mean A
        meta["head"] = network.head
    with folder_unit(path, force=force) as folder:
        network.save(folder / NETWORK_FILE)
        if backend == "akida":
            policy.save(folder / AKIDA_FILE)
        atomic_write_bytes(folder / META_FILE, json.dumps(meta, indent=2).encode())
    return Path(path)


def check_env(network: IntegerNetwork | Any, env: Any, env_id: str = "the environment", what: str = "the policy") -> None:
    """Refuse an environment whose spaces the policy does not fit: its action count, its observation shape
    (``network``: anything with ``n_actions`` and ``obs_shape``, an ``IntegerNetwork`` or a ``QuantizedQNetwork``).
    The one check of a network against an env: policies, saved models and float networks to convert use it."""
    actions = getattr(env.action_space, "n", None)
    if actions is None or int(actions) != network.n_actions:
        raise ValueError(f"{what} chooses among {network.n_actions} actions, {env_id} has {env.action_space}: run "
                         "it on the environment it was trained for (--env)")
    if tuple(env.observation_space.shape or ()) != tuple(network.obs_shape):
        raise ValueError(f"{what} reads observations of shape {tuple(network.obs_shape)}, {env_id} gives "
                         f"{tuple(env.observation_space.shape or ())}: run it on the environment it was trained for (--env)")


def load_policy(path: str | os.PathLike, **backend_overrides: Any) -> SpikingPolicy:
    """Load a policy folder and convert it on its backend (numpy fast path or Akida); no torch needed."""
    folder = Path(path)
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"no deployable policy at {folder} (expected {META_FILE} and {NETWORK_FILE})")
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{folder / META_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise CorruptFileError(f"{folder} is not a rivc policy folder (format {FORMAT_NAME} v{FORMAT_VERSION})")
    try:  # (the task's action bins, which the CLI makes the env with)
        ActionBins.from_dict(meta.get("action_bins"))
    except ValueError as exc:
        raise CorruptFileError(f"{folder / META_FILE} is damaged: {exc}; export the policy again") from exc
    network = IntegerNetwork.load(folder / NETWORK_FILE)
    recorded = {"n_actions": network.n_actions, "obs_shape": list(network.obs_shape)}
    if any(key in meta and meta[key] != value for key, value in recorded.items()):
        raise CorruptFileError(f"{folder}: {META_FILE} and {NETWORK_FILE} disagree on the policy's spaces "
                               f"({ {key: meta.get(key) for key in recorded} } against {recorded}): export it again")
    options = {**meta.get("backend_options", {}), **backend_overrides}
    policy = make_backend(meta["backend"], **options).convert(network)
    policy.metadata = meta
    return policy
