"""Tuned per-task hyperparameters of RIVC, in the spirit of the RL Zoo's hyperparameter files.

The values come from ``python benchmarks/tune.py`` (a one-at-a-time sweep around the agent's
defaults, RIVC at 4 bits, on tuning seeds that the ablation does not use); ``docs/TUNING.md``
lists every configuration tried and its score. Tasks not listed here use the agent's defaults.

    from rivc.agents import RIVC
    from rivc.agents.hyperparams import tuned_hyperparams
    model = RIVC("MlpPolicy", "rivc/ArmReach-v0", **tuned_hyperparams("rivc/ArmReach-v0"))
"""

from __future__ import annotations

from typing import Any

# Keyword arguments of ``RIVC``; only those that differ from its defaults are listed.
TUNED_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {},  # no change beat the defaults by more than the seed spread
    "rivc/ArmReach-v0": {"exploration": "boltzmann"},  # sample actions from softmax(beta * Q_snn)
    "rivc/MobileReach-v0": {"beta": 3.0},
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
_GAP_ONLY = ("alpha", "beta", "operator")


def tuned_hyperparams(env_id: str) -> dict[str, Any]:
    """The tuned keyword arguments for ``env_id`` (empty for tasks that were not tuned)."""
    return dict(TUNED_HYPERPARAMS.get(env_id, {}))


def effective_hyperparams(variant: str, params: dict[str, Any]) -> dict[str, Any]:
    """Drop the parameters ``variant`` never reads, so runs that differ only there are the same run.

    Variants without the gap-increasing target (naive, qat, fpnn) ignore alpha and the operator,
    and read beta only for Boltzmann exploration.
    """
    from rivc.agents.rivc_agent import VARIANTS

    if VARIANTS[variant].gap_increasing:
        return dict(params)
    boltzmann = params.get("exploration") == "boltzmann"
    return {k: v for k, v in params.items() if k not in _GAP_ONLY or (k == "beta" and boltzmann)}
