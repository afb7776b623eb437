"""RIVC against Stable-Baselines3's DQN on the RL Baselines3 Zoo's own settings, same run, 5 seeds.

    python benchmarks/zoo.py                  # trains what is missing (2 workers), then writes docs/ZOO.md
    python benchmarks/zoo.py --task CartPole-v1 --workers 1
    python benchmarks/zoo.py --report-only    # rebuild docs/ZOO.md and the plot from stored records

RIVC: 4-bit weights and activations, the default target ``akida`` (Akida 2.0, emulated exactly), the SNN
acting and converted after every update. DQN: SB3's float DQN. The Zoo's tasks (``CartPole-v1``,
``LunarLander-v3``) give both agents the Zoo's DQN hyperparameters and budget (``rivc.agents.hyperparams.
zoo_hyperparams``, read from the installed ``rl_zoo3``); our robot tasks give DQN RIVC's DQN settings and RIVC
its tuned ones on top (``tuned_hyperparams``); from camera frames (``MobileReachCamera-v0``) both agents' networks
have the same conv and dense layers (RIVC's ``CnnPolicy``, SB3's ``CnnPolicy`` with them in float:
``benchmarks.bench_vision.ChipCNN``). Each run ends with 20 greedy episodes (seeds 1000-1019, the same for both
agents) of its final policy, and records a learning curve (5 episodes every tenth of the budget). Throughput is
environment steps per second of ``learn`` without the curve's evaluations.

Each run is one JSON record in ``docs/results/zoo/`` (written atomically): an interrupted sweep resumes
where it stopped. Needs ``pip install 'rivc[zoo]'`` (rl-zoo3, and Box2D for LunarLander).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ablation import run_sweep  # noqa: E402
from rivc.agents.config import AUTO  # noqa: E402
from rivc.neurochip.base import Backend, SpikingPolicy, as_integer_network, register_backend  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
RESULTS = DOCS / "results" / "zoo"
AGENTS = ("rivc", "dqn")
SEEDS = (0, 1, 2, 3, 4)
EVAL_EPISODES, EVAL_SEED, CURVE_POINTS, CURVE_EPISODES = 20, 1000, 10, 5


@dataclass(frozen=True)
class Task:
    env_id: str
    settings: str  # "zoo": the RL Zoo's DQN settings and budget; "defaults": RIVC's; "tuned": RIVC's tuned ones
    timesteps: int | None = None  # None: the Zoo's budget
    seeds: tuple[int, ...] = SEEDS
    tag: str = ""  # a probe: RIVC with ``rivc_extra`` on top of the settings (the DQN runs are the untagged task's)
    rivc_extra: tuple[tuple[str, Any], ...] = ()


W8 = ("quant", {"weight_bits": 8, "activation_bits": 8})  # 8-bit weights and activations on akida
LEARNED = ("calibration", {"clip_decay": None})  # PACT's learned clips: the default at every width
MIXED = ("quant", {"layers": [[8, 8], [8, 4], [4, None]]})  # 8-bit first layer, 4-bit hidden layer and head
DATA = ("calibration", {"input_range": "data", "min_samples": 1000})
RANGE2 = ("policy_kwargs", {"net_arch": [256, 256], "obs_range": [-2.0, 2.0]})  # LunarLander's inputs over +-2
TRACK = ("calibration", {"input_range": "track"})  # the input range follows the replay data (an option)
TRACK_ALL = ("calibration", {"input_range": "track", "quantile": 0.0})  # ... over every state, none left out
FIT = ("calibration", {"input_range": "fit"})  # the space's bounds, tracked only where they are loose (the default)
SPACE = ("calibration", {"input_range": "space"})  # the space's bounds, fixed: the default until 2026-12-06
NOCAP = ("max_learning_rate", None)  # the Zoo's learning rate uncapped
EMA = ("calibration", {"clip_decay": 0.99})  # the clips follow each batch's largest pre-activation
CALIB1K = ("calibration", {"min_samples": 1000})  # calibrate on at least 1,000 warm-up states
LSQ = ("calibration", {"clip_gradient": "lsq"})  # the clips learned by LSQ's step-size gradient
EMA_MSE = ("calibration", {"clip_decay": 0.99, "clip_statistic": "mse"})  # the clips follow the activations' spread
FIRST8 = ("quant", {"layers": [[8, 4], [4, 4], [4, None]]})  # 8-bit first-layer weights (BrainChip's convention)
UNIT = ("policy_kwargs", {"activation_steps": "unit"})  # an activation step per unit, folded into the next layer
DUELING = ("policy_kwargs", {"head": "dueling"})  # a value row and an advantage row per action
RATE = ("target", "rate")  # the rate-coded target: any widths
INTEGER = ("backend", "integer-reference")  # the exported integer network acts (make_model registers it)
GAP_CLIP = ("gap_clip", -1.0)  # the gap term bounded below at -1 (Munchausen-DQN's l0)
GAP_CLIP10 = ("gap_clip", -10.0)  # ... at -10: ten rewards of order one (the default since 2026-12-07)
UNBOUNDED = ("gap_clip", None)  # the gap term unbounded: the paper's update, the default until 2026-12-07
UNSCALED = ("reward_scale", 1.0)  # the rewards as they are: the default until 2026-12-06 ("auto" since)
# the rows the issue's targets read, which follow RIVC's defaults when they move: the defaults' own, 8 bits with
# either clip rule and AKD1000's arithmetic (a rerun takes the defaults as they are now; the other rows that ran
# before "auto" keep the rewards as they ran them: ``until_auto_reward_scale``)
FOLLOW_DEFAULTS = ("", "w8-fit", "akd1000-fit", "w8-ema-fit")
# ... of which those that follow the gap term's bound too (the other rows ran before the bound became the default)
BOUND_FOLLOWS_DEFAULTS = ("", "w8-fit", "akd1000-fit")


def layer_bits(*layers) -> tuple[str, dict]:
    """Per-layer widths: ``(weight, activation)`` per hidden layer, the head's weight bits last."""
    return ("quant", {"layers": [*map(list, layers[:-1]), [layers[-1], None]]})

def as_they_ran(tasks, setting: tuple[str, Any], follow: tuple[str, ...]) -> tuple[Task, ...]:
    """Rows added before a default moved, as they ran: with the old ``setting`` (key, value), unless they follow the
    defaults on it (their tag in ``follow``) or name that key."""
    return tuple(task if task.tag in follow or any(key == setting[0] for key, _ in task.rivc_extra)
                 else replace(task, rivc_extra=(setting, *task.rivc_extra)) for task in tasks)

def until_auto_reward_scale(tasks) -> tuple[Task, ...]:
    """Rows added before 2026-12-06: the rewards as they are (reward_scale 1.0)."""
    return as_they_ran(tasks, UNSCALED, FOLLOW_DEFAULTS)

def until_bounded_gap(tasks) -> tuple[Task, ...]:
    """Rows added before 2026-12-07: the gap term unbounded."""
    return as_they_ran(tasks, UNBOUNDED, BOUND_FOLLOWS_DEFAULTS)

def on_space_bounds(tasks) -> tuple[Task, ...]:
    """``tasks`` as they ran before 2026-12-06: with the space's bounds as the input range unless they name one."""
    return tuple(replace(task, rivc_extra=(SPACE, *task.rivc_extra)) for task in tasks)

# in the order they run: RIVC's defaults on every task (the Zoo's, our robot tasks, a held-out one: Acrobot), the input
# range that follows the data, 8 bits and AKD1000, then the controls that asked why LunarLander failed (the target,
# the input range, the widths, the quantization delay, the gap term's clip). Records of earlier code are in
# docs/results/zoo/archive-2026-11/ and archive-2026-12-05-fused-adam/.
DEFAULT_TASKS = (
    Task("CartPole-v1", "zoo"),
    Task("LunarLander-v3", "zoo"),
    Task("rivc/ArmReach-v0", "tuned", 60_000),
    Task("rivc/MobileReach-v0", "tuned", 60_000),
    Task("Acrobot-v1", "zoo"),
    Task("MountainCar-v0", "zoo"),  # held out too: the Zoo's rate (4e-3) is above RIVC's cap
)
# MobileReach from its 32x32 camera (conv nets, both agents; since 2026-12-06): the probes of the state tasks below
# ran before it, and only the defaults, 8 bits and AKD1000 run on it
CAMERA_TASKS = (Task("rivc/MobileReachCamera-v0", "tuned", 60_000),)
# a robot task that no setting was chosen on and no row ran before 2026-12-06: PanTrack from its state, both agents
# on RIVC's DQN defaults (nothing tuned for it); since 2026-12-06 (session 24) Gymnasium's MuJoCo tasks too, their
# continuous actions in bins (``ENV@BINS``, as ``rivc train --action-bins``): no RIVC setting was chosen on any
MUJOCO_HELD_OUT = (
    Task("InvertedDoublePendulum-v5@5", "defaults", 60_000),
    Task("Reacher-v5@3", "defaults", 60_000),
    Task("Hopper-v5@3.per_joint", "defaults", 60_000),
)
# added on 2026-12-06 (session 25), after `reward_scale="auto"` became the default. Mean |r| of the agents' first 1,000
# steps: Humanoid about 4.9 (the factor acts), Pusher and HalfCheetah under 1 (it does not)
MUJOCO_HELD_OUT_SINCE_AUTO = (
    Task("Pusher-v5@3.per_joint", "defaults", 60_000),
    Task("HalfCheetah-v5@3.per_joint", "defaults", 60_000),
    Task("Humanoid-v5@3.per_joint", "defaults", 60_000),
)
HELD_OUT_TASKS = (Task("rivc/PanTrackState-v0", "defaults", 60_000), *MUJOCO_HELD_OUT, *MUJOCO_HELD_OUT_SINCE_AUTO)
# the Zoo's budgets (n_timesteps in its dqn.yml) of the tasks whose controls halve them
ZOO_BUDGETS = {"CartPole-v1": 50_000, "LunarLander-v3": 100_000, "Acrobot-v1": 100_000}
# the first layer's weights trained on the input codes' scale (about [-1, 1] over the input range), as until
# 2026-12: RIVC's defaults then, and every probe below ran so
NORMALISED = ("policy_kwargs", {"input_units": "normalised"})
PROBES = (
    Task("CartPole-v1", "zoo", tag="track", rivc_extra=(TRACK, NOCAP)),
    Task("LunarLander-v3", "zoo", tag="track", rivc_extra=(TRACK,)),
    Task("rivc/ArmReach-v0", "tuned", 60_000, tag="track", rivc_extra=(TRACK,)),
    Task("rivc/MobileReach-v0", "tuned", 60_000, tag="track", rivc_extra=(TRACK,)),
    Task("Acrobot-v1", "zoo", tag="track", rivc_extra=(TRACK,)),
    # 8 bits, and AKD1000's arithmetic (the board on sale)
    Task("CartPole-v1", "zoo", tag="w8", rivc_extra=(W8, LEARNED)),
    Task("CartPole-v1", "zoo", tag="w8-nocap", rivc_extra=(W8, LEARNED, NOCAP)),
    Task("CartPole-v1", "zoo", tag="akd1000", rivc_extra=(("target", "akd1000"),)),
    Task("CartPole-v1", "zoo", tag="akd1000-nocap", rivc_extra=(("target", "akd1000"), NOCAP)),
    # the input range given by hand: over +-2 (LunarLander's states), not the space's loose bounds
    Task("LunarLander-v3", "zoo", tag="range2", rivc_extra=(RANGE2,)),
    # is the target or the chip at fault? RIVC's loop with a float network acting: DQN's target, then RIVC's
    Task("LunarLander-v3", "zoo", tag="fpnn", rivc_extra=(("variant", "fpnn"),)),
    Task("LunarLander-v3", "zoo", tag="fpnn-gap", rivc_extra=(("variant", "fpnn-gap"),)),
    Task("LunarLander-v3", "zoo", tag="fpnn-range2", rivc_extra=(("variant", "fpnn"), RANGE2)),
    # no range given: each input's range from the data of a warm-up of at least 1,000 states (RIVC's option)
    Task("LunarLander-v3", "zoo", tag="data", rivc_extra=(DATA,)),
    Task("CartPole-v1", "zoo", tag="data", rivc_extra=(DATA, NOCAP)),
    Task("LunarLander-v3", "zoo", tag="w8", rivc_extra=(W8, LEARNED)),
    # the input range on the board on sale: AKD1000's arithmetic, 4 bits, inputs over +-2
    Task("LunarLander-v3", "zoo", tag="akd1000-range2", rivc_extra=(("target", "akd1000"), RANGE2)),
    # QuaRL's quantization delay: the float network trains and acts for half the budget, then QAT and the SNN
    Task("LunarLander-v3", "zoo", tag="delay", rivc_extra=(("quantization_delay", 50_000),)),
    # the gap term clipped below at -1, as Munchausen-DQN clips its log-policy term
    Task("LunarLander-v3", "zoo", tag="gapclip", rivc_extra=(("gap_clip", -1.0),)),
    Task("CartPole-v1", "zoo", tag="gapclip", rivc_extra=(("gap_clip", -1.0), NOCAP)),
    Task("CartPole-v1", "zoo", tag="delay", rivc_extra=(("quantization_delay", 25_000), NOCAP)),
    Task("LunarLander-v3", "zoo", tag="akd1000", rivc_extra=(("target", "akd1000"),)),
    Task("LunarLander-v3", "zoo", tag="mixed", rivc_extra=(MIXED,)),
    Task("LunarLander-v3", "zoo", tag="qat", rivc_extra=(("variant", "qat"),)),  # QAT with DQN's target (alpha 0)
    Task("CartPole-v1", "zoo", tag="fpnn", rivc_extra=(("variant", "fpnn"),)),
    Task("CartPole-v1", "zoo", tag="fpnn-gap", rivc_extra=(("variant", "fpnn-gap"),)),
    # CartPole's controls beside LunarLander's: QAT with DQN's target, mixed widths, a lower learning rate than
    # the Zoo's 2.3e-3 (the optimiser for a quantized network)
    Task("CartPole-v1", "zoo", tag="qat", rivc_extra=(("variant", "qat"), NOCAP)),
    Task("CartPole-v1", "zoo", tag="mixed", rivc_extra=(MIXED, NOCAP)),
    Task("CartPole-v1", "zoo", tag="lr5e-4", rivc_extra=(("learning_rate", 5e-4),)),
    Task("CartPole-v1", "zoo", tag="lr1e-3", rivc_extra=(("learning_rate", 1e-3),)),  # RIVC's cap, given as the rate
    # without RIVC's learning-rate cap (max_learning_rate=None): the Zoo's rate as it is (2.3e-3, 4e-3)
    Task("CartPole-v1", "zoo", tag="nocap", rivc_extra=(NOCAP,)),
    Task("MountainCar-v0", "zoo", tag="nocap", rivc_extra=(NOCAP,)),
    Task("MountainCar-v0", "zoo", tag="fpnn-gap", rivc_extra=(("variant", "fpnn-gap"),)),
    Task("MountainCar-v0", "zoo", tag="fpnn", rivc_extra=(("variant", "fpnn"),)),
    # the tracked range with the first layer's weights at 8 bits (4-bit hidden layer and head), where a column that
    # grows with its range cannot swamp a unit's 16 levels (Acrobot's failure with `track`)
    Task("Acrobot-v1", "zoo", tag="track-first8", rivc_extra=(TRACK, FIRST8)),
    Task("LunarLander-v3", "zoo", tag="track-first8", rivc_extra=(TRACK, FIRST8)),
    Task("CartPole-v1", "zoo", tag="track-first8", rivc_extra=(TRACK, FIRST8)),
    Task("Acrobot-v1", "zoo", tag="first8", rivc_extra=(FIRST8,)),
    Task("LunarLander-v3", "zoo", tag="first8", rivc_extra=(FIRST8,)),
    Task("CartPole-v1", "zoo", tag="first8", rivc_extra=(FIRST8,)),
)
# the defaults' widths and targets with the first layer in the observation's units (the probes above of the same
# names, `w8` and `akd1000`, ran normalised)
UNIT_PROBES = until_auto_reward_scale((*on_space_bounds((
    Task("CartPole-v1", "zoo", tag="w8-obsunits", rivc_extra=(W8, LEARNED)),
    Task("CartPole-v1", "zoo", tag="akd1000-obsunits", rivc_extra=(("target", "akd1000"),)),
    # is the learning-rate cap (chosen with the first layer normalised) still the lever? The Zoo's rates uncapped
    Task("CartPole-v1", "zoo", tag="nocap-obsunits", rivc_extra=(NOCAP,)),
    Task("MountainCar-v0", "zoo", tag="nocap-obsunits", rivc_extra=(NOCAP,)),
    # MountainCar's velocity column folds to 1/13 of its position column's scale: swamped on a 4-bit row's grid?
    Task("MountainCar-v0", "zoo", tag="first8-obsunits", rivc_extra=(FIRST8,)),
    Task("LunarLander-v3", "zoo", tag="first8-obsunits", rivc_extra=(FIRST8,)),
    # the range that follows the data failed Acrobot with the first layer normalised, where each move rescaled its
    # weights (and Adam's steps on them); in the observation's units a move changes no weight
    Task("Acrobot-v1", "zoo", tag="track-obsunits", rivc_extra=(TRACK,)),
    Task("LunarLander-v3", "zoo", tag="track-obsunits", rivc_extra=(TRACK,)),
    Task("MountainCar-v0", "zoo", tag="fpnn-gap-obsunits", rivc_extra=(("variant", "fpnn-gap"),)),
    # Acrobot's greedy policy flips between the goal and -500 from one evaluation to the next (the learning curve):
    # is it the 4-bit chip (the float loop on RIVC's target; 8 bits) or RIVC's loop (the float loop on DQN's target)?
    Task("Acrobot-v1", "zoo", tag="fpnn-gap-obsunits", rivc_extra=(("variant", "fpnn-gap"),)),
    Task("Acrobot-v1", "zoo", tag="w8-obsunits", rivc_extra=(W8, LEARNED)),
    Task("Acrobot-v1", "zoo", tag="fpnn-obsunits", rivc_extra=(("variant", "fpnn"),)),
    # the Zoo starts Acrobot's (and LunarLander's) updates at step 0: the activation clips start at one state's
    # activations. A warm-up of 1,000 random states first (CalibrationConfig.min_samples)
    Task("Acrobot-v1", "zoo", tag="calib1k-obsunits", rivc_extra=(CALIB1K,)),
    # the tracked range's margin stopped at the space's finite bounds (where the states stay inside them): a
    # candidate default, on every task
    *(replace(task, tag="track-bounded", rivc_extra=(TRACK,)) for task in DEFAULT_TASKS),
    # the clips as a moving average of each batch's largest pre-activation (CalibrationConfig.clip_decay), not learned:
    # on Acrobot the learned clip of the second hidden layer stays below 1 while its pre-activations grow past 100,
    # and the layer turns binary (every one of its codes 0 or the top)
    *(replace(task, tag="ema", rivc_extra=(EMA,)) for task in DEFAULT_TASKS),
    # the clips learned with LSQ's gradient (the rounding error inside the clip counts too), against PACT's
    *(replace(task, tag="lsq", rivc_extra=(LSQ,)) for task in DEFAULT_TASKS),
    # the clips follow each batch's least-squares clip: the activations' spread sets the step, not their largest one
    *(replace(task, tag="ema-mse", rivc_extra=(EMA_MSE,)) for task in DEFAULT_TASKS),
    # the clips tracked at 8 bits, where the largest activation leaves levels enough for the rest: is the lagging
    # clip all that holds Acrobot's quantized network back? And what do tracked clips do at 8 bits elsewhere,
    # against the 8-bit defaults?
    Task("Acrobot-v1", "zoo", tag="w8-ema", rivc_extra=(W8, EMA)),
    *(replace(task, tag="w8-obsunits", rivc_extra=(W8, LEARNED)) for task in DEFAULT_TASKS
      if task.settings == "tuned" or task.env_id in ("LunarLander-v3", "MountainCar-v0")),
    *(replace(task, tag="w8-ema", rivc_extra=(W8, EMA)) for task in DEFAULT_TASKS
      if task.env_id != "Acrobot-v1"),
    # LunarLander's 4-bit cause is its input range (`track` rescues it): the same at 8 bits
    Task("LunarLander-v3", "zoo", tag="w8-track", rivc_extra=(W8, LEARNED, TRACK)),
    # ... and on the board on sale: AKD1000's arithmetic, 4 bits
    Task("LunarLander-v3", "zoo", tag="akd1000-track", rivc_extra=(("target", "akd1000"), TRACK)),
    # a step per unit (4 bits): a narrow unit gets its 15 levels however wide the layer's widest (Acrobot's second
    # layer spans 2..87 under one clip); learned clips, then clips that follow each unit's largest pre-activation
    *(replace(task, tag="unit", rivc_extra=(UNIT,)) for task in DEFAULT_TASKS),
    *(replace(task, tag="unit-ema", rivc_extra=(UNIT, EMA)) for task in DEFAULT_TASKS),
    # which half of the 4-bit grid holds Acrobot back: widths Akida refuses, on the rate-coded target's arithmetic
    # (which takes any widths) with the integer network acting (a diagnosis, not a deployment), tracked clips as at
    # 8 bits: 8-bit weights with 4-bit activations,
    # 4-bit weights with 8-bit activations, an 8-bit head only, and all 4-bit on the same target
    Task("Acrobot-v1", "zoo", tag="rate-w8a4-ema", rivc_extra=(RATE, INTEGER, layer_bits((8, 4), (8, 4), 8), EMA)),
    Task("Acrobot-v1", "zoo", tag="rate-w4a8-ema", rivc_extra=(RATE, INTEGER, layer_bits((4, 8), (4, 8), 4), EMA)),
    Task("Acrobot-v1", "zoo", tag="rate-head8-ema", rivc_extra=(RATE, INTEGER, layer_bits((4, 4), (4, 4), 8), EMA)),
    Task("Acrobot-v1", "zoo", tag="rate-ema", rivc_extra=(RATE, INTEGER, EMA)),
    # the 4-bit head rounds each action's row on the scale of the Q-values' common part (Acrobot: Q about -67, gaps
    # about 3): a dueling head, whose advantage rows are rounded on their own scale; with the default clips and with
    # tracked ones
    *(replace(task, tag="dueling", rivc_extra=(DUELING,)) for task in DEFAULT_TASKS),
    *(replace(task, tag="dueling-ema", rivc_extra=(DUELING, EMA)) for task in DEFAULT_TASKS),
    # LunarLander's 4-bit input range is its own cause (`track` rescues it): the head and clips on top of it, and the
    # three together on every task (a candidate set of defaults)
    *(replace(task, tag="dueling-ema-track", rivc_extra=(DUELING, EMA, TRACK)) for task in DEFAULT_TASKS),
    # ... what the rows tagged `dueling-ema-track` until 2026-12-06 ran (the tracked clips' option was lost: above)
    *(replace(task, tag="dueling-track", rivc_extra=(DUELING, TRACK)) for task in DEFAULT_TASKS),
    # `track` rescues LunarLander and costs CartPole (`track-bounded`, `dueling-ema-track`): is it the 1 % of states on
    # each side that the tracked range leaves out (CartPole's last states before a fall)? The range over every state
    *(replace(task, tag="track-q0", rivc_extra=(TRACK_ALL,)) for task in DEFAULT_TASKS),
    # MountainCar: RIVC's target loses in float too (`fpnn-gap-obsunits`; the float loop with DQN's target is DQN's run);
    # 4 bits with DQN's target, and RIVC's with its gap term clipped below at -1 as Munchausen-DQN clips its term
    Task("MountainCar-v0", "zoo", tag="qat-obsunits", rivc_extra=(("variant", "qat"),)),
    Task("MountainCar-v0", "zoo", tag="gapclip-obsunits", rivc_extra=(("gap_clip", -1.0),)),
    # RIVC's defaults until 2026-12-06: the space's bounds as the input range. `track` rescued LunarLander and cost
    # CartPole over 10 seeds, though it clips none of CartPole's states: `fit` (the defaults since, tagged `fit` until
    # then) keeps the bounds where the states fill them and tracks only where they are loose
    *(replace(task, tag="space") for task in DEFAULT_TASKS))),
    # the dueling head with tracked clips learned Acrobot at 4 bits (session 17) and ran elsewhere with the space's
    # bounds; on LunarLander, the one task where `fit` tracks, with the default range
    Task("LunarLander-v3", "zoo", tag="dueling-ema-fit", rivc_extra=(DUELING, EMA, FIT)),
    # `fit` at 8 bits and on AKD1000 (the targets the issue names beside the 4-bit default), on the Zoo's two tasks,
    # our robot tasks and the held-out one (not Humanoid on AKD1000: its 348 observation inputs are more than the
    # chip's input layer takes, 147, and the target refuses the network)
    *(replace(task, tag=f"{name}-fit", rivc_extra=(*extra, FIT)) for task in (*DEFAULT_TASKS, *CAMERA_TASKS,
                                                                              *HELD_OUT_TASKS)
      if task.env_id not in ("Acrobot-v1", "MountainCar-v0")
      for name, extra in (("w8", (W8, LEARNED)), ("akd1000", (("target", "akd1000"),)))
      if (name, task.env_id) != ("akd1000", "Humanoid-v5@3.per_joint")),
    # the camera's gap to its state: RIVC's loop with a float conv network (no quantization, no conversion)
    *(replace(task, tag="fpnn", rivc_extra=(("variant", "fpnn"),)) for task in CAMERA_TASKS),
    # two controls the issue names, last run with the normalised first layer and the space's bounds (PROBES), now on
    # the defaults: QuaRL's quantization delay (the float network trains and acts for half the Zoo's budget, then QAT,
    # its clips started at the float network's largest activations, and the SNN), and the gap term bounded below at
    # -1 (Munchausen-DQN bounds its scaled log-policy at l0 = -1), on the Zoo's three tasks
    *(replace(task, tag="delay-fit", rivc_extra=(("quantization_delay", budget // 2),))
      for task in DEFAULT_TASKS for env_id, budget in ZOO_BUDGETS.items() if task.env_id == env_id),
    *(replace(task, tag="gapclip-fit", rivc_extra=(("gap_clip", -1.0),)) for task in DEFAULT_TASKS
      if task.env_id in ZOO_BUDGETS),
    # 8 bits with clips that follow the activations learned held-out Acrobot (`w8-ema`, every seed near the float
    # loop) and ran elsewhere only with the space's bounds (LunarLander's cause then): with the default input range
    *(replace(task, tag="w8-ema-fit", rivc_extra=(W8, EMA, FIT))
      for task in (*DEFAULT_TASKS, *CAMERA_TASKS, *HELD_OUT_TASKS)),
    # the 4-bit head rounds Acrobot's action gaps away and the dueling head keeps them, with tracked clips; but clips
    # at the batch's largest pre-activation leave most of LunarLander's second layer at code 0 (`dueling-ema-fit`):
    # the dueling head with clips at the batch's least-squares clip, on Acrobot first (it failed there: not run on
    # LunarLander)
    Task("Acrobot-v1", "zoo", tag="dueling-ema-mse-fit", rivc_extra=(DUELING, EMA_MSE, FIT)),
    # Gymnasium's MuJoCo tasks, held out: is a shortfall RIVC's target (its gap term) or the chip? QAT on DQN's target
    # (alpha 0), and RIVC's loop with a float network acting, on DQN's target and on RIVC's
    *(replace(task, tag=f"{variant}-fit", rivc_extra=(("variant", variant),))
      for task in MUJOCO_HELD_OUT for variant in ("qat", "fpnn", "fpnn-gap")),
    # ... QAT on DQN's target beat the defaults there (InvertedDoublePendulum): the gap term's cost on every task, at
    # 4 bits on the defaults (the conversion is exact on akida: the gap it widens guards against no conversion error)
    *(replace(task, tag="qat-fit", rivc_extra=(("variant", "qat"),)) for task in (*DEFAULT_TASKS, *CAMERA_TASKS)),
    # ... and RIVC's loop in float failed there on RIVC's target alone: the gap term and beta act in the Q-values'
    # units, which grow with the rewards (about 8 per step there, 1 on the tasks the defaults were chosen on). Since
    # 2026-12-06 the defaults bring the rewards to order one where they are larger (`reward_scale="auto"`); it acts
    # on InvertedDoublePendulum and, of the other tasks, LunarLander (about 3.3 per step under the warm-up's random
    # policy; elsewhere the factor is 1 and nothing changes). There the defaults' rows ran before with the rewards as
    # they are: these rows (the "auto" runs, tagged `rscale-fit` and `w8-ema-rscale-fit` then, are the defaults' since)
    *(replace(task, tag=tag, rivc_extra=(*extra, UNSCALED))
      for task in (*HELD_OUT_TASKS, *DEFAULT_TASKS) if task.env_id in ("InvertedDoublePendulum-v5@5", "LunarLander-v3")
      for tag, extra in (("rscale1-fit", ()), ("w8-ema-rscale1-fit", (W8, EMA, FIT)), ("w8-rscale1-fit", (W8, LEARNED)))),
    Task("LunarLander-v3", "zoo", tag="akd1000-rscale1-fit", rivc_extra=(("target", "akd1000"), UNSCALED)),
))
# rows added since `reward_scale="auto"` became the default (2026-12-06, session 25): on the defaults as they are
SINCE_AUTO_PROBES = (
    # 8 bits on InvertedDoublePendulum: learned clips hold the second layer's clip near 7 and reach DQN's mean;
    # tracked ones follow its largest pre-activation to 72-907, and most units get a few of the 255 levels. The
    # clips at the batch's least-squares clip (the spread, not the largest one), and a clip per unit
    *(replace(task, tag=tag, rivc_extra=extra) for task in MUJOCO_HELD_OUT if task.env_id == "InvertedDoublePendulum-v5@5"
      for tag, extra in (("w8-ema-mse-fit", (W8, EMA_MSE, FIT)), ("w8-unit-ema-fit", (W8, UNIT, EMA, FIT)))),
    # ... neither helps: with the rewards as they are the tracked clips' 8-bit network ended where RIVC's loop with a
    # float network did (99.4 against 103.3). Is it there with the rewards scaled too (RIVC's target in float)?
    *(replace(task, tag="fpnn-gap-scaled-fit", rivc_extra=(("variant", "fpnn-gap"),)) for task in MUJOCO_HELD_OUT
      if task.env_id == "InvertedDoublePendulum-v5@5"),
    # the held-out MuJoCo tasks' controls on the tasks added since (as above: the target or the chip?)
    *(replace(task, tag=f"{variant}-fit", rivc_extra=(("variant", variant),))
      for task in MUJOCO_HELD_OUT_SINCE_AUTO for variant in ("qat", "fpnn", "fpnn-gap")),
    # ... and where "auto" acts, the rewards as they are
    *(replace(task, tag="rscale1-fit", rivc_extra=(UNSCALED,)) for task in MUJOCO_HELD_OUT_SINCE_AUTO
      if task.env_id.startswith("Humanoid-")),
    # the 8-bit clip rules part on the held-out tasks: Acrobot's learned-clip row on today's defaults (it last ran
    # with the space's bounds, `w8-obsunits`, the range `fit` keeps there)
    Task("Acrobot-v1", "zoo", tag="w8-fit", rivc_extra=(W8, LEARNED)),
    # ... and MountainCar's (it last ran as `w8-obsunits` too): the last task without a learned-clip row on today's
    # defaults, run before the 8-bit default went back to learned clips (2026-12-06, session 26)
    Task("MountainCar-v0", "zoo", tag="w8-fit", rivc_extra=(W8, LEARNED)),
    # the gap term bounded below at -1, as Munchausen-DQN bounds its scaled log-policy (l0 = -1 with rewards in
    # [-1, 1]): it ran on the Zoo's tasks with the rewards as they are (`gapclip-fit`: CartPole 441.5 against the
    # defaults' 290.0 on seeds 0-4, LunarLander, whose rewards average about 3 a step, -0.5). With the rewards brought
    # to order one (the default since) the bound is in the units M-DQN set it in: on LunarLander again, and on the
    # tasks that have no row of it (MountainCar, factor 1, has one on older code); on the two where RIVC's target
    # costs a float network (InvertedDoublePendulum, Humanoid), the float loop too
    Task("LunarLander-v3", "zoo", tag="gapclip-scaled-fit", rivc_extra=(GAP_CLIP,)),
    *(replace(task, tag="gapclip-fit", rivc_extra=(GAP_CLIP,)) for task in (*DEFAULT_TASKS, *HELD_OUT_TASKS)
      if task.env_id not in (*ZOO_BUDGETS, "MountainCar-v0")),
    *(replace(task, tag="fpnn-gapclip-fit", rivc_extra=(("variant", "fpnn-gap"), GAP_CLIP))
      for task in HELD_OUT_TASKS if task.env_id in ("InvertedDoublePendulum-v5@5", "Humanoid-v5@3.per_joint")),
    # Humanoid's 4-bit curve is about 30 % below the float network's on either target: is it the first layer's 348
    # inputs at 4-bit weights? 8-bit first-layer weights (BrainChip's convention), 4 bits elsewhere; on Humanoid it
    # was (the curve at the 8-bit network's): on every dense task
    *(replace(task, tag="first8-fit", rivc_extra=(FIRST8,)) for task in (*DEFAULT_TASKS, *HELD_OUT_TASKS)),
    # the bound at -1 rescued InvertedDoublePendulum and cost the tasks whose widened gaps reach -4 to -39 in healthy
    # runs (HalfCheetah, Hopper; ArmReach and Pusher -2 to -9). InvertedDoublePendulum's float loop diverges unbounded
    # (`benchmarks/gap_trace.py`: its state values past the largest return the rewards allow, its gaps past -1,000);
    # in probes outside the sweep (seed 0) it learned bounded at -3 and -10, not at -30 or -100. The bound at -10, the
    # rewards at order one, ran on every task and target as rows `gapclip10-fit`, `w8-gapclip10-fit` and
    # `akd1000-gapclip10-fit` (sessions 27-29) and became the default on 2026-12-07 (SINCE_BOUND_PROBES); the float
    # loop where it failed
    *(replace(task, tag="fpnn-gapclip10-fit", rivc_extra=(("variant", "fpnn-gap"), GAP_CLIP10))
      for task in HELD_OUT_TASKS if task.env_id == "InvertedDoublePendulum-v5@5"),
)
# rows added since the gap term's bound at -10 became the default (2026-12-07, session 29): on the defaults as they
# are. The bound's runs are the defaults' rows now, and the defaults' runs before are the unbounded rows, on every
# task and target the defaults have a row on (their records renamed, nothing rerun)
SINCE_BOUND_PROBES = (
    *(replace(task, tag=f"{name}unbounded-fit", rivc_extra=(*extra, UNBOUNDED))
      for task in (*DEFAULT_TASKS, *CAMERA_TASKS, *HELD_OUT_TASKS)
      for name, extra in (("", ()), ("akd1000-", (("target", "akd1000"),)), ("w8-", (W8, LEARNED)))
      if name != "akd1000-" or task.env_id not in ("Acrobot-v1", "MountainCar-v0", "Humanoid-v5@3.per_joint")),
)
TASKS = (
    *DEFAULT_TASKS,
    *CAMERA_TASKS,
    *HELD_OUT_TASKS,
    *until_bounded_gap((
        *UNIT_PROBES,
        *SINCE_AUTO_PROBES,
        *until_auto_reward_scale(on_space_bounds(replace(task, tag="normalised", rivc_extra=(NORMALISED,))
                                                 for task in DEFAULT_TASKS)),
        *until_auto_reward_scale(on_space_bounds(replace(task, rivc_extra=(*task.rivc_extra, NORMALISED))
                                                 for task in PROBES)),
    )),
    *SINCE_BOUND_PROBES,
)


@dataclass(frozen=True)
class RunSpec:
    env_id: str
    agent: str
    seed: int
    timesteps: int
    kwargs: str  # JSON of the agent's keyword arguments (part of the record)
    tag: str = ""

    @property
    def key(self) -> str:
        key = f"{self.env_id.replace('/', '_')}__{self.agent}__seed{self.seed}__{self.timesteps}"
        return f"{key}__{self.tag}" if self.tag else key


def task_settings(task: Task) -> tuple[dict[str, Any], dict[str, Any], int]:
    """``(rivc_kwargs, dqn_kwargs, timesteps)`` of one task."""
    from rivc.agents.hyperparams import tuned_hyperparams, zoo_hyperparams

    if task.settings == "zoo":
        zoo = zoo_hyperparams(task.env_id)
        return dict(zoo.kwargs), dict(zoo.kwargs), task.timesteps or zoo.timesteps
    rivc = tuned_hyperparams(task.env_id) if task.settings == "tuned" else {}
    return rivc, dict(RIVC_DQN_SETTINGS), int(task.timesteps)


# RIVC's DQN defaults, given to SB3's DQN on the robot tasks (SB3's own defaults differ: a 1M buffer, lr 1e-4, ...)
RIVC_DQN_SETTINGS = dict(learning_rate=1e-3, buffer_size=50_000, learning_starts=1_000, batch_size=64, gamma=0.99,
                         train_freq=4, gradient_steps=1, target_update_interval=500, exploration_fraction=0.2,
                         exploration_final_eps=0.02, max_grad_norm=10.0)


def add_setting(settings: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key``; a dict adds to the one already there (the Zoo's net_arch stays; two calibration options both
    hold: until 2026-12-06 the second replaced the first, and `dueling-ema-track` ran without `ema`)."""
    current = settings.get(key)
    settings[key] = {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value


def extra_settings(task: Task) -> dict[str, Any]:
    """A probe's RIVC settings on top of the task's, in order."""
    extra: dict[str, Any] = {}
    for key, value in task.rivc_extra:
        add_setting(extra, key, value)
    return extra


def task_name(task: Task) -> str:
    return f"{task.env_id}:{task.settings}" + (f":{task.tag}" if task.tag else "")


def grid(tasks: list[str] | None = None, seeds: list[int] | None = None) -> list[RunSpec]:
    """The runs of ``tasks`` (all by default), each on its task's seeds or on ``seeds``."""
    from rivc.agents.config import CalibrationConfig
    from rivc.agents.rivc_agent import RIVC

    runs = []
    for task in TASKS:
        if tasks and task_name(task) not in tasks:
            continue
        rivc_kwargs, dqn_kwargs, timesteps = task_settings(task)
        for key, value in extra_settings(task).items():
            add_setting(rivc_kwargs, key, value)
        # the input range and the clip rule written out, the defaults' too: a record says what ran when a default
        # moves again
        defaults = CalibrationConfig()
        rivc_kwargs["calibration"] = {"input_range": defaults.input_range, "clip_decay": defaults.clip_decay,
                                      **rivc_kwargs.get("calibration", {})}
        rivc_kwargs.setdefault("reward_scale", inspect.signature(RIVC).parameters["reward_scale"].default)  # (likewise)
        for seed in seeds or task.seeds:
            for agent, kwargs in (("rivc", rivc_kwargs), ("dqn", dqn_kwargs)):
                runs.append(RunSpec(task.env_id, agent, seed, timesteps, json.dumps(kwargs, sort_keys=True),
                                    task.tag if agent == "rivc" else ""))
    return runs




class IntegerReference(SpikingPolicy):
    """The exported integer network acting as it is (exact, as the QAT forward): what a chip with exact arithmetic
    would run, for widths that only the rate-coded target takes, without its spike-count timing (a diagnosis)."""

    def __init__(self, network) -> None:
        self.network = network

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        return self.network.q_values(np.asarray(obs, dtype=np.float32).reshape(-1, *self.obs_shape))


class IntegerReferenceBackend(Backend):
    name = INTEGER[1]

    def convert(self, network) -> SpikingPolicy:
        return IntegerReference(as_integer_network(network))


def make_task_env(env_id: str):
    """A task's environment: ``ENV@BINS`` is ENV with its continuous actions in BINS (``rivc.envs.ActionBins`` text,
    ``.`` for ``:``: ``Hopper-v5@3.per_joint``)."""
    from rivc.envs import ActionBins, make_env

    name, _, bins = env_id.partition("@")
    return make_env(name, ActionBins.parse(bins.replace(".", ":")) if bins else None)


def make_model(spec: RunSpec):
    import torch
    from stable_baselines3 import DQN

    from rivc.agents import RIVC
    from rivc.envs import IMAGE_ENV_IDS
    from rivc.qnetwork import DEFAULT_CONV_HIDDEN_SIZES

    register_backend(INTEGER[1], IntegerReferenceBackend)

    torch.set_num_threads(1)
    kwargs = json.loads(spec.kwargs)
    if spec.env_id not in IMAGE_ENV_IDS:
        return (RIVC if spec.agent == "rivc" else DQN)("MlpPolicy", make_task_env(spec.env_id), seed=spec.seed,
                                                       device="cpu", **kwargs)
    if spec.agent == "rivc":
        return RIVC("CnnPolicy", spec.env_id, seed=spec.seed, device="cpu", **kwargs)
    from benchmarks.bench_vision import ChipCNN  # camera frames: DQN's float net has RIVC's conv and dense layers

    kwargs["policy_kwargs"] = {"features_extractor_class": ChipCNN, "net_arch": list(DEFAULT_CONV_HIDDEN_SIZES),
                               **kwargs.get("policy_kwargs", {})}
    return DQN("CnnPolicy", spec.env_id, seed=spec.seed, device="cpu", **kwargs)


def final_rollout(model, env):
    """The sweep's evaluation of a final policy: ``EVAL_EPISODES`` greedy episodes from ``EVAL_SEED`` on."""
    from rivc.agents.rollout import rollout

    return rollout(model, env, EVAL_EPISODES, seed=EVAL_SEED)


def run_one(spec: RunSpec) -> dict:
    """Train one agent on one seed; its final greedy return, learning curve and throughput."""
    from stable_baselines3.common.callbacks import BaseCallback

    from rivc.agents.rollout import rollout

    model = make_model(spec)
    env = make_task_env(spec.env_id)
    curve: list[list[float]] = []
    every = spec.timesteps // CURVE_POINTS
    eval_seconds = [0.0]

    class Curve(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % every == 0:
                start = time.perf_counter()
                if spec.agent == "dqn" or not self.model.snn_acting or self.model.spiking_policy is not None:
                    result = rollout(self.model, env, CURVE_EPISODES, seed=10_000 + self.num_timesteps)
                    curve.append([self.num_timesteps, result.mean_return])
                eval_seconds[0] += time.perf_counter() - start
            return True

    start = time.perf_counter()
    model.learn(spec.timesteps, callback=Curve())
    train_seconds = time.perf_counter() - start - eval_seconds[0]
    final = final_rollout(model, env)
    record = {**asdict(spec), "kwargs": json.loads(spec.kwargs), "final_return": final.mean_return,
              "final_returns": final.returns, "success_rate": final.success_rate, "curve": curve,
              "train_seconds": train_seconds, "steps_per_second": spec.timesteps / train_seconds}
    if spec.agent == "rivc":
        error = model.conversion_error()
        record["action_agreement"] = None if error is None else error.action_agreement
        record["conversions"] = model.num_conversions
        record["snn_from_step"] = model.snn_from_step
        record["reward_scale"] = model.reward_scale  # the factor on the rewards ("auto": as measured)
        record["gap_clip"] = model.gap_clip  # the gap term's bound as it ran, should the default move
        shares = model.unit_shares(model._replay_observations(limit=1024))  # the final network's, on replay states
        record["unit_shares"] = None if shares is None else asdict(shares)
        record["clips"] = [c.detach().tolist() for c in model.q_network.clips] if model.q_network.qat else None
        if not model.q_network.is_image:  # the final input range, and the share of replay states it clips per input
            states = model._replay_observations().reshape(-1, model.q_network.obs_dim)
            low, high = model.q_network.obs_low.cpu().numpy(), model.q_network.obs_high.cpu().numpy()
            record["input_range"] = {"low": low.tolist(), "high": high.tolist(), "moves": model.input_range_moves,
                                     "clipped": ((states < low) | (states > high)).mean(axis=0).tolist()}
    return record


def check_envs(runs: list[RunSpec]) -> None:
    """Make each task's env once before anything runs: a missing dependency (Box2D for LunarLander) stops the
    sweep at once, in one line, not after the other runs' time."""
    for env_id in sorted({spec.env_id for spec in runs}):
        try:
            make_task_env(env_id).close()
        except Exception as exc:  # gymnasium's DependencyNotInstalled, a missing registration
            raise SystemExit(f"benchmarks/zoo.py: {env_id} cannot be made here ({exc}); pip install 'rivc[zoo]'") from None


def sweep(runs: list[RunSpec], workers: int) -> None:
    """Run every spec without a stored record, each written as it finishes: an interrupted sweep resumes where it
    stopped, and a run that fails is reported in one line without losing the others' records."""
    from rivc.integer_net import atomic_write_bytes

    RESULTS.mkdir(parents=True, exist_ok=True)
    # (a probe's DQN runs are its task's: one run each, however many probes share them)
    todo = list({spec.key: spec for spec in runs if not (RESULTS / f"{spec.key}.json").exists()}.values())
    check_envs(todo)
    unique = len({spec.key for spec in runs})
    print(f"{unique} runs, {unique - len(todo)} stored, {len(todo)} to go on {workers} workers", flush=True)
    run_sweep(todo, run_one, lambda spec, record: atomic_write_bytes(RESULTS / f"{spec.key}.json", json.dumps(record).encode()),
              lambda spec, record: f"{spec.env_id} {spec.agent} {spec.tag} seed {spec.seed}: return "
                                   f"{record['final_return']:.1f}, {record['steps_per_second']:.0f} steps/s", workers)


def stored_seeds() -> list[int]:
    """Every seed with a stored record (the default 5, and any more run with ``--seed``)."""
    found = {int(m.group(1)) for path in RESULTS.glob("*.json") if (m := re.search(r"__seed(\d+)__", path.name))}
    return sorted(found | set(SEEDS))


def unread_records(runs: list[RunSpec]) -> list[str]:
    """The stored records that no run of ``runs`` reads (their row renamed or removed since): the report names them."""
    keys = {spec.key for spec in runs}
    return sorted(path.name for path in RESULTS.glob("*.json") if path.stem not in keys)


def load(runs: list[RunSpec]) -> list[dict]:
    """The stored records of ``runs`` (a probe's DQN runs are its task's: read once); a record whose settings
    differ from its run's (the settings changed since) is left out, with a note."""
    records = {}
    for spec in runs:
        path = RESULTS / f"{spec.key}.json"
        if spec.key in records or not path.exists():
            continue
        record = json.loads(path.read_text())
        if not ran_as_asked(record, json.loads(spec.kwargs)):
            print(f"left out {path.name}: recorded with other settings than the sweep's now (delete it to rerun)")
            continue
        records[spec.key] = record
    return list(records.values())


def unscaled_run_of_auto_row(ran: dict[str, Any], asked: dict[str, Any]) -> bool:
    """Whether settings ``ran`` are ``asked`` but for a fixed reward scale of 1 where ``asked`` says "auto"."""
    return asked.get("reward_scale") == AUTO and ran.get("reward_scale") == 1.0 and {**ran, "reward_scale": AUTO} == asked


def without_bound(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Settings but the gap term's bound (``bound_as_asked`` compares it: named or the default, the same run)."""
    return {key: value for key, value in kwargs.items() if key != "gap_clip"}


def bound_as_asked(record: dict, asked: dict[str, Any]) -> bool:
    """Whether a RIVC record ran the gap term's bound that ``asked`` gives (RIVC's default where it names none): the
    record's ``gap_clip``, or before records said it (2026-12-07), the bound its settings named or the default of its
    day (none)."""
    if record.get("agent", "rivc") != "rivc":
        return True
    from rivc.agents import RIVC

    ran = record["gap_clip"] if "gap_clip" in record else record["kwargs"].get("gap_clip")
    return ran == asked.get("gap_clip", inspect.signature(RIVC).parameters["gap_clip"].default)


def ran_as_asked(record: dict, asked: dict[str, Any]) -> bool:
    """Whether a record ran the settings ``asked``: the gap term's bound ``asked`` gives (``bound_as_asked``: named or
    the default, the same run), and the other settings the same, or a fixed reward scale of 1 where "auto" is asked
    and measures 1 on the run's own first rewards (``auto_reward_scale``): the same update, bit for bit."""
    ran, asked_rest = without_bound(record["kwargs"]), without_bound(asked)
    return bound_as_asked(record, asked) and (
        ran == asked_rest or (unscaled_run_of_auto_row(ran, asked_rest) and record.get("auto_reward_scale") == 1.0))


def auto_reward_scale(spec: RunSpec) -> float | None:
    """The factor ``reward_scale="auto"`` takes on a run: the run again with "auto", its budget and schedules, stopped
    once the factor is measured (until then a run at any reward scale is the unscaled one); None where it never is."""
    from stable_baselines3.common.callbacks import BaseCallback

    class UntilMeasured(BaseCallback):
        def _on_step(self) -> bool:
            return self.model.reward_scale is None

    model = make_model(replace(spec, kwargs=json.dumps({**json.loads(spec.kwargs), "reward_scale": AUTO})))
    model.learn(spec.timesteps, callback=UntilMeasured())
    return model.reward_scale


def measure_auto_reward_scales(runs: list[RunSpec]) -> None:
    """Write ``auto_reward_scale`` into each stored record that ran at a fixed reward scale of 1 on a row that asks
    "auto" now (rows that ran before "auto" was the default): where it is 1, the record is that row's run."""
    from rivc.integer_net import atomic_write_bytes

    for spec in runs:
        path = RESULTS / f"{spec.key}.json"
        if spec.agent != "rivc" or not path.exists():
            continue
        record = json.loads(path.read_text())
        if "auto_reward_scale" in record or not unscaled_run_of_auto_row(without_bound(record["kwargs"]),
                                                                        without_bound(json.loads(spec.kwargs))):
            continue
        record["auto_reward_scale"] = auto_reward_scale(spec)
        atomic_write_bytes(path, json.dumps(record).encode())
        print(f"{path.name}: auto_reward_scale {record['auto_reward_scale']}", flush=True)


STATE_TWIN = {"rivc/MobileReachCamera-v0": "rivc/MobileReach-v0"}  # a camera task: the same task from its state
def solved_at(env_id: str) -> float | None:
    """Gymnasium's ``reward_threshold`` of a task (``ENV@BINS``: ENV's); None where it has none (our robot tasks)."""
    import gymnasium as gym

    import rivc.envs  # noqa: F401  (the rivc/ ids)

    return gym.spec(env_id.partition("@")[0]).reward_threshold


def failed(record: dict) -> bool:
    """A seed fails where its final policy does not solve the task (Gymnasium's threshold), or succeeds
    in under half its episodes (robot tasks)."""
    threshold = solved_at(record["env_id"])
    if threshold is not None:
        return record["final_return"] < threshold
    return (record["success_rate"] or 0.0) < 0.5


def records_of(records: list[dict], env_id: str, agent: str, tag: str, timesteps: int) -> list[dict]:
    """One row's records (an agent's runs of a task with a tag and a budget), by seed."""
    return sorted((r for r in records if r["env_id"] == env_id and r["agent"] == agent and r["timesteps"] == timesteps
                   and r.get("tag", "") == tag), key=lambda r: r["seed"])


def mean_worst(records: list[dict]) -> str:
    """The final policies' mean and worst return, as the tables print them."""
    values = [r["final_return"] for r in records]
    return f"{np.mean(values):.1f} / {min(values):.1f}"


def curve_mean(records: list[dict]) -> float:
    """The mean of every learning-curve point of every seed."""
    return float(np.mean([value for r in records for _, value in r["curve"]]))


def report(runs: list[RunSpec]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = load(runs)
    if unread := unread_records(runs):
        print(f"not read: {len(unread)} stored records match no row of the sweep (the first: {unread[0]}): rename "
              "each to its row or delete it")
    lines = ["# RIVC vs DQN on the RL Zoo's settings", "",
             "Generated by `python benchmarks/zoo.py` from the records in `docs/results/zoo/`. RIVC: 4-bit, target",
             "`akida`, the SNN acting, converted after every update (RIVC's defaults: since 2026-12-06 the input range",
             "`fit`, the space's bounds tracked where loose; the rows tagged `space` ran the defaults before, with the",
             "bounds fixed; a control's row names what it changes, its input range and clip rule included: at 8 bits",
             "the clips are learned by default, `w8-fit` (`w8-ema-fit` tracks them: the 8-bit default for part of",
             "2026-12-06, `clip_decay=\"auto\"`); since 2026-12-06 the rewards are brought to order one per step where",
             "larger, `reward_scale=\"auto\"`: it acts on LunarLander, InvertedDoublePendulum and Humanoid, whose rows tagged `rscale1` ran",
             "with the rewards as they are; elsewhere its factor is 1 and a row's runs at 1.0 are its runs, bit for bit,",
             "checked per run by `python benchmarks/zoo.py --auto-reward-scale`); since 2026-12-07 the gap term is",
             "bounded below at -10 (`gap_clip=-10`): the rows that ran before name `gap_clip: None`, the paper's",
             "unbounded term (the defaults' rows then are the `unbounded` ones); DQN: Stable-Baselines3's float DQN.",
             "Return: 20 greedy",
             f"episodes of the final policy (seeds {EVAL_SEED}-{EVAL_SEED + EVAL_EPISODES - 1}). A seed fails below",
             "Gymnasium's reward threshold (CartPole 475, LunarLander 200, Acrobot -100, MountainCar -110; Gymnasium's",
             "MuJoCo tasks their own, far above these budgets) or, on our robot tasks, below 50 % success. Acrobot,",
             "MountainCar, PanTrackState and Gymnasium's MuJoCo tasks are held out: no RIVC setting was chosen on them.",
             "`ENV@BINS`: ENV's continuous actions in BINS (`rivc train --action-bins`), both agents on RIVC's DQN defaults.",
             "Throughput: environment steps per second of `learn` (curve evaluations excluded), 1 torch thread each, two",
             "runs at a time beside other work: indicative only (DQN's CartPole and LunarLander seeds 0-2 ran in an earlier",
             "sweep, under another load); `make bench` measures both in the same run.", "",
             "Curve: the mean of every learning-curve evaluation (10 points of 5 episodes a seed, all seeds): how well",
             "an agent learns over the run, less at the mercy of where the last update left it than the final return.",
             "",
             "| task | settings | steps | seeds | RIVC SNN: mean / worst | DQN: mean / worst | RIVC / DQN | "
             "curve RIVC / DQN | failed seeds RIVC / DQN | RIVC success | DQN success | throughput RIVC / DQN (sweep) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    budgets = {task_name(t): task_settings(t)[2] for t in TASKS}

    def of(task: Task, agent: str) -> list[dict]:
        return records_of(records, task.env_id, agent, task.tag if agent == "rivc" else "", budgets[task_name(task)])

    tasks = [t for t in TASKS if of(t, "rivc") or (not t.tag and of(t, "dqn"))]  # a probe: its RIVC runs
    plotted = [t for t in tasks if not t.tag]  # the figure: the defaults against DQN (a probe's curves: its records)
    fig, axes = plt.subplots(1, max(len(plotted), 1), figsize=(5 * max(len(plotted), 1), 3.6), squeeze=False)
    axis_of = dict(zip(map(task_name, plotted), axes[0]))
    for task in tasks:
        by_agent = {a: of(task, a) for a in AGENTS}
        rivc_seeds = {r["seed"] for r in by_agent["rivc"]}  # DQN on the row's own seeds: a like-for-like mean
        by_agent["dqn"] = [r for r in by_agent["dqn"] if r["seed"] in rivc_seeds]
        rivc, dqn = by_agent["rivc"], by_agent["dqn"]
        if not rivc or not dqn:
            continue

        def success(rs: list[dict]) -> str:
            values = [r["success_rate"] for r in rs if r["success_rate"] is not None]
            return f"{100 * np.mean(values):.0f} %" if values else "-"

        mean_r, mean_d = np.mean([r["final_return"] for r in rivc]), np.mean([r["final_return"] for r in dqn])
        ratio = f"{mean_r / mean_d:.2f}" if mean_d > 0 and mean_r > 0 else "-"  # no ratio of a negative return
        dqn_seeds = {r["seed"]: r for r in dqn}
        rivc_only = [r["seed"] for r in rivc if failed(r) and r["seed"] in dqn_seeds and not failed(dqn_seeds[r["seed"]])]
        fails = f"{sum(map(failed, rivc))} / {sum(map(failed, dqn))}" + (
            f" (RIVC alone: seeds {', '.join(map(str, rivc_only))})" if rivc_only else "")
        throughput = np.mean([r["steps_per_second"] for r in rivc]) / np.mean([r["steps_per_second"] for r in dqn])
        settings = task.settings + (f", control `{task.tag}`: RIVC {extra_settings(task)}" if task.tag else "")
        lines.append(f"| {task.env_id} | {settings} | {rivc[0]['timesteps']} | {len(rivc)} / {len(dqn)} | "
                     f"{mean_worst(rivc)} | {mean_worst(dqn)} | {ratio} | {curve_mean(rivc):.1f} / {curve_mean(dqn):.1f} | {fails} | "
                     f"{success(rivc)} | {success(dqn)} | "
                     f"{throughput:.2f}x |")
        ax = axis_of.get(task_name(task))
        if ax is None:
            continue
        for agent, color in (("rivc", "tab:purple"), ("dqn", "tab:gray")):
            for i, r in enumerate(by_agent[agent]):
                if r["curve"]:
                    steps, values = zip(*r["curve"])
                    ax.plot(steps, values, color=color, alpha=0.6, label=(
                        f"RIVC ({task.tag or '4-bit, akida'})" if agent == "rivc" else "SB3 DQN (float)") if i == 0 else None)
        ax.set(title=task_name(task), xlabel="environment steps",
               ylabel="return (5 episodes)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(DOCS / "curves_zoo.png", dpi=100)
    lines += controls_table(records, budgets)
    lines += ["", "Per seed: the final policy's return (the mean of its learning-curve evaluations; RIVC: the final network's "
              "dead hidden units per layer on 1,024 replay states, the share that never leaves code 0):", ""]
    for task in tasks:
        for agent in AGENTS if not task.tag else ("rivc",):
            lines.append(f"- {task_name(task)}, {agent}: " + ", ".join(
                f"seed {r['seed']} {r['final_return']:.1f} (curve {np.mean([v for _, v in r['curve']]):.1f}"
                + (f"; dead units {'/'.join(f'{100 * d:.0f}' for d in r['unit_shares']['dead'])} %" if r.get('unit_shares')
                   else "") + ")" for r in of(task, agent)))
    lines += pixels_against_state(records, of)
    lines += ["", "![learning curves, RIVC's defaults against DQN, per seed](curves_zoo.png)", ""]
    notes = DOCS / "zoo_notes.md"  # the findings, written by hand
    if notes.is_file():
        lines.append(notes.read_text())
    out = DOCS / "ZOO.md"
    out.write_text("\n".join(lines) + "\n")
    return out


# the controls and the tags that ran each: per task the first tag with records (the `-fit` ones ran on the
# defaults since 2026-12-06; the others before, their settings in the table above)
CONTROL_TASKS = ("CartPole-v1", "LunarLander-v3", "Acrobot-v1", "MountainCar-v0")
CONTROLS = (
    ("RIVC's defaults: 4 bits, `akida`, learned clips, `fit`, rewards brought to order one, the gap term bounded "
     "below at -10", ("",)),
    ("the gap term unbounded (the paper's update; the default until 2026-12-07)", ("unbounded-fit",)),
    ("the float network in RIVC's loop, DQN's target", ("fpnn", "fpnn-obsunits")),
    ("the float network in RIVC's loop, RIVC's target", ("fpnn-gap", "fpnn-gap-obsunits")),
    ("4 bits, DQN's target (alpha 0)", ("qat-fit", "qat", "qat-obsunits")),
    ("the gap term bounded below at -1 (Munchausen-DQN's l0)", ("gapclip-scaled-fit", "gapclip-fit", "gapclip-obsunits")),
    ("QuaRL's quantization delay: float for half the budget", ("delay-fit",)),
    ("learned step sizes, LSQ's gradient", ("lsq",)),
    ("clips that follow the batch's largest pre-activation", ("ema",)),
    ("clips that follow the batch's least-squares clip", ("ema-mse",)),
    ("the learning rate 5e-4 (RIVC caps the Zoo's at 1e-3)", ("lr5e-4",)),
    ("mixed widths: an 8-bit first layer, 8-bit hidden weights", ("mixed",)),
    ("mixed widths: 8-bit first-layer weights", ("first8-obsunits", "first8")),
    ("8 bits, learned clips (the 8-bit default)", ("w8-fit", "w8-obsunits")),
    ("8 bits, clips that follow the batch's largest pre-activation (the 8-bit default for part of 2026-12-06)",
     ("w8-ema-fit", "w8-ema")),
    ("AKD1000's arithmetic, 4 bits", ("akd1000-fit",)),
    ("8 bits, learned clips, the gap term unbounded", ("w8-unbounded-fit",)),
    ("AKD1000's arithmetic, 4 bits, the gap term unbounded", ("akd1000-unbounded-fit",)),
    ("a dueling head", ("dueling",)),
    ("a dueling head, clips that follow the batch's largest pre-activation", ("dueling-ema-fit", "dueling-ema")),
    ("a dueling head, clips that follow the batch's least-squares clip", ("dueling-ema-mse-fit",)),
    ("the rewards as they are (`reward_scale` 1, the default until 2026-12-06), the gap term unbounded (where "
     "\"auto\" measures 1 it is the `unbounded-fit` row, bit for bit: not run)", ("rscale1-fit",)),
    ("8 bits, tracked clips, the rewards as they are (as above: where \"auto\" acts)", ("w8-ema-rscale1-fit",)),
)
CONTROL_SEEDS = tuple(SEEDS)


def controls_table(records: list[dict], budgets: dict[str, int]) -> list[str]:
    """The issue's controls in one table: per task the final policy's mean / worst return and the curve's mean over
    seeds 0-4 (a cell with fewer seeds says so), DQN's first."""
    def cell(env_id: str, agent: str, tags: tuple[str, ...]) -> str:
        for tag in tags:
            rs = [r for r in records_of(records, env_id, agent, tag, budgets[f"{env_id}:zoo"])
                  if r["seed"] in CONTROL_SEEDS]
            if rs:
                seeds = "" if len(rs) == len(CONTROL_SEEDS) else f", {len(rs)} seed{'s' * (len(rs) > 1)}"
                named = f" (`{tag}`)" if tag else ""
                return f"{mean_worst(rs)}, curve {curve_mean(rs):.1f}{seeds}{named}"
        return "not run"

    lines = ["", f"The issue's controls (the Zoo's settings, seeds {CONTROL_SEEDS[0]}-{CONTROL_SEEDS[-1]}; final policy "
                 "mean / worst, the curve's mean). The defaults' rows (the defaults', `w8-fit`, `akd1000-fit`) ran on "
                 "the current defaults; the other `-fit` tags on the defaults of 2026-12-06, changing only what the row "
                 "names, the gap term unbounded unless the row bounds it; the other tags ran on the defaults of their day (the normalised "
                 "first layer, the space's bounds, some at the Zoo's uncapped learning rate): a cell names its tag, "
                 "whose row above says what it ran. On LunarLander every control but the 8-bit, AKD1000 and gap-bound "
                 "(`gapclip-scaled-fit`) rows ran with the rewards as they are (before `reward_scale=\"auto\"` was the default, which scales them "
                 "there): set it against the `rscale1-fit` row, the defaults' then.", "",
             "| control | " + " | ".join(CONTROL_TASKS) + " |", "|---|" + "---:|" * len(CONTROL_TASKS),
             "| SB3 DQN | " + " | ".join(cell(env, "dqn", ("",)) for env in CONTROL_TASKS) + " |"]
    lines += [f"| {name} | " + " | ".join(cell(env, "rivc", tags) for env in CONTROL_TASKS) + " |"
              for name, tags in CONTROLS]
    lines += ["", "LunarLander's float-loop controls ran in the archived fused-Adam sweep: docs/zoo_notes.md, its last "
                  "section (comparisons between its rows hold); its alpha-0 control ran again on the defaults (`qat-fit`)."]
    return lines


def pixels_against_state(records: list[dict], of) -> list[str]:
    """The camera task's RIVC success beside the same task's from state, on the seeds both ran (the issue's
    target: at least 0.9x)."""
    lines = []
    for camera, state in STATE_TWIN.items():
        tasks = {t.env_id: t for t in TASKS if not t.tag and t.env_id in (camera, state)}
        if len(tasks) < 2:
            continue
        runs = {env: {r["seed"]: r["success_rate"] for r in of(tasks[env], "rivc")} for env in (camera, state)}
        seeds = sorted(set(runs[camera]) & set(runs[state]))
        if not seeds:
            continue
        pixels, states = (float(np.mean([runs[env][s] for s in seeds])) for env in (camera, state))
        ratio = f"{pixels / states:.2f}x" if states > 0 else "-"
        lines += ["", f"From pixels against from state (RIVC, seeds {', '.join(map(str, seeds))}): {camera} "
                      f"{100 * pixels:.0f} % success, {state} {100 * states:.0f} %: {ratio} (target: at least 0.9x)."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", action="append", choices=[task_name(t) for t in TASKS],
                        help="only this task and settings (repeatable)")
    parser.add_argument("--agent", action="append", choices=AGENTS, help="only this agent's runs (repeatable)")
    parser.add_argument("--seed", action="append", type=int,
                        help="only this seed (repeatable); seeds beyond the 5 run too, and the report counts every seed run")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--auto-reward-scale", action="store_true",
                        help="measure, on each stored run at a fixed reward scale of 1 whose row asks 'auto' now, the "
                             "factor 'auto' takes there (where 1, the run is the row's), then report")
    args = parser.parse_args(argv)
    if args.seed and any(seed < 0 for seed in args.seed):
        parser.error(f"--seed takes seeds >= 0, got {min(args.seed)}")
    runs = grid(args.task, args.seed)
    if args.auto_reward_scale:
        measure_auto_reward_scales(grid(args.task, args.seed or stored_seeds()))
    elif not args.report_only:
        sweep([r for r in runs if not args.agent or r.agent in args.agent], args.workers)
    print(f"wrote {report(grid(seeds=stored_seeds()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
