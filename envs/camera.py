"""Grayscale camera frames from a MuJoCo model, as the vision tasks observe them."""

from __future__ import annotations

import mujoco
import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 RGB -> gray


class GrayCamera:
    """``size x size`` uint8 grayscale frames of one named camera; the offscreen renderer is made on first
    use (shadows, reflections and skybox off: far faster on a software renderer)."""

    def __init__(self, model: mujoco.MjModel, size: int, camera: str, task: str) -> None:
        self.model, self.size, self.camera, self.task = model, int(size), camera, task
        self._renderer: mujoco.Renderer | None = None

    def frame(self, data: mujoco.MjData) -> np.ndarray:
        """The camera's view of ``data``, ``[size, size]`` uint8."""
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, self.size, self.size)
            except Exception as exc:  # mujoco raises several types when no GL context can be made
                raise RuntimeError(
                    f"{self.task}'s camera needs offscreen OpenGL: set MUJOCO_GL=egl (Mesa: apt-get install libegl1 "
                    "libgl1-mesa-dri) or MUJOCO_GL=osmesa (apt-get install libosmesa6) before importing mujoco "
                    f"({type(exc).__name__}: {exc})") from exc
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                         mujoco.mjtRndFlag.mjRND_SKYBOX):
                self._renderer.scene.flags[flag] = False
        self._renderer.update_scene(data, camera=self.camera)
        gray = self._renderer.render().astype(np.float32) @ LUMA
        return np.clip(gray + 0.5, 0, 255).astype(np.uint8)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
