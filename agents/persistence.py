"""Saving and loading RIVC agents: one zip with JSON metadata, torch weights (``weights_only``) and the
deployable integer network (``.npz``). Nothing is pickled; writes are atomic.

Format versions: 1 predates chip targets (refused, with the fix); 2 keeps the conversion and calibration
settings as flat hyperparameters; 3 keeps them as ``ConversionConfig`` / ``CalibrationConfig`` dicts.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rivc import __version__
from rivc.agents.config import AUTO, LEGACY_KEYS, TRACKING_RANGES, to_dict
from rivc.conv import ConvSpec
from rivc.envs.wrappers import ActionBins, make_env
from rivc.integer_net import CorruptFileError, IntegerNetwork, atomic_write_bytes
from rivc.neurochip.deploy import check_env

if TYPE_CHECKING:
    from rivc.agents.rivc_agent import RIVC

FORMAT_NAME, FORMAT_VERSION = "rivc.agent", 3
READABLE_VERSIONS = (2, 3)

# RIVC's own settings and the DQN hyperparameters a saved model keeps (train_freq apart: SB3 wraps it)
HYPERPARAMETERS = (
    "variant", "target", "alpha", "gap_clip", "quantization_delay", "max_learning_rate", "beta", "operator",
    "exploration", "learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma",
    "target_update_interval", "exploration_fraction", "exploration_initial_eps", "exploration_final_eps",
    "max_grad_norm", "gradient_steps", "n_steps",
)
SAVED_POLICY_KWARGS = ("net_arch", "activation_clip", "obs_range", "conv_arch", "input_units", "activation_steps",
                       "head")


def _space_to_json(space: spaces.Box) -> dict[str, Any]:
    return {"shape": list(space.shape), "low": space.low.tolist(), "high": space.high.tolist(), "dtype": str(space.dtype)}


def _space_from_json(data: dict[str, Any]) -> spaces.Box:
    return spaces.Box(np.array(data["low"], dtype=data["dtype"]), np.array(data["high"], dtype=data["dtype"]),
                      dtype=data["dtype"])


def metadata(model: RIVC) -> dict[str, Any]:
    """What a saved model records besides its weights (JSON)."""
    hyper = {name: getattr(model, name) for name in HYPERPARAMETERS}
    if callable(hyper["learning_rate"]):
        hyper["learning_rate"] = float(model.lr_schedule(1.0))
    hyper["train_freq"] = int(model.train_freq.frequency)
    hyper["reward_scale"] = model.reward_scale_asked  # as asked: "auto" is measured on the data (below, once it is)
    policy_kwargs = {k: v for k, v in model.policy_kwargs.items() if k in SAVED_POLICY_KWARGS}
    if policy_kwargs.get("obs_range") is not None:
        policy_kwargs["obs_range"] = [np.asarray(v, dtype=float).tolist() for v in policy_kwargs["obs_range"]]
    if policy_kwargs.get("conv_arch") is not None:
        policy_kwargs["conv_arch"] = [ConvSpec.parse(c).to_list() for c in policy_kwargs["conv_arch"]]
    if not model.q_network.is_image:  # the network's own (a legacy one loaded keeps "normalised")
        policy_kwargs["input_units"] = model.q_network.input_units
    env_id, action_bins = model.env_id, model.action_bins  # a loaded model's
    spec = None if model.env is None else model.env.get_attr("spec", indices=0)[0]  # (DummyVecEnv, SubprocVecEnv)
    if spec is not None:  # (an env without a spec keeps what a loaded model recorded)
        env_id, action_bins = spec.id, ActionBins.from_spec(spec)
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "rivc_version": __version__,
        "policy": "CnnPolicy" if model.q_network.is_image else "MlpPolicy",
        "hyperparameters": hyper, "conversion": to_dict(model.conversion), "calibration": to_dict(model.calibration),
        "quant": model.quant.to_dict(), "backend": model.backend_name, "backend_kwargs": model.backend_kwargs,
        "policy_kwargs": policy_kwargs, "observation_space": _space_to_json(model.observation_space),
        "n_actions": int(model.action_space.n), "env_id": env_id,
        **({} if action_bins is None else {"action_bins": action_bins.to_dict()}),  # a continuous task made discrete
        "reward_scale_measured": model.reward_scale if model.reward_scale_asked == AUTO else None,
        "num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates),
        "num_conversions": int(model.num_conversions), "calibrated": model._calibrated,
        "snn_from_step": model.snn_from_step,
        "input_range_moves": int(model.input_range_moves), "input_range_checked_at": int(model._range_checked_at),
        **({} if model._fitted_inputs is None else {"input_range_fitted": model._fitted_inputs.tolist()}),
    }


def save(model: RIVC, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` (``.zip`` added), atomically: a crash never leaves half a file."""
    path = Path(path)
    if path.suffix != ".zip":
        path = path.with_suffix(".zip")
    state = model.policy.state_dict()
    diverged = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if diverged:
        raise ValueError(f"not saved: the weights {', '.join(diverged[:3])} hold NaN or inf (training diverged; lower "
                         "the learning rate or max_grad_norm, and check the environment's rewards)")
    weights = io.BytesIO()
    torch.save({"policy": state, "optimizer": model.policy.optimizer.state_dict()}, weights)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("rivc.json", json.dumps(metadata(model), indent=2))
        archive.writestr("weights.pt", weights.getvalue())
        if model.spiking_policy is not None:
            model.spiking_policy.network.validate()  # training converts unvalidated after its first conversion
            network = io.BytesIO()
            np.savez(network, **model.spiking_policy.network.to_arrays())
            archive.writestr("policy.npz", network.getvalue())
    return atomic_write_bytes(path, buffer.getvalue())


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any], IntegerNetwork | None]:
    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("rivc.json"))
            weights = torch.load(io.BytesIO(archive.read("weights.pt")), weights_only=True, map_location="cpu")
            network = None
            if "policy.npz" in archive.namelist():
                with np.load(io.BytesIO(archive.read("policy.npz")), allow_pickle=False) as data:
                    network = IntegerNetwork.from_arrays({k: data[k] for k in data.files})
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, RuntimeError, EOFError) as exc:
        raise CorruptFileError(f"{path} is not a readable RIVC model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CorruptFileError(f"{path} is not a RIVC model (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") == 1:
        raise CorruptFileError(f"{path} was saved by rivc before chip targets (format 1): retrain it with "
                               "`rivc train --target ...`")
    if meta.get("version") not in READABLE_VERSIONS:
        raise CorruptFileError(f"{path}: model format version {meta.get('version')} is not supported")
    return meta, weights, network


def _settings(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(hyperparameters, conversion, calibration)`` of a saved model, of either readable version."""
    hyper = dict(meta["hyperparameters"])
    hyper.setdefault("max_learning_rate", None)  # saved before the cap existed: trained (and go on) uncapped
    hyper.setdefault("reward_scale", 1.0)  # saved before the option: trained on the rewards as they are
    hyper.setdefault("gap_clip", None)  # saved before the option: trained (and go on) with the gap term unbounded
    configs: dict[str, dict[str, Any]] = {"conversion": dict(meta.get("conversion", {})),
                                          "calibration": dict(meta.get("calibration", {}))}
    for key, (config, field) in LEGACY_KEYS.items():  # version 2 kept them flat
        if key in hyper:
            configs[config][field] = hyper.pop(key)
    configs["calibration"].setdefault("input_range", "space")  # left out: saved while the bounds were the default
    configs["calibration"].setdefault("clip_decay", None)  # left out: saved while learned clips were the default
    if configs["calibration"]["input_range"] not in TRACKING_RANGES:  # written with every range until 2026-12-05:
        configs["calibration"].pop("quantile", None)  # it does nothing beside another range, which now refuses it
    return hyper, configs["conversion"], configs["calibration"]


def _check_env(env: gym.Env, meta: dict[str, Any], observation_space: spaces.Box) -> None:
    from rivc.agents.rivc_agent import check_env_spaces

    check_env_spaces(env, image=meta.get("policy", "MlpPolicy") == "CnnPolicy")
    check_env(SimpleNamespace(n_actions=meta["n_actions"], obs_shape=observation_space.shape), env, what="the model")
    if not (np.allclose(env.observation_space.low, observation_space.low)
            and np.allclose(env.observation_space.high, observation_space.high)):  # (the input quantizer's range)
        raise ValueError(f"observation space mismatch: the model was trained on {observation_space}, "
                         f"the env has {env.observation_space}")


def load(cls: type[RIVC], path: str | os.PathLike, env: gym.Env | str | None = None, device: str = "cpu",
         force_reset: bool = True, **kwargs: Any) -> RIVC:
    """A model saved by :func:`save`; ``env`` must have the saved spaces (without it, the model predicts)."""
    path = Path(path)
    if not path.is_file() and path.with_suffix(".zip").is_file():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise FileNotFoundError(f"no saved RIVC model at {path}")
    meta, weights, network = _read(path)
    observation_space = _space_from_json(meta["observation_space"])
    action_bins = _action_bins(meta.get("action_bins"), path)
    if isinstance(env, str):  # the task the model trained on is made as it was (its actions' bins)
        env = make_env(env, action_bins if env == meta.get("env_id") else None)
    if env is not None:
        _check_env(env, meta, observation_space)
        made = ActionBins.of(env) if isinstance(env, gym.Env) else None
        if action_bins is not None and made is not None and made != action_bins:
            raise ValueError(f"the model's task has its actions in bins {action_bins.describe()}, the env in "
                             f"{made.describe()}: make it with rivc.envs.make_env(env_id, ActionBins.parse("
                             f"{action_bins.describe()!r}))")
    hyper, conversion, calibration = _settings(meta)
    requantized = kwargs.get("quant") is not None  # other widths: the same weights, requantized
    quant = kwargs.pop("quant", None) or meta["quant"]
    settings = {**hyper, "conversion": conversion, "calibration": calibration, **kwargs}  # the caller's win
    model = cls(
        meta.get("policy", "MlpPolicy"), env=None, backend=meta["backend"], backend_kwargs=meta["backend_kwargs"],
        quant=quant, policy_kwargs={"input_units": "normalised", **meta["policy_kwargs"]},  # (saved before the units)
        device=device, _init_setup_model=False, **settings,
    )
    model.observation_space, model.action_space = observation_space, spaces.Discrete(meta["n_actions"])
    if env is not None:  # as SB3's load: the env may have another number of copies than the saved one
        env = model._wrap_env(env, verbose=0)
    model.n_envs = 1 if env is None else env.num_envs
    model.snn_from_step = meta.get("snn_from_step")
    model._float_phase = model.quantization_delay > 0 and model.snn_from_step is None  # saved inside the delay
    model._setup_model()
    try:
        model.policy.load_state_dict(weights["policy"])
        model.policy.optimizer.load_state_dict(weights["optimizer"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CorruptFileError(f"{path}: weights do not fit the saved architecture ({exc})") from exc
    model.num_timesteps, model._n_updates = meta["num_timesteps"], meta["n_updates"]
    model.num_conversions = meta.get("num_conversions", 0)
    model._calibrated = bool(meta.get("calibrated", False))
    model.input_range_moves = int(meta.get("input_range_moves", 0))
    model._range_checked_at = int(meta.get("input_range_checked_at", 0))
    model._fitted_inputs = _fitted_inputs(meta.get("input_range_fitted"), model.q_network.obs_dim, path)
    if network is not None:
        model.spiking_policy = model.convert(check=True) if requantized else model.backend.convert(network)
    if env is not None:
        model.set_env(env, force_reset=force_reset)
    model.env_id, model.action_bins = meta.get("env_id"), action_bins
    measured = meta.get("reward_scale_measured")
    if measured is not None and model.reward_scale_asked == AUTO:
        if isinstance(measured, bool) or not isinstance(measured, (int, float)) or not 0 < measured <= 1:
            raise CorruptFileError(f"{path}: reward_scale_measured must be a number in (0, 1], got {measured!r}")
        model.reward_scale = float(measured)
    model.saved_rivc_version = meta.get("rivc_version")
    return model


REPLAY_FORMAT, REPLAY_VERSION = "rivc.replay_buffer", 1
REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _kept_arrays(buffer) -> list[str]:
    """The arrays a replay buffer keeps (``next_observations`` is None where it optimises memory)."""
    return [name for name in REPLAY_ARRAYS if getattr(buffer, name, None) is not None]


def _replay_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path if path.suffix else path.with_suffix(".npz")


def save_replay_buffer(model: RIVC, path: str | os.PathLike) -> Path:
    """The replay buffer as an ``.npz`` of its arrays and a JSON header (no pickle), written atomically."""
    buffer = model.replay_buffer
    if buffer is None:
        raise ValueError("the model has no replay buffer yet: call learn() first")
    header = {"format": REPLAY_FORMAT, "version": REPLAY_VERSION, "class": type(buffer).__name__, "pos": int(buffer.pos),
              "full": bool(buffer.full), "buffer_size": int(buffer.buffer_size), "n_envs": int(buffer.n_envs),
              "optimize_memory_usage": bool(buffer.optimize_memory_usage),
              "handle_timeout_termination": bool(buffer.handle_timeout_termination)}
    arrays = {name: getattr(buffer, name) for name in _kept_arrays(buffer)}
    data = io.BytesIO()
    np.savez(data, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    return atomic_write_bytes(_replay_path(path), data.getvalue())


def load_replay_buffer(model: RIVC, path: str | os.PathLike) -> bool:
    """Fill the model's replay buffer from :func:`save_replay_buffer`'s file, checked against it (sizes, shapes,
    finite rewards). Returns False where the file is not in that format (e.g. Stable-Baselines3's pickle)."""
    path = _replay_path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            arrays = {name: data[name] for name in REPLAY_ARRAYS if name in data.files}
    except (KeyError, ValueError, OSError, UnicodeDecodeError, json.JSONDecodeError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(f"{path} is not a readable rivc replay buffer ({type(exc).__name__}: {exc})") from exc
    if not isinstance(header, dict) or header.get("format") != REPLAY_FORMAT:
        return False
    buffer = model.replay_buffer
    if header.get("version") != REPLAY_VERSION or header.get("class") != type(buffer).__name__:
        raise CorruptFileError(f"{path}: a {header.get('class')} buffer of format version {header.get('version')}; this "
                               f"model keeps a {type(buffer).__name__} (version {REPLAY_VERSION})")
    kept = set(_kept_arrays(buffer))
    layout = ("optimize_memory_usage", "handle_timeout_termination")
    if set(arrays) != kept or any(header.get(key) != bool(getattr(buffer, key)) for key in layout):
        raise CorruptFileError(f"{path} holds {sorted(arrays)} ({ {key: header.get(key) for key in layout} }); this "
                               f"model's buffer keeps {sorted(kept)}: load it into a model with the same buffer settings")
    for name, array in arrays.items():
        mine = getattr(buffer, name, None)
        if mine is None or array.shape != mine.shape or array.dtype != mine.dtype:
            raise CorruptFileError(f"{path}: {name} of shape {array.shape} ({array.dtype}) does not fit this model's "
                                   f"buffer ({None if mine is None else mine.shape}): load it into a model with the same "
                                   "buffer_size, environment and n_envs")
    pos = header.get("pos")
    if not isinstance(pos, int) or not 0 <= pos < buffer.buffer_size or not np.all(np.isfinite(arrays["rewards"])):
        raise CorruptFileError(f"{path}: position {pos!r} or rewards out of range")
    for name, array in arrays.items():
        getattr(buffer, name)[...] = array
    buffer.pos, buffer.full = pos, bool(header.get("full"))
    return True


def _fitted_inputs(saved: Any, obs_dim: int, path: Path) -> np.ndarray | None:
    """``input_range="fit"``'s tracked inputs as saved (a list of booleans, one per input), checked."""
    if saved is None:
        return None
    if not (isinstance(saved, list) and len(saved) == obs_dim and all(isinstance(v, bool) for v in saved)):
        raise CorruptFileError(f"{path}: input_range_fitted must be {obs_dim} booleans (one per input), got {saved!r}")
    return np.array(saved, dtype=bool)


def _action_bins(saved: Any, path: Path) -> ActionBins | None:
    try:
        return ActionBins.from_dict(saved)
    except ValueError as exc:
        raise CorruptFileError(f"{path}: {exc}") from exc
