"""sb3-contrib's checks for a contributed algorithm (its tests/test_run.py and tests/test_save_load.py), for RIVC:
MlpPolicy and CnnPolicy; DummyVecEnv and SubprocVecEnv with n_envs=2; save/load with and without the replay
buffer; parameter round trips; set_env; evaluate_policy; EvalCallback's best model; deterministic predict."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from rivc.agents import RIVC

FAST = dict(learning_starts=100, batch_size=16, train_freq=4, target_update_interval=50, buffer_size=1000, seed=0)


def image_env():
    return FakeImageEnv(screen_height=32, screen_width=32, n_channels=1, discrete=True)


POLICIES = {"MlpPolicy": lambda: gym.make("CartPole-v1"), "CnnPolicy": image_env}


def observations(model, n: int = 16) -> np.ndarray:
    return np.stack([model.observation_space.sample() for _ in range(n)])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
def test_run_with_two_envs(policy, vec_env_cls):
    env = make_vec_env(POLICIES[policy], n_envs=2, vec_env_cls=vec_env_cls, seed=0)
    try:
        model = RIVC(policy, env, **FAST).learn(300)
        assert model.num_timesteps >= 300 and model.spiking_policy is not None
        obs = env.reset()
        actions, _ = model.predict(obs, deterministic=True)
        assert actions.shape == (2,) and env.action_space.contains(int(actions[0]))
        mean, _ = evaluate_policy(model, env, n_eval_episodes=2)
        assert np.isfinite(mean)
    finally:
        env.close()


@pytest.mark.parametrize("policy", POLICIES)
def test_save_load_with_and_without_the_replay_buffer(policy, tmp_path):
    model = RIVC(policy, POLICIES[policy](), **FAST).learn(300)
    obs = observations(model)
    actions, _ = model.predict(obs, deterministic=True)
    path = model.save(tmp_path / "model.zip")
    loaded = RIVC.load(path, env=POLICIES[policy]())
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    for name, value in model.get_parameters()["policy"].items():
        torch.testing.assert_close(loaded.get_parameters()["policy"][name], value, rtol=0, atol=0)
    assert loaded.replay_buffer is None or loaded.replay_buffer.size() == 0  # not saved with the model
    model.save_replay_buffer(tmp_path / "buffer")
    loaded.load_replay_buffer(tmp_path / "buffer")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    loaded.learn(100, reset_num_timesteps=False)  # and training goes on
    assert loaded.num_timesteps == model.num_timesteps + 100


def test_parameters_round_trip_and_set_env():
    model = RIVC("MlpPolicy", "CartPole-v1", **FAST).learn(300)
    obs = observations(model)
    for other in (RIVC("MlpPolicy", "CartPole-v1", **{**FAST, "seed": 1}).learn(300),  # trained: another SNN acts
                  RIVC("MlpPolicy", "CartPole-v1", **{**FAST, "seed": 1})):  # fresh: nothing acts yet
        other.set_parameters(model.get_parameters())  # and the policy that acts is the new weights' conversion
        np.testing.assert_array_equal(other.q_values(obs), model.q_values(obs))
        np.testing.assert_array_equal(other.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    with pytest.raises(RuntimeError, match="no_such_weight"):  # torch's check of the parameter names, as for DQN
        other.set_parameters({"policy": {"no_such_weight": torch.zeros(1)}}, exact_match=True)
    fresh = gym.make("CartPole-v1")
    model.set_env(fresh)
    model.learn(200, reset_num_timesteps=False)
    assert model.get_env().envs[0].unwrapped is fresh.unwrapped and model.num_timesteps == 500
    with pytest.raises(ValueError):  # another observation space
        model.set_env(gym.make("Acrobot-v1"))


def test_load_onto_two_envs(tmp_path):
    path = RIVC("MlpPolicy", "CartPole-v1", **FAST).learn(300).save(tmp_path / "model.zip")
    model = RIVC.load(path, env=make_vec_env("CartPole-v1", n_envs=2, seed=1))  # as SB3 says for another n_envs
    model.learn(200, reset_num_timesteps=False)
    assert model.n_envs == 2 and model.num_timesteps >= 500


def test_eval_callback_keeps_a_best_model_that_loads(tmp_path):
    callback = EvalCallback(gym.make("CartPole-v1"), eval_freq=150, n_eval_episodes=2,
                            best_model_save_path=str(tmp_path), verbose=0)
    model = RIVC("MlpPolicy", "CartPole-v1", **FAST).learn(450, callback=callback)
    best = RIVC.load(tmp_path / "best_model.zip", env=gym.make("CartPole-v1"))
    assert best.spiking_policy is not None and best.num_timesteps <= model.num_timesteps


def test_deterministic_predict_is_deterministic_and_stochastic_predict_explores():
    model = RIVC("MlpPolicy", "CartPole-v1", **FAST).learn(300)
    obs = observations(model, 1)[0]
    assert len({int(model.predict(obs, deterministic=True)[0]) for _ in range(20)}) == 1
    model.exploration_rate = 1.0
    assert len({int(model.predict(obs, deterministic=False)[0]) for _ in range(40)}) == 2
