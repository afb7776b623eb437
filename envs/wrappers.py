"""Wrappers that make continuous-control tasks usable by a value method with a quantized input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
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
            already = " (its actions are already discrete: no bins needed)" if isinstance(space, spaces.Discrete) else ""
            raise ValueError(f"DiscretizeAction needs a Box action space, got {space}{already}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"DiscretizeAction needs finite action bounds, got low={space.low}, high={space.high}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        dims = int(np.prod(space.shape))
        per_dim = np.broadcast_to(np.asarray(bins), (dims,)) if np.ndim(bins) == 0 else np.asarray(bins)
        if per_dim.shape != (dims,) or per_dim.dtype.kind not in "iu" or np.any(per_dim < 2):
            raise ValueError(f"bins must be an integer >= 2 or one per action dimension ({dims} here), got {bins!r}")
        if mode == "per_joint" and np.any(per_dim % 2 == 0):
            raise ValueError(f"mode='per_joint' needs an odd number of bins (a middle level), got {bins!r}")
        # (in float: a product of many bins overflows integers)
        n_actions = int(np.prod(per_dim.astype(float)) if mode == "grid" else 1 + np.sum(per_dim.astype(float) - 1))
        if n_actions > max_actions:
            raise ValueError(f"{'x'.join(map(str, per_dim))} = {n_actions} actions exceed max_actions={max_actions}: "
                             "use mode='per_joint' or fewer bins" if mode == "grid" else
                             f"{n_actions} actions exceed max_actions={max_actions}: use fewer bins")
        # the spec records these arguments (gym.make(env.spec) makes the same env), not the parent's
        gym.utils.RecordConstructorArgs.__init__(self, bins=ActionBins(bins, mode).bins, mode=mode, max_actions=max_actions)
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


@dataclass(frozen=True)
class ActionBins:
    """How a continuous-action task was made discrete (:class:`DiscretizeAction`'s ``bins`` and ``mode``): what a
    saved model and a policy folder record, so that every command makes the task as it was trained.

    ``bins``: levels per action dimension, one number for all of them or one per dimension.
    """

    bins: int | tuple[int, ...]
    mode: str = "grid"

    def __post_init__(self) -> None:
        bins = self.bins
        if isinstance(bins, (list, tuple, np.ndarray)):
            bins = tuple(bins)
            ok = len(bins) > 0 and all(_is_count(b) for b in bins)
            bins = tuple(int(b) for b in bins) if ok else bins
        else:
            ok = _is_count(bins)
            bins = int(bins) if ok else bins
        if not ok:
            raise ValueError(f"action bins must be an integer >= 2 or one such integer per action dimension, got "
                             f"{self.bins!r}")
        if self.mode not in MODES:
            raise ValueError(f"unknown action-bins mode {self.mode!r}; use one of {', '.join(MODES)}")
        object.__setattr__(self, "bins", bins)

    @classmethod
    def parse(cls, text: str) -> ActionBins:
        """``"5"`` (every dimension), ``"3,5"`` (one per dimension), either with ``":per_joint"`` or ``":grid"``."""
        counts, _, mode = str(text).partition(":")
        try:
            values = [int(part) for part in counts.split(",")]
        except ValueError:
            raise ValueError(f"action bins {text!r} are not integers: write e.g. 5, 3,5 or 3:per_joint") from None
        return cls(values[0] if len(values) == 1 else tuple(values), mode or "grid")

    def wrap(self, env: gym.Env) -> DiscretizeAction:
        return DiscretizeAction(env, self.bins, mode=self.mode)

    @classmethod
    def of(cls, env: gym.Env) -> ActionBins | None:
        """The bins ``env``'s spec records (Gymnasium's own ``DiscretizeAction`` in its flat ``Discrete`` form too), or
        ``None`` where its actions were not made discrete."""
        spec = getattr(env, "spec", None)
        return cls.from_spec(spec)

    @classmethod
    def from_spec(cls, spec: gym.envs.registration.EnvSpec | None) -> ActionBins | None:
        for wrapper in () if spec is None else spec.additional_wrappers:
            kwargs = wrapper.kwargs or {}
            if not (isinstance(wrapper.entry_point, str) and wrapper.entry_point.endswith(":DiscretizeAction")
                    and "bins" in kwargs):
                continue
            if wrapper.entry_point == f"{__name__}:DiscretizeAction":
                return cls(kwargs["bins"], kwargs.get("mode", "grid"))
            if not kwargs.get("multidiscrete", False):
                return cls(kwargs["bins"], "grid")  # Gymnasium's: the grid's mapping
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"bins": list(self.bins) if isinstance(self.bins, tuple) else self.bins, "mode": self.mode}

    @classmethod
    def from_dict(cls, record: Any) -> ActionBins | None:
        """A saved record (``None``: continuous actions were not discretized); ``ValueError`` names what is wrong."""
        if record is None:
            return None
        if not isinstance(record, dict) or set(record) - {"bins", "mode"} or "bins" not in record:
            raise ValueError(f"action bins must be a record {{'bins': ..., 'mode': ...}}, got {record!r}")
        return cls(record["bins"], record.get("mode", "grid"))

    def describe(self) -> str:
        bins = ",".join(map(str, self.bins)) if isinstance(self.bins, tuple) else str(self.bins)
        return f"{bins}:{self.mode}"


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 2


def make_env(env_id: str, action_bins: ActionBins | None = None) -> gym.Env:
    """``gymnasium.make(env_id)``, its actions made discrete as ``action_bins`` says."""
    import rivc.envs  # noqa: F401  (registers the rivc/ environments)

    env = gym.make(env_id)
    return env if action_bins is None else action_bins.wrap(env)
