"""Wrappers that make continuous-control tasks usable by a value method with a quantized input."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import DiscretizeAction as _GymDiscretizeAction

MODES = ("grid", "per_joint")


class DiscretizeAction(_GymDiscretizeAction):
    """Turn a ``Box`` action space into ``Discrete`` (Gymnasium's wrapper, validated, plus a per-joint mode).

    Each dimension gets ``bins`` levels: the centres of ``bins`` equal intervals of ``[low, high]``
    (bins=3 on [-1, 1]: -2/3, 0, 2/3).

    * ``mode="grid"`` (Gymnasium's mapping): every combination, ``bins**dims`` actions; action
      ``a`` sets dimension ``i`` to level ``np.unravel_index(a, bins)[i]``.
    * ``mode="per_joint"``: one dimension at a time, the others at their middle level (bins must
      be odd): action 0 holds every dimension at the middle, then for each dimension ``i`` its
      non-middle levels in order: ``1 + sum(bins - 1)`` actions (``2 * dims + 1`` for bins=3:
      HalfCheetah's 6 joints give 13 actions instead of 729).
    """

    def __init__(self, env, bins: int | tuple[int, ...] = 3, mode: str = "grid", max_actions: int = 4096) -> None:
        space = env.action_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"DiscretizeAction needs a Box action space, got {space}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"DiscretizeAction needs finite action bounds, got low={space.low}, high={space.high}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        dims = int(np.prod(space.shape))
        per_dim = np.broadcast_to(np.asarray(bins), (dims,)) if np.ndim(bins) == 0 else np.asarray(bins)
        if per_dim.shape != (dims,) or per_dim.dtype.kind not in "iu" or np.any(per_dim < 2):
            raise ValueError(f"bins must be an integer >= 2 or {dims} such integers, got {bins!r}")
        if mode == "per_joint" and np.any(per_dim % 2 == 0):
            raise ValueError(f"mode='per_joint' needs an odd number of bins (a middle level), got {bins!r}")
        if mode == "grid" and int(np.prod(per_dim.astype(float))) > max_actions:
            raise ValueError(
                f"{'x'.join(map(str, per_dim))} = {int(np.prod(per_dim.astype(float)))} actions exceed "
                f"max_actions={max_actions}: use mode='per_joint' or fewer bins"
            )
        super().__init__(env, tuple(int(b) for b in per_dim))
        self.mode = mode
        if mode == "per_joint":
            middle = per_dim // 2
            table = [middle.copy()]
            for i in range(dims):
                for level in range(per_dim[i]):
                    if level != middle[i]:
                        indices = middle.copy()
                        indices[i] = level
                        table.append(indices)
            self._table = np.array(table)
            self.action_space = spaces.Discrete(len(table))

    def level_indices(self, action: int) -> np.ndarray:
        """Per-dimension level of a discrete action."""
        if self.mode == "per_joint":
            return self._table[int(action)]
        return np.array(np.unravel_index(int(action), tuple(self.bins)))

    def action(self, act):
        indices = self.level_indices(act)
        centres = [self.bin_centers[i][idx] for i, idx in enumerate(indices)]
        return np.array(centres, dtype=self.env.action_space.dtype).reshape(self.env.action_space.shape)
