import numpy as np
import pytest
import torch
from gymnasium import spaces

from rivc import QuantConfig, QuantizedQNetwork


def random_network(obs_dim=8, n_actions=4, config=None, hidden=(64, 64), seed=0, clip=2.0, target="akida"):
    """A randomly initialised QAT network over the box [-1, 1]^obs_dim."""
    torch.manual_seed(seed)
    space = spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
    return QuantizedQNetwork(space, n_actions, config or QuantConfig(), hidden_sizes=hidden, activation_clip=clip,
                             target=target)


def random_obs(n, obs_dim=8, seed=0, scale=1.2):
    return np.random.default_rng(seed).uniform(-scale, scale, (n, obs_dim)).astype(np.float32)


@pytest.fixture
def net():
    return random_network()
