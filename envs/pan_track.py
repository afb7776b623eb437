"""PanTrack: a pan camera (MuJoCo) keeps a moving ball in the centre of its view."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco import MujocoEnv

from rivc.envs.camera import GrayCamera

ASSET = str(Path(__file__).with_name("assets") / "pan_track.xml")
PAN_COMMANDS = np.array([-2.0, -0.7, 0.0, 0.7, 2.0])  # rad/s: fast/slow left turn, hold, slow/fast right turn
TARGET_RADIUS = 1.2  # metres from the camera
MAX_TARGET_SPEED = 1.2  # rad/s of the ball around the camera
ON_TARGET = 0.1  # rad: the ball counts as centred within this angle (the view is 60 degrees wide)


def wrap_angle(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class PanTrackEnv(MujocoEnv):
    """Keep a ball that moves around a pan camera in the centre of the camera's view.

    The ball circles the camera at 1.2 m; its angular speed changes at random (a smoothed random
    walk up to 1.2 rad/s that reverses at times), so the camera must follow it, and find it again
    when it leaves the 60 degree view. One step is 0.05 s of simulation.

    ## Action space: ``Discrete(5)``, the pan speed command (``PAN_COMMANDS``)

    | action | 0 | 1 | 2 | 3 | 4 |
    |---|---|---|---|---|---|
    | pan speed (rad/s) | -2.0 (fast right) | -0.7 | 0 (hold) | +0.7 | +2.0 (fast left) |

    ## Observation space
    ``obs_mode="image"`` (default): ``Box(0, 255, (size, size, frames), uint8)``, the last ``frames``
    (3) grayscale ``size x size`` (32) camera frames stacked as channels, oldest first (offscreen
    MuJoCo rendering; EGL on a headless machine): the bright ball, dark walls and posts.
    ``obs_mode="state"``: ``Box(-high, high, (4,), float32)``:

    | index | observation | bound |
    |---|---|---|
    | 0 | cos(bearing error) | 1 |
    | 1 | sin(bearing error), positive: the ball is to the left | 1 |
    | 2 | pan speed / 2 rad/s | 1.5 |
    | 3 | ball's angular speed / 1.2 rad/s | 1 |

    ## Reward
    ``cos(bearing error)`` (in [-1, 1]) plus 1 while the ball is centred (within 0.1 rad); at most 2
    per step, 400 per episode. ``info``: ``is_success`` (centred now: at the end of an episode, tracked
    at the end), ``bearing_error`` (rad).

    ## Episode end
    No termination; truncated after ``max_episode_steps`` (registered: 200).
    """

    metadata = {"render_modes": ["rgb_array", "depth_array"], "render_fps": 20}  # headless-safe modes

    def __init__(self, obs_mode: str = "image", image_size: int = 32, frames: int = 3,
                 render_mode: str | None = None, width: int = 320, height: int = 320) -> None:
        if obs_mode not in ("state", "image"):
            raise ValueError(f"obs_mode must be 'state' or 'image', got {obs_mode!r}")
        if not 8 <= image_size <= 256 or frames < 1:
            raise ValueError(f"image_size must be in 8..256 and frames >= 1, got {image_size} and {frames}")
        self.obs_mode, self.image_size, self.frames = obs_mode, int(image_size), int(frames)
        if obs_mode == "state":
            high = np.array([1.0, 1.0, 1.5, 1.0], dtype=np.float32)
            observation_space = spaces.Box(-high, high, dtype=np.float32)
        else:
            observation_space = spaces.Box(0, 255, (self.image_size, self.image_size, self.frames), dtype=np.uint8)
        super().__init__(ASSET, frame_skip=5, observation_space=observation_space, render_mode=render_mode,
                         width=width, height=height,
                         default_camera_config={"distance": 5.0, "elevation": -70.0, "azimuth": 90.0,
                                                "lookat": np.zeros(3)})
        self.action_space = spaces.Discrete(len(PAN_COMMANDS))
        self._camera = GrayCamera(self.model, self.image_size, "eye", "PanTrack")
        self._stack = np.zeros((self.image_size, self.image_size, self.frames), dtype=np.uint8)
        self._target_angle = self._target_speed = 0.0

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def pan(self) -> float:
        return float(self.data.qpos[0])

    @property
    def bearing_error(self) -> float:
        """Angle from the camera's axis to the ball, radians in [-pi, pi) (positive: ball to the left)."""
        return wrap_angle(self._target_angle - self.pan)

    def _place_target(self) -> None:
        angle = self._target_angle
        self.data.mocap_pos[0] = [TARGET_RADIUS * np.cos(angle), TARGET_RADIUS * np.sin(angle), 0.4]

    # -- gymnasium API ------------------------------------------------------------------------------
    def _get_obs(self) -> np.ndarray:
        if self.obs_mode == "image":
            return self._stack.copy()
        error = self.bearing_error
        return np.array([np.cos(error), np.sin(error), np.clip(self.data.qvel[0] / 2.0, -1.5, 1.5),
                         self._target_speed / MAX_TARGET_SPEED], dtype=np.float32)

    def _push_frame(self, fill: bool = False) -> None:
        if self.obs_mode != "image":
            return
        frame = self._camera.frame(self.data)
        if fill:
            self._stack[:] = frame[:, :, None]
        else:
            self._stack = np.concatenate([self._stack[:, :, 1:], frame[:, :, None]], axis=2)

    def reset_model(self) -> np.ndarray:
        rng = self.np_random
        pan = rng.uniform(-np.pi, np.pi)
        self.set_state(np.array([pan]), np.zeros(1))
        self._target_angle = pan + rng.uniform(-0.4, 0.4)  # starts in view
        self._target_speed = rng.uniform(-MAX_TARGET_SPEED, MAX_TARGET_SPEED)
        self._place_target()
        mujoco.mj_forward(self.model, self.data)
        self._push_frame(fill=True)
        return self._get_obs()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        rng = self.np_random
        dt = self.dt
        if rng.random() < 0.02:  # now and then the ball reverses
            self._target_speed = -self._target_speed
        self._target_speed = float(np.clip(self._target_speed + rng.normal(0.0, 0.15), -MAX_TARGET_SPEED,
                                           MAX_TARGET_SPEED))
        self._target_angle = wrap_angle(self._target_angle + self._target_speed * dt)
        self._place_target()
        self.do_simulation(np.array([PAN_COMMANDS[int(action)]]), self.frame_skip)
        self._push_frame()
        error = self.bearing_error
        centred = abs(error) < ON_TARGET
        reward = float(np.cos(error)) + (1.0 if centred else 0.0)
        return self._get_obs(), reward, False, False, {"is_success": centred, "bearing_error": error}

    def close(self) -> None:
        self._camera.close()
        super().close()


def scripted_action(obs: np.ndarray) -> int:
    """A hand-written controller (state observations): the pan command nearest to the ball's speed
    plus a correction proportional to the bearing error."""
    error = float(np.arctan2(obs[1], obs[0]))
    desired = float(obs[3]) * MAX_TARGET_SPEED + 5.0 * error
    return int(np.argmin(np.abs(PAN_COMMANDS - desired)))
