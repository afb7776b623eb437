"""RIVC in the RL Baselines3 Zoo's own scripts (``pip install 'rivc[zoo]'``)::

    python -m rivc.agents.zoo train --algo rivc --env CartPole-v1
    python -m rivc.agents.zoo train --algo rivc --env CartPole-v1 -optimize --n-trials 20 --storage study.log
    python -m rivc.agents.zoo enjoy --algo rivc --env CartPole-v1 -f logs/

RIVC is added to the Zoo's algorithm table as the Zoo documents for SBX, its hyperparameters come from the
shipped ``zoo_hyperparams/rivc.yml`` unless ``--conf-file`` names another, ``rivc.envs`` is imported so that
our robot tasks are known, and ``-optimize`` samples RIVC's own knobs (:func:`sample_rivc_params`) beside
DQN's. Everything else is the Zoo's: its arguments, logs, callbacks and Optuna study.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HYPERPARAMS_FILE = Path(__file__).resolve().parent / "zoo_hyperparams" / "rivc.yml"
SCRIPTS = ("train", "enjoy")


def sample_rivc_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """The Zoo's DQN sampler, plus RIVC's knobs: the gap-increasing strength and temperature, the bit widths
    and the chip (an Optuna ``Trial`` in, the model's keyword arguments out)."""
    from rl_zoo3.hyperparams_opt import sample_dqn_params

    from rivc.chip import TARGETS

    params = sample_dqn_params(trial, n_actions, n_envs, additional_args)
    target = trial.suggest_categorical("target", sorted(TARGETS))
    widths = [w for w in (4, 8) if w in TARGETS[target].weight_bits and w in TARGETS[target].activation_bits]
    bits = trial.suggest_categorical(f"bits_{target}", widths)  # (a parameter per target: their widths differ)
    params.update(alpha=trial.suggest_float("alpha", 0.0, 0.99), beta=trial.suggest_float("beta", 1.0, 30.0, log=True),
                  target=target, quant={"weight_bits": bits, "activation_bits": bits})
    return params


def zoo_arguments(script: str, arguments: list[str]) -> list[str]:
    """The Zoo's arguments, with the shipped hyperparameters unless the user names a file (``-conf``,
    ``--conf-file`` or an abbreviation of it, with or without ``=``)."""
    if script == "train" and not any(a == "-conf" or a.startswith(("--conf", "-conf=")) for a in arguments):
        return [*arguments, "--conf-file", str(HYPERPARAMS_FILE)]
    return list(arguments)


def register() -> None:
    """Add RIVC to the Zoo's algorithm table and its Optuna samplers (both are shared dicts), and our envs."""
    import rl_zoo3
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    import rivc.envs  # noqa: F401  (registers rivc/ArmReach-v0, ...)
    from rivc.agents.rivc_agent import RIVC

    rl_zoo3.ALGOS["rivc"] = RIVC
    HYPERPARAMS_SAMPLER["rivc"] = sample_rivc_params


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SCRIPTS:
        sys.exit(f"usage: python -m rivc.agents.zoo {{{','.join(SCRIPTS)}}} --algo rivc --env ID [the Zoo's arguments]")
    script, arguments = argv[0], argv[1:]
    try:
        register()
    except ImportError as exc:
        sys.exit(f"the RL Zoo is not installed ({exc}): pip install 'rivc[zoo]'")
    sys.argv = [f"rl_zoo3 {script}", *zoo_arguments(script, arguments)]
    if script == "train":
        from rl_zoo3.train import train

        train()
    else:
        from rl_zoo3.enjoy import enjoy

        enjoy()


if __name__ == "__main__":
    main()
