"""Robot environments (MuJoCo, discrete actions, bounded observations) and wrappers for RIVC.

``import rivc.envs`` registers ``rivc/MobileReach-v0`` and ``rivc/ArmReach-v0`` with Gymnasium::

    env = gymnasium.make("rivc/MobileReach-v0")                    # state observations
    env = gymnasium.make("rivc/MobileReach-v0", obs_mode="image")  # 32x32 onboard camera
"""

import os

# Offscreen rendering on a headless machine: EGL, unless the user chose a backend (must precede mujoco).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from gymnasium.envs.registration import register, registry  # noqa: E402

from rivc.envs.wrappers import DiscretizeAction  # noqa: E402

ENV_IDS = ("rivc/MobileReach-v0", "rivc/ArmReach-v0")

if "rivc/MobileReach-v0" not in registry:
    register(id="rivc/MobileReach-v0", entry_point="rivc.envs.mobile_reach:MobileReachEnv", max_episode_steps=200)
    register(id="rivc/ArmReach-v0", entry_point="rivc.envs.arm_reach:ArmReachEnv", max_episode_steps=100)

__all__ = ["ENV_IDS", "DiscretizeAction"]
