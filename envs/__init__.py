"""Robot environments (MuJoCo, discrete actions, bounded observations) and wrappers for RIVC.

``import rivc.envs`` registers ``rivc/MobileReach-v0`` and ``rivc/ArmReach-v0`` with Gymnasium::

    env = gymnasium.make("rivc/MobileReach-v0")                    # state observations
    env = gymnasium.make("rivc/MobileReachCamera-v0")               # 32x32 onboard camera (uint8 frames)
    env = gymnasium.make("rivc/PanTrack-v0")                        # pan camera tracking a ball (frames)
    env = gymnasium.make("rivc/PanTrackState-v0")                   # the same task from its state
"""

import os

# Offscreen rendering on a headless machine: EGL, unless the user chose a backend (must precede mujoco).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from gymnasium.envs.registration import register, registry  # noqa: E402

from rivc.envs.wrappers import ActionBins, DiscretizeAction, make_env  # noqa: E402

ENV_IDS = ("rivc/MobileReach-v0", "rivc/ArmReach-v0", "rivc/PanTrackState-v0")  # state observations
IMAGE_ENV_IDS = ("rivc/MobileReachCamera-v0", "rivc/PanTrack-v0")  # camera frames (CnnPolicy)

if "rivc/MobileReach-v0" not in registry:
    register(id="rivc/MobileReach-v0", entry_point="rivc.envs.mobile_reach:MobileReachEnv", max_episode_steps=200)
    register(id="rivc/MobileReachCamera-v0", entry_point="rivc.envs.mobile_reach:MobileReachEnv",
             max_episode_steps=200, kwargs={"obs_mode": "image"})
    register(id="rivc/ArmReach-v0", entry_point="rivc.envs.arm_reach:ArmReachEnv", max_episode_steps=100)
    register(id="rivc/PanTrack-v0", entry_point="rivc.envs.pan_track:PanTrackEnv", max_episode_steps=200)
    register(id="rivc/PanTrackState-v0", entry_point="rivc.envs.pan_track:PanTrackEnv", max_episode_steps=200,
             kwargs={"obs_mode": "state"})

__all__ = ["ENV_IDS", "IMAGE_ENV_IDS", "ActionBins", "DiscretizeAction", "make_env"]
