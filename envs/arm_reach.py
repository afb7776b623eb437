"""ArmReach: a planar two-joint arm (MuJoCo) moves its fingertip onto a random target."""

from __future__ import annotations

import itertools
from pathlib import Path

import mujoco
import numpy as np
from gymnasium import spaces, utils
from gymnasium.envs.mujoco import MujocoEnv

ASSET = str(Path(__file__).with_name("assets") / "arm_reach.xml")
LINKS = (0.12, 0.10)  # metres
JOINT_SPEED = 1.5  # rad/s commanded per joint
#: discrete action -> per-joint direction in {-1, 0, +1} (shoulder, elbow); action 4 is (0, 0)
JOINT_COMMANDS = np.array(list(itertools.product((-1, 0, 1), repeat=2)), dtype=np.float64)


class ArmReachEnv(MujocoEnv, utils.EzPickle):
    """Move a planar 2-joint arm's fingertip (links 0.12 m and 0.10 m) within ``success_radius`` of a random target.

    ## Action space: ``Discrete(9)``
    Each joint turns at -1.5, 0 or +1.5 rad/s (velocity actuators); ``JOINT_COMMANDS[a]`` gives the
    directions (shoulder, elbow), action 4 holds still. One step is 0.05 s of simulation.

    ## Observation space: ``Box(-high, high, (10,), float32)``

    | index | observation | bound |
    |---|---|---|
    | 0-1 | cos of the shoulder and elbow angles | 1 |
    | 2-3 | sin of the shoulder and elbow angles | 1 |
    | 4-5 | joint speeds / 3 rad/s, clipped | 1.5 |
    | 6-7 | fingertip-to-target vector (m), clipped | 0.5 |
    | 8-9 | target position (m) | 0.25 |

    ## Reward
    ``reward_progress + reward_step + reward_success``, each in ``info``: ``progress_weight`` (50) x the
    distance gained towards the target this step, ``-step_cost`` (0.01), and ``success_bonus`` (5) on success.

    ## Episode end
    Terminated on success (the fingertip within ``success_radius`` of the target, ``info["is_success"]``);
    truncated after ``max_episode_steps`` (registered: 100). ``info["distance"]``: fingertip to target (m).

    ## Arguments
    ``success_radius`` (0.02 m), ``progress_weight``, ``step_cost``, ``success_bonus``; ``render_mode``,
    ``width``, ``height`` as Gymnasium's MuJoCo envs.

    ## Version history
    v0: the reward weights as arguments and the reward terms in ``info`` (same rewards as before).
    """

    metadata = {"render_modes": ["rgb_array", "depth_array"], "render_fps": 20}  # headless-safe modes

    def __init__(self, success_radius: float = 0.02, progress_weight: float = 50.0, step_cost: float = 0.01,
                 success_bonus: float = 5.0, render_mode: str | None = None, width: int = 320,
                 height: int = 320) -> None:
        utils.EzPickle.__init__(self, success_radius, progress_weight, step_cost, success_bonus, render_mode, width,
                                height)
        self.success_radius = float(success_radius)
        self.progress_weight, self.step_cost, self.success_bonus = float(progress_weight), float(step_cost), float(
            success_bonus)
        high = np.array([1, 1, 1, 1, 1.5, 1.5, 0.5, 0.5, 0.25, 0.25], dtype=np.float32)
        super().__init__(
            ASSET, frame_skip=5, observation_space=spaces.Box(-high, high, dtype=np.float32),
            render_mode=render_mode, width=width, height=height,
            default_camera_config={"distance": 0.6, "elevation": -90.0, "azimuth": 90.0, "lookat": np.zeros(3)},
        )
        self.action_space = spaces.Discrete(len(JOINT_COMMANDS))
        self._distance = 0.0

    @property
    def fingertip(self) -> np.ndarray:
        return self.data.site("fingertip").xpos[:2].copy()

    @property
    def target_position(self) -> np.ndarray:
        return self.data.mocap_pos[0, :2].copy()

    def _get_obs(self) -> np.ndarray:
        q, qd = self.data.qpos[:2], self.data.qvel[:2]
        return np.concatenate([
            np.cos(q), np.sin(q), np.clip(qd / 3.0, -1.5, 1.5),
            np.clip(self.target_position - self.fingertip, -0.5, 0.5), self.target_position,
        ]).astype(np.float32)

    def reset_model(self) -> np.ndarray:
        rng = self.np_random
        qpos = np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-2.5, 2.5)])
        self.set_state(qpos, np.zeros(2))
        while True:  # a reachable target, not already under the fingertip
            radius, angle = rng.uniform(0.05, 0.2), rng.uniform(-np.pi, np.pi)
            target = radius * np.array([np.cos(angle), np.sin(angle)])
            if np.linalg.norm(target - self.fingertip) > 0.05:
                break
        self.data.mocap_pos[0, :2] = target
        mujoco.mj_forward(self.model, self.data)
        self._distance = float(np.linalg.norm(target - self.fingertip))
        return self._get_obs()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        self.do_simulation(JOINT_COMMANDS[int(action)] * JOINT_SPEED, self.frame_skip)
        distance = float(np.linalg.norm(self.target_position - self.fingertip))
        success = distance < self.success_radius
        terms = {"reward_progress": self.progress_weight * (self._distance - distance), "reward_step": -self.step_cost,
                 "reward_success": self.success_bonus if success else 0.0}
        reward = terms["reward_progress"] - self.step_cost + terms["reward_success"]
        self._distance = distance
        return self._get_obs(), reward, success, False, {"is_success": success, "distance": distance, **terms}


def scripted_action(obs: np.ndarray) -> int:
    """A hand-written controller: inverse kinematics, then step each joint towards its solution."""
    q = np.arctan2(obs[2:4], obs[0:2])
    target = obs[8:10]
    l1, l2 = LINKS
    r2 = float(target @ target)
    cos_elbow = np.clip((r2 - l1**2 - l2**2) / (2 * l1 * l2), -1.0, 1.0)
    best = None
    for elbow in (np.arccos(cos_elbow), -np.arccos(cos_elbow)):
        shoulder = np.arctan2(target[1], target[0]) - np.arctan2(l2 * np.sin(elbow), l1 + l2 * np.cos(elbow))
        error = np.array([shoulder - q[0], elbow - q[1]])
        error[0] = (error[0] + np.pi) % (2 * np.pi) - np.pi  # the shoulder turns freely
        if best is None or np.abs(error).sum() < np.abs(best).sum():
            best = error
    direction = np.where(np.abs(best) > 0.04, np.sign(best), 0.0)
    return int(np.flatnonzero((JOINT_COMMANDS == direction).all(axis=1))[0])
