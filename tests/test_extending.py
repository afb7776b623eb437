"""A newcomer's path: add a target, a backend, an env and a variant the way docs/DESIGN.md ("How to add") says,
and each works end to end: it trains, converts and acts, and the target's arithmetic stays exact."""

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rivc.agents import RIVC
from rivc.agents.variants import VARIANTS, Variant
from rivc.chip import TARGETS, TargetError
from rivc.neurochip import Backend, SpikingPolicy, load_policy, make_backend, register_backend, save_policy

FAST = dict(learning_starts=200, batch_size=32, train_freq=4, target_update_interval=100, buffer_size=2000, seed=0)


def test_a_target_added_as_one_chip_target_entry_is_exact_and_checks_its_widths(monkeypatch):
    # "one ChipTarget entry in TARGETS": a 4-bit-only chip with Akida 2.0's requantization and no mapper
    toy = replace(TARGETS["akida"], name="toy", chip="a 4-bit toy chip", weight_bits=(4,), activation_bits=(4,),
                  containers=(), signed_containers=(), device=None, ip_version=None)
    monkeypatch.setitem(TARGETS, "toy", toy)
    model = RIVC("MlpPolicy", "CartPole-v1", target="toy", **FAST).learn(600)
    obs = model._replay_observations(limit=256)
    network = model.spiking_policy.network
    with torch.no_grad():
        qat = model.q_net(torch.as_tensor(obs)).numpy()
    emulated = make_backend("snntorch").convert(network).q_values(obs)
    np.testing.assert_array_equal(qat, network.q_values(obs).astype(np.float32))  # QAT == integer reference
    np.testing.assert_array_equal(emulated, network.q_values(obs))  # == emulation
    with pytest.raises(TargetError, match="toy"):
        RIVC("MlpPolicy", "CartPole-v1", target="toy", quant={"weight_bits": 8, "activation_bits": 8})


class CountingPolicy(SpikingPolicy):
    """The integer network's Q-values, counting the observations it acted on: a stand-in for a chip's runtime."""

    seen = 0  # observations acted on, by all conversions

    def __init__(self, network):
        self.network = network

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs).reshape(-1, *self.network.obs_shape)
        CountingPolicy.seen += len(obs)
        return self.network.q_values(obs)


class CountingBackend(Backend):
    name = "counting"

    def convert(self, network) -> SpikingPolicy:
        return CountingPolicy(network)


@pytest.fixture
def counting_backend():
    # "a Backend subclass whose convert(network) returns a SpikingPolicy, registered with register_backend"
    from rivc.neurochip import base

    register_backend("counting", CountingBackend)
    yield
    base._REGISTRY.pop("counting")  # (for the other tests: the registry is the process's)


def test_a_backend_registered_by_name_trains_saves_and_loads(tmp_path, counting_backend):
    model = RIVC("MlpPolicy", "CartPole-v1", backend="counting", **FAST).learn(600)
    assert isinstance(model.spiking_policy, CountingPolicy) and CountingPolicy.seen > 0  # it acted
    save_policy(tmp_path / "policy", model.spiking_policy.network, backend="counting")
    policy = load_policy(tmp_path / "policy")
    obs = model._replay_observations(limit=64)
    assert isinstance(policy, CountingPolicy)
    np.testing.assert_array_equal(policy.predict(obs), model.spiking_policy.predict(obs))


class Walk(gym.Env):
    """A point on a line walks to the origin: actions left, stay, right; reward -|x|; ends at the origin."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1, 1))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.1 * (int(action) - 1), -1, 1))
        reward = -abs(self.x)
        return np.array([self.x], np.float32), reward, abs(self.x) < 0.05, False, {"distance": abs(self.x)}


def test_an_env_registered_with_gymnasium_trains_through_the_cli(tmp_path):
    # "a Gymnasium env with a Discrete action space and a bounded Box observation, registered"
    from gymnasium.utils.env_checker import check_env

    from rivc.agents.cli import main

    gym.register(id="toy/Walk-v0", entry_point=Walk, max_episode_steps=50)
    try:
        check_env(gym.make("toy/Walk-v0").unwrapped)
        assert main(["train", "--env", "toy/Walk-v0", "--timesteps", "600", "--eval-episodes", "2",
                     "--hyperparams", "defaults", "--out", str(tmp_path / "run")]) == 0
        assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "policy"), "--episodes", "1"]) == 0
        assert main(["deploy", str(tmp_path / "policy"), "--episodes", "2"]) == 0
    finally:
        gym.registry.pop("toy/Walk-v0", None)


def test_a_variant_added_as_a_row_sets_what_the_agent_does(monkeypatch):
    # "a row of VARIANTS": QAT and the gap-increasing target, with the float network collecting the data
    monkeypatch.setitem(VARIANTS, "qat-float-acts", Variant(qat=True, gap_increasing=True, snn_acts=False))
    model = RIVC("MlpPolicy", "CartPole-v1", variant="qat-float-acts", **FAST).learn(600)
    assert model.q_network.qat and model.num_conversions == 0  # trained with QAT, never converted to act
    obs = model._replay_observations(limit=32)
    with torch.no_grad():
        float_q = model.q_net(torch.as_tensor(obs)).numpy()
    np.testing.assert_array_equal(model.q_values(obs), float_q)  # the float (QAT) network acts
