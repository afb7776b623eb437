"""MobileReach: a differential-drive robot (MuJoCo, wheels on a floor) drives to a random target."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
from gymnasium import spaces, utils
from gymnasium.envs.mujoco import MujocoEnv

from rivc.envs.camera import GrayCamera

ASSET = str(Path(__file__).with_name("assets") / "mobile_reach.xml")

#: discrete action -> (left, right) wheel speed command in rad/s
WHEEL_COMMANDS = np.array([
    [0.0, 0.0],     # 0 stop
    [12.0, 12.0],   # 1 forward
    [-6.0, 6.0],    # 2 turn left (in place)
    [6.0, -6.0],    # 3 turn right (in place)
    [6.0, 12.0],    # 4 forward-left
    [12.0, 6.0],    # 5 forward-right
])
ACTION_NAMES = ("stop", "forward", "turn_left", "turn_right", "forward_left", "forward_right")
MAX_WHEEL_SPEED = 20.0  # rad/s, observation bound
ARENA = 1.0  # walls' inner faces at +-ARENA metres


class MobileReachEnv(MujocoEnv, utils.EzPickle):
    """Drive a two-wheeled robot to a target placed at random in a walled 2 m x 2 m arena.

    ## Action space: ``Discrete(6)``, wheel speed commands (``WHEEL_COMMANDS``, rad/s)

    | action | 0 | 1 | 2 | 3 | 4 | 5 |
    |---|---|---|---|---|---|---|
    | move | stop | forward | turn left | turn right | forward-left | forward-right |

    One step is 0.05 s of simulation.

    ## Observation space
    ``obs_mode="state"`` (default): ``Box(-high, high, (6,), float32)``:

    | index | observation | bound |
    |---|---|---|
    | 0-1 | target position in the robot's frame (m), clipped | 3 |
    | 2-3 | heading (cos, sin) | 1 |
    | 4-5 | wheel speeds / 20 rad/s, clipped | 1.25 |

    ``obs_mode="image"``: ``Box(0, 255, (size, size, 1), uint8)``, the onboard camera in grayscale (offscreen
    MuJoCo rendering; EGL on a headless machine).

    ## Reward
    ``reward_progress + reward_step + reward_success``, each in ``info``: ``progress_weight`` (10) x the
    distance gained towards the target this step, ``-step_cost`` (0.01), and ``success_bonus`` (10) on success.

    ## Episode end
    Terminated on reaching the target (the robot's centre within ``success_radius``, ``info["is_success"]``);
    truncated after ``max_episode_steps`` (registered: 200). ``info["distance"]``: robot to target (m).

    ## Arguments
    ``obs_mode``, ``image_size`` (32), ``success_radius`` (0.1 m), ``progress_weight``, ``step_cost``,
    ``success_bonus``; ``render_mode``, ``width``, ``height`` as Gymnasium's MuJoCo envs.

    ## Version history
    v0: the reward weights as arguments and the reward terms in ``info`` (same rewards as before).
    """

    metadata = {"render_modes": ["rgb_array", "depth_array"], "render_fps": 20}  # headless-safe modes

    def __init__(
        self,
        obs_mode: str = "state",
        image_size: int = 32,
        success_radius: float = 0.1,
        progress_weight: float = 10.0,
        step_cost: float = 0.01,
        success_bonus: float = 10.0,
        render_mode: str | None = None,
        width: int = 320,
        height: int = 320,
    ) -> None:
        utils.EzPickle.__init__(self, obs_mode, image_size, success_radius, progress_weight, step_cost, success_bonus,
                                render_mode, width, height)
        self.progress_weight, self.step_cost, self.success_bonus = float(progress_weight), float(step_cost), float(
            success_bonus)
        if obs_mode not in ("state", "image"):
            raise ValueError(f"obs_mode must be 'state' or 'image', got {obs_mode!r}")
        if not 8 <= image_size <= 256:
            raise ValueError(f"image_size must be in 8..256, got {image_size}")
        self.obs_mode, self.image_size, self.success_radius = obs_mode, int(image_size), float(success_radius)
        if obs_mode == "state":
            high = np.array([3.0, 3.0, 1.0, 1.0, 1.25, 1.25], dtype=np.float32)
            observation_space = spaces.Box(-high, high, dtype=np.float32)
        else:
            observation_space = spaces.Box(0, 255, (self.image_size, self.image_size, 1), dtype=np.uint8)
        super().__init__(
            ASSET, frame_skip=10, observation_space=observation_space, render_mode=render_mode,
            width=width, height=height,
            default_camera_config={"distance": 3.2, "elevation": -65.0, "azimuth": 90.0, "lookat": np.zeros(3)},
        )
        self.action_space = spaces.Discrete(len(WHEEL_COMMANDS))
        self._camera = GrayCamera(self.model, self.image_size, "onboard", "MobileReach")
        self._distance = 0.0

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def robot_pose(self) -> tuple[np.ndarray, float]:
        """(x, y) position and heading (yaw, radians) of the robot."""
        qpos = self.data.qpos
        w, z = qpos[3], qpos[6]
        x_axis_x = 1 - 2 * (qpos[5] ** 2 + z**2)
        x_axis_y = 2 * (qpos[4] * qpos[5] + w * z)
        return qpos[:2].copy(), float(np.arctan2(x_axis_y, x_axis_x))

    @property
    def target_position(self) -> np.ndarray:
        return self.data.mocap_pos[0, :2].copy()

    def target_in_robot_frame(self) -> np.ndarray:
        (position, yaw), target = self.robot_pose, self.target_position
        dx, dy = target - position
        c, s = np.cos(yaw), np.sin(yaw)
        return np.array([c * dx + s * dy, -s * dx + c * dy])

    # -- gymnasium API ------------------------------------------------------------------------------
    def _get_obs(self) -> np.ndarray:
        if self.obs_mode == "image":
            return self.camera_image()
        _, yaw = self.robot_pose
        wheels = np.clip(self.data.qvel[6:8] / MAX_WHEEL_SPEED, -1.25, 1.25)
        rel = np.clip(self.target_in_robot_frame(), -3.0, 3.0)
        return np.array([rel[0], rel[1], np.cos(yaw), np.sin(yaw), wheels[0], wheels[1]], dtype=np.float32)

    def camera_image(self) -> np.ndarray:
        """Grayscale onboard camera frame ``[size, size, 1]`` (uint8)."""
        return self._camera.frame(self.data)[:, :, None]

    def reset_model(self) -> np.ndarray:
        rng = self.np_random
        qpos = self.init_qpos.copy()
        position = rng.uniform(-0.7, 0.7, size=2)
        yaw = rng.uniform(-np.pi, np.pi)
        qpos[:2] = position
        qpos[3:7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        while True:
            target = rng.uniform(-0.8, 0.8, size=2)
            if np.linalg.norm(target - position) >= 0.4:
                break
        self.set_state(qpos, np.zeros_like(self.init_qvel))
        self.data.mocap_pos[0, :2] = target
        mujoco.mj_forward(self.model, self.data)
        self._distance = float(np.linalg.norm(target - position))
        return self._get_obs()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        self.do_simulation(WHEEL_COMMANDS[int(action)], self.frame_skip)
        distance = float(np.linalg.norm(self.target_position - self.robot_pose[0]))
        success = distance < self.success_radius
        terms = {"reward_progress": self.progress_weight * (self._distance - distance), "reward_step": -self.step_cost,
                 "reward_success": self.success_bonus if success else 0.0}
        reward = terms["reward_progress"] - self.step_cost + terms["reward_success"]
        self._distance = distance
        info = {"is_success": success, "distance": distance, **terms}
        return self._get_obs(), reward, success, False, info

    def close(self) -> None:
        self._camera.close()
        super().close()


def scripted_action(obs: np.ndarray) -> int:
    """A hand-written controller (state observations): face the target, then drive to it."""
    angle = float(np.arctan2(obs[1], obs[0]))
    if abs(angle) > 0.5:
        return 2 if angle > 0 else 3
    if abs(angle) > 0.15:
        return 4 if angle > 0 else 5
    return 1
