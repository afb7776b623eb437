"""Small settings of the RIVC agent beyond DQN's own, grouped as SB3 groups a policy's (torch-free).

    RIVC("MlpPolicy", env, conversion=ConversionConfig(eval_every=1), calibration=dict(input_range="data"))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import Any, TypeVar

from rivc.config import CLIP_GRADIENTS, CLIP_STATISTICS, INPUT_RANGE_MARGIN

INPUT_RANGES = ("space", "data", "track", "fit")
TRACKING_RANGES = ("track", "fit")  # the input ranges that follow the replay data (with its quantiles)

Config = TypeVar("Config", "ConversionConfig", "CalibrationConfig")


@dataclass(frozen=True)
class ConversionConfig:
    """When the trained network is converted into the acting spiking policy, and how often the
    conversion error (SNN vs trained network, ``rivc.metrics``) is measured.

    :param every: convert once the gradient updates reach a multiple of ``every`` (RIVC: 1), after the
        gradient steps of that update cycle (``train`` call), before the SNN acts again; ``learn`` ends
        with the latest network converted.
    :param eval_size: replay observations each measurement uses.
    :param eval_every: measure on every ``eval_every``-th conversion: a sample, since the measurement
        costs more than the conversion; the logs say so (``conversion/error_measured_every``).
    """

    every: int = 1
    eval_size: int = 32
    eval_every: int = 10

    def __post_init__(self) -> None:
        for option in fields(self):
            value = getattr(self, option.name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"ConversionConfig.{option.name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, option.name, int(value))


TRACK_QUANTILE = 0.01  # CalibrationConfig.quantile's default
AUTO = "auto"  # RIVC's reward_scale default: measured on the first rewards
DEFAULT_MAX_LEARNING_RATE = 1e-3  # QAT's largest learning rate: the one RIVC's defaults were tuned at
DEFAULT_GAP_CLIP = -10.0  # the gap term's lower bound in the scaled rewards' units (None, unbounded, until 2026-12-07)


@dataclass(frozen=True)
class CalibrationConfig:
    """What the agent calibrates on its data: the input range and the activation clips.

    :param input_range: what the input codes span. ``"fit"`` (default): the observation space's finite bounds
        (data-calibrated where unbounded), but an input whose declared bounds are loose (the replay's ``quantile``
        spread is under 1/8 of them, judged from the end of exploration on: the warm-up's random states alone say
        little of where a policy goes; an input that has not varied is not loose) is tracked as ``"track"`` tracks
        it; inputs whose states fill their bounds keep them, and the network trains as with ``"space"``.
        ``"space"``: the space's finite bounds (data-calibrated where unbounded), fixed (the default until
        2026-12-06). ``"data"``: the warm-up data's min and max in every dimension, fixed. ``"track"``: the replay
        data's range (its ``quantile`` to ``1 - quantile`` quantiles, widened by ``margin`` but not past the space's
        finite bounds where the states stay inside them), moved as the policy's states move: checked every
        ``track_every`` steps (at steps 1, 2, 4, ... before that), moved when the data reach its ends or fill less
        than half its width; the network computes the same function (``QuantizedQNetwork.move_input_range``: a
        first layer in the observation's units keeps its weights, a normalised one is rescaled). docs/zoo_notes.md
        says where each helps.
    :param margin: widening of data-calibrated ranges (fraction of the range, per side).
    :param track_every: ``"track"``, ``"fit"``: steps between checks of the input range.
    :param quantile: ``"track"``, ``"fit"``: the share of states on each side left out of the range (a crash's spin
        should not cost every other state its input resolution); they are clipped to the range's ends. 0.0 keeps
        every state (CartPole ended higher so, LunarLander lower: docs/zoo_notes.md).
    :param clips: start the PACT activation clips at the float activations' maxima; ``None``: yes for
        ``MlpPolicy``, no for ``CnnPolicy`` (a conv net's activations grow far beyond their initial maxima, and
        clips started at them held PanTrack from pixels back: docs/vision_notes.md).
    :param clip_decay: ``None`` (default): the clips are learned (``clip_gradient``), at every width. A value in
        [0, 1): after every update each clip moves to ``decay * clip + (1 - decay) * target``, a moving-average
        range, and is not learned; the target is the training batch's ``clip_statistic``. A clip that follows the
        batch's largest pre-activation spends levels on the widest units: at 4 bits it leaves the narrow ones too
        few of 15, and at 8 bits it fell far short of learned clips on InvertedDoublePendulum and HalfCheetah
        (docs/zoo_notes.md).
    :param clip_statistic: what a tracked clip follows (``rivc.quant.clip_statistic``): ``"max"`` (default) the
        batch's largest pre-activation, ``"mse"`` the clip that quantizes the batch's activations with the least
        squared error (their spread, not their largest one).
    :param clip_gradient: how a learned clip gets its gradient: ``"pact"`` (default) from the activations it clips,
        ``"lsq"`` from those and the rounding error of the others, scaled as LSQ scales a step size's
        (``rivc.quant.clip_gradient_weights``).
    :param min_samples: the warm-up lasts at least this many steps (random actions, no update), so that the ranges
        are calibrated on that many states: ``learning_starts`` is raised to it where lower (the RL Zoo starts
        LunarLander's updates at step 0, which would calibrate on one state). 0: ``learning_starts`` as given.
    """

    input_range: str = "fit"
    margin: float = INPUT_RANGE_MARGIN
    clips: bool | None = None
    clip_decay: float | None = field(default=None, metadata={"written": "always"})  # (the default has moved)
    clip_statistic: str = field(default="max", metadata={"written": "when set"})
    clip_gradient: str = field(default="pact", metadata={"written": "when set"})
    min_samples: int = 0
    track_every: int = 1000
    quantile: float = field(default=TRACK_QUANTILE, metadata={"written": "when set"})

    def __post_init__(self) -> None:
        if self.input_range not in INPUT_RANGES:
            raise ValueError(f"CalibrationConfig.input_range must be one of {', '.join(INPUT_RANGES)}, "
                             f"got {self.input_range!r}")
        if not self.margin >= 0:
            raise ValueError(f"CalibrationConfig.margin must be >= 0, got {self.margin!r}")
        if self.clip_decay == "auto":
            raise ValueError("CalibrationConfig.clip_decay='auto' (tracked clips at 8 bits) was removed: the clips are "
                             "learned at every width by default (None); pass 0.99 for clips that follow the activations")
        if self.clip_decay is not None and not (isinstance(self.clip_decay, Real)
                                                 and not isinstance(self.clip_decay, bool)
                                                 and 0.0 <= self.clip_decay < 1.0):
            raise ValueError(f"CalibrationConfig.clip_decay must be None (learned clips) or in [0, 1), "
                             f"got {self.clip_decay!r}")
        if self.clip_gradient not in CLIP_GRADIENTS:
            raise ValueError(f"CalibrationConfig.clip_gradient must be one of {', '.join(CLIP_GRADIENTS)}, "
                             f"got {self.clip_gradient!r}")
        if self.clip_gradient != "pact" and self.tracks_clips:
            raise ValueError(f"CalibrationConfig.clip_gradient={self.clip_gradient!r} learns the clips and clip_decay "
                             "moves them: leave clip_decay None for learned clips, or clip_gradient 'pact' for tracked ones")
        if self.clip_statistic not in CLIP_STATISTICS:
            raise ValueError(f"CalibrationConfig.clip_statistic must be one of {', '.join(CLIP_STATISTICS)}, "
                             f"got {self.clip_statistic!r}")
        if self.clip_statistic != "max" and self.clip_decay is None:
            raise ValueError(f"CalibrationConfig.clip_statistic={self.clip_statistic!r} is what tracked clips follow: "
                             "set clip_decay (e.g. 0.99) too")
        if self.clips not in (None, True, False):
            raise ValueError(f"CalibrationConfig.clips must be True, False or None, got {self.clips!r}")
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int) or self.min_samples < 0:
            raise ValueError(f"CalibrationConfig.min_samples must be an integer >= 0, got {self.min_samples!r}")
        if isinstance(self.track_every, bool) or not isinstance(self.track_every, int) or self.track_every < 1:
            raise ValueError(f"CalibrationConfig.track_every must be an integer >= 1, got {self.track_every!r}")
        if isinstance(self.quantile, bool) or not isinstance(self.quantile, (int, float)) or not 0.0 <= self.quantile < 0.5:
            raise ValueError(f"CalibrationConfig.quantile must be in [0, 0.5), got {self.quantile!r}")
        if self.quantile != TRACK_QUANTILE and self.input_range not in TRACKING_RANGES:
            raise ValueError(f"CalibrationConfig.quantile is the share of states a tracked input range leaves out of "
                             f"the range; input_range={self.input_range!r} has none: set input_range='track' (or "
                             "'fit') too")

    @property
    def tracks_clips(self) -> bool:
        """The clips follow the activations (moving averages), not learned."""
        return self.clip_decay is not None

    def describe_clips(self) -> str:
        """The clip rule in a few words, as the CLI prints it."""
        if self.tracks_clips:
            return f"tracked (decay {self.clip_decay:g}, following each batch's {self.clip_statistic})"
        return f"learned ({self.clip_gradient})"


def as_config(value: Config | dict[str, Any] | None, cls: type[Config]) -> Config:
    """``value`` as ``cls``: itself, built from a dict (as saved), or the defaults for ``None``."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{cls.__name__} has no field {', '.join(unknown)}; fields: "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**value)
    raise TypeError(f"expected a {cls.__name__} or a dict, got {type(value).__name__}")


def to_dict(config: ConversionConfig | CalibrationConfig) -> dict[str, Any]:
    """The config as saved: options left unset (at a default of ``None`` or 0: off, or marked written only when set)
    are not written, so versions that predate an option still read files that do not use it; those marked written
    always are."""
    unset = {f.name for f in fields(config) if getattr(config, f.name) == f.default
             and f.metadata.get("written") != "always"
             and (f.default in (None, 0) or f.metadata.get("written") == "when set")}
    return {key: value for key, value in asdict(config).items() if key not in unset}


# the flat keyword arguments of earlier versions -> (config, field): how older saved models are read
LEGACY_KEYS = {
    "convert_every": ("conversion", "every"),
    "conversion_eval_size": ("conversion", "eval_size"),
    "conversion_eval_every": ("conversion", "eval_every"),
    "input_range": ("calibration", "input_range"),
    "calibration_margin": ("calibration", "margin"),
    "calibrate_clips": ("calibration", "clips"),
}
