"""Callbacks for RIVC's ``learn``: keep the best spiking policy seen during training."""

from __future__ import annotations

import os
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback

from rivc.agents.rollout import rollout


class BestPolicyCallback(BaseCallback):
    """Every ``eval_freq`` steps, run ``episodes`` greedy episodes of the acting (spiking) policy on
    ``eval_env`` and save the model to ``path`` when their mean return is the best so far.

    Like Stable-Baselines3's ``EvalCallback`` with ``best_model_save_path``, but it waits for the
    spiking policy (it exists from the end of warm-up) and evaluates on fixed episode seeds
    (``seed, seed + 1, ...``), so that every evaluation compares the same episodes. Choose seeds
    apart from those of the final evaluation, or the selection flatters the final return.
    """

    def __init__(self, eval_env, path: str | os.PathLike, eval_freq: int = 2500, episodes: int = 5,
                 seed: int = 500, verbose: int = 0) -> None:
        super().__init__(verbose)
        if eval_freq < 1 or episodes < 1:
            raise ValueError(f"eval_freq and episodes must be >= 1, got {eval_freq} and {episodes}")
        self.eval_env, self.path = eval_env, Path(path)
        self.eval_freq, self.episodes, self.seed = eval_freq, episodes, seed
        self.best_return: float | None = None
        self.best_timestep: int | None = None
        self.history: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        acting = self.model.spiking_policy is not None or not self.model.snn_acting
        if self.num_timesteps % self.eval_freq == 0 and acting:
            mean = rollout(self.model, self.eval_env, self.episodes, seed=self.seed).mean_return
            self.history.append((self.num_timesteps, mean))
            if self.best_return is None or mean > self.best_return:
                self.best_return, self.best_timestep = mean, self.num_timesteps
                self.model.save(self.path)
                if self.verbose:
                    print(f"{self.num_timesteps} steps: new best evaluation return {mean:.1f}")
        return True
