"""End-to-end training runs (minutes): `pytest -m slow`."""

import gymnasium as gym
import numpy as np
import pytest

from agents import RIVC
from agents.cli import evaluate_spiking_policy


@pytest.mark.slow
def test_rivc_4bit_learns_cartpole_with_snn_rollouts():
    """RIVC (4-bit weights and activations, snntorch SNN collecting the data) on CartPole-v1,
    40k steps (about 45 s per seed on 2 cores): the SNN policy's mean return over 3 seeds >= 150."""
    returns = []
    for seed in range(3):
        model = RIVC("MlpPolicy", "CartPole-v1", seed=seed)
        model.learn(40_000)
        returns.append(evaluate_spiking_policy(model, gym.make("CartPole-v1"), episodes=10)[0])
    assert np.mean(returns) >= 150, returns
