"""The agent's replay buffer: SB3's, whose samples reach the update without a second copy."""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer


class FreshSampleReplayBuffer(ReplayBuffer):
    """SB3's ``ReplayBuffer``, bit for bit, whose samples wrap their arrays as CPU tensors (``torch.from_numpy``) in
    place of copying them (``torch.tensor``): a sample's arrays are already fresh copies (``_get_samples`` indexes the
    buffer with arrays of indices, which copies), so a second copy changes nothing but the time a small gradient
    step's sampling takes. Elsewhere (another device, an array that is not contiguous) SB3's copy stands."""

    _sampling = False  # inside _get_samples, whose arrays are fresh copies

    def _get_samples(self, batch_inds: np.ndarray, env=None):
        self._sampling = True
        try:
            return super()._get_samples(batch_inds, env)
        finally:
            self._sampling = False

    def to_torch(self, array: np.ndarray, copy: bool = True) -> torch.Tensor:
        if (self._sampling and self.device.type == "cpu" and isinstance(array, np.ndarray)
                and array.flags.c_contiguous and array.flags.writeable):
            return torch.from_numpy(array)
        return super().to_torch(array, copy)
