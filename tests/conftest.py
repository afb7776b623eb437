import numpy as np
import pytest
import torch
from gymnasium import spaces

from rivc import QuantConfig, QuantizedQNetwork
from rivc.chip import accumulator_clip
from rivc.requant import ScaleShift, ThresholdStep


def random_network(obs_dim=8, n_actions=4, config=None, hidden=(64, 64), seed=0, clip=2.0, target="akida",
                   activation_steps="layer", head="q"):
    """A randomly initialised QAT network over the box [-1, 1]^obs_dim."""
    torch.manual_seed(seed)
    space = spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
    return QuantizedQNetwork(space, n_actions, config or QuantConfig(), hidden_sizes=hidden, activation_clip=clip,
                             target=target, activation_steps=activation_steps, head=head)


def random_obs(n, obs_dim=8, seed=0, scale=1.2):
    return np.random.default_rng(seed).uniform(-scale, scale, (n, obs_dim)).astype(np.float32)


@pytest.fixture
def net():
    return random_network()


def tie_requantization(layer, chip, precision, rng, first: bool, first_step: int = 1, first_shift: int = 2) -> None:
    """A hidden layer's requantization whose accumulators land on rounding ties (half of them) and saturate."""
    units = layer.units
    if chip.requantization == "threshold_step":  # step 16: every accumulator is a tie of ceil
        step = rng.choice([16, 32, 48], units) * (first_step if first else 1)
        if precision.activation_bits < 4:
            step = step * 2 ** (4 - precision.activation_bits)
        layer.requant = ThresholdStep(precision.levels, rng.integers(-2, 3, units), step, precision.activation_bits)
    else:  # scale 1..3 over 2**shift
        multiplier, shift = rng.integers(1, 4, units), int(rng.integers(1, 3)) + first_shift * first
        clip = None
        if precision.activation_bits < (chip.min_output_bits or 0):
            clip = accumulator_clip(multiplier, shift, precision.levels)
        layer.requant = ScaleShift(precision.levels, multiplier, shift, clip)
