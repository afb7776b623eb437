"""Per-task hyperparameters: RIVC's tuned ones (``tuned_hyperparams``), and the RL Zoo's DQN settings
(``zoo_hyperparams``, read from the installed ``rl_zoo3`` package).

The values come from a one-at-a-time sweep around the agent's defaults (RIVC at 4 bits, on tuning seeds that the
ablation does not use); ``docs/TUNING_SWEEP.md`` lists every configuration tried and its score. The camera task
takes its state twin's values (MobileReach's), not swept again. ``make tune``
(Optuna, ``benchmarks/tune.py``) searches the same space. Tasks not listed here use the agent's defaults.

    from rivc.agents import RIVC
    from rivc.agents.hyperparams import tuned_hyperparams
    model = RIVC("MlpPolicy", "rivc/ArmReach-v0", **tuned_hyperparams("rivc/ArmReach-v0"))
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Keyword arguments of ``RIVC``; only those that differ from its defaults are listed.
TUNED_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {},  # no change beat the defaults by more than the seed spread
    "rivc/ArmReach-v0": {"exploration": "boltzmann"},  # sample actions from softmax(beta * Q_snn)
    "rivc/MobileReach-v0": {"beta": 3.0},
    "rivc/MobileReachCamera-v0": {"beta": 3.0},  # MobileReach's, not swept again: the same task and reward, seen
    # through the robot's camera
}

# What the sweep may change, and the values it tries (the first is RIVC's default).
TUNABLE: dict[str, tuple[Any, ...]] = {
    "alpha": (0.9, 0.5, 0.75, 0.99),
    "beta": (10.0, 1.0, 3.0, 30.0),
    "learning_rate": (1e-3, 5e-4, 2e-3),
    "exploration_fraction": (0.2, 0.1),
    "exploration": ("epsilon", "boltzmann"),
}

# Parameters that only the gap-increasing target (or Boltzmann exploration) reads.
_GAP_ONLY = ("alpha", "beta", "operator", "gap_clip")


def tuned_hyperparams(env_id: str) -> dict[str, Any]:
    """The tuned keyword arguments for ``env_id`` (empty for tasks that were not tuned)."""
    return dict(TUNED_HYPERPARAMS.get(env_id, {}))


def effective_hyperparams(variant: str, params: dict[str, Any]) -> dict[str, Any]:
    """Drop the parameters ``variant`` never reads, so runs that differ only there are the same run.

    Variants without the gap-increasing target (naive, qat, fpnn) ignore alpha and the operator,
    and read beta only for Boltzmann exploration.
    """
    from rivc.agents.variants import VARIANTS

    if VARIANTS[variant].gap_increasing:
        return dict(params)
    boltzmann = params.get("exploration") == "boltzmann"
    return {k: v for k, v in params.items() if k not in _GAP_ONLY or (k == "beta" and boltzmann)}


# The RL Zoo's DQN keys that are RIVC (SB3 DQN) keyword arguments of the same name and meaning.
ZOO_COUNTS = ("batch_size", "buffer_size", "learning_starts", "target_update_interval", "train_freq", "gradient_steps")
ZOO_RATES = ("learning_rate", "gamma", "tau", "exploration_fraction", "exploration_initial_eps", "exploration_final_eps",
             "max_grad_norm")
ZOO_KEYS = ZOO_COUNTS + ZOO_RATES
ZOO_IGNORED = ("n_timesteps", "policy", "optimize_memory_usage")  # the budget, read apart; the rest changes nothing


@dataclass(frozen=True)
class ZooSettings:
    """The RL Zoo's tuned DQN settings for one task, as RIVC keyword arguments, and its training budget."""

    env_id: str
    kwargs: dict[str, Any]
    timesteps: int
    source: str  # the file they came from


def _zoo_file() -> Path:
    spec = importlib.util.find_spec("rl_zoo3")
    if spec is None or spec.origin is None:
        raise ImportError("--hyperparams zoo reads the RL Zoo's tuned DQN settings from the rl_zoo3 package: "
                          "pip install 'rivc[zoo]' (or pip install rl-zoo3)")
    return Path(spec.origin).parent / "hyperparams" / "dqn.yml"


def _net_arch(text: str) -> dict[str, Any]:
    """``policy_kwargs`` of the Zoo's file (a ``dict(...)`` string), read as literals, never evaluated."""
    call = ast.parse(text, mode="eval").body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "dict" and not call.args):
        raise ValueError(f"policy_kwargs {text!r} is not a dict(...) of literals")
    kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    unknown = sorted(set(kwargs) - {"net_arch"})
    if unknown:
        raise ValueError(f"policy_kwargs {unknown} have no RIVC equivalent (RIVC takes net_arch)")
    return kwargs


def zoo_hyperparams(env_id: str) -> ZooSettings:
    """The RL Zoo's DQN settings for ``env_id`` (``hyperparams/dqn.yml`` of the installed ``rl_zoo3``),
    mapped onto RIVC's arguments: SB3 DQN's names keep their meaning, ``policy_kwargs`` gives ``net_arch``,
    ``n_timesteps`` the budget. Raises ``ImportError`` without ``rl_zoo3`` and ``ValueError`` for a task
    the Zoo does not list or settings RIVC cannot honour (env wrappers, frame stacking, normalisation)."""
    import yaml

    path = _zoo_file()
    table = yaml.safe_load(path.read_text())
    tasks = sorted(k for k in table if k not in ("default", "atari"))
    if env_id not in tasks:
        raise ValueError(f"the RL Zoo lists no DQN settings for {env_id!r} (it tunes {', '.join(tasks)}): use "
                         "--hyperparams tuned or defaults")
    entry = dict(table[env_id])
    unknown = sorted(set(entry) - set(ZOO_KEYS) - set(ZOO_IGNORED) - {"policy_kwargs"})
    if unknown or entry.get("policy", "MlpPolicy") != "MlpPolicy":
        raise ValueError(f"the RL Zoo's DQN settings for {env_id!r} need {unknown or entry['policy']}, which rivc does "
                         "not apply; pass the hyperparameters yourself")
    kwargs = {key: (int if key in ZOO_COUNTS else float)(entry[key]) for key in ZOO_KEYS if key in entry}
    if "policy_kwargs" in entry:
        kwargs["policy_kwargs"] = _net_arch(entry["policy_kwargs"])
    return ZooSettings(env_id, kwargs, int(entry.get("n_timesteps", 0)), str(path))
