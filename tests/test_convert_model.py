"""Float networks users already have (Stable-Baselines3 DQN, torch Sequential) -> SNN policies."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO
from torch import nn

from rivc import QuantConfig
from rivc.agents.cli import main
from rivc.agents.convert_model import (
    agreement_with_float,
    convert_float_model,
    finetune,
    float_visited_states,
    read_float_q_network,
)


@pytest.fixture(scope="module")
def dqn_zip(tmp_path_factory):
    """An SB3 DQN trained here on CartPole (about 15 s)."""
    torch.manual_seed(0)
    model = DQN("MlpPolicy", "CartPole-v1", seed=0, learning_rate=1e-3, learning_starts=1000, batch_size=64,
                train_freq=4, target_update_interval=500, exploration_fraction=0.2, exploration_final_eps=0.02)
    model.learn(15_000)
    path = tmp_path_factory.mktemp("dqn") / "dqn.zip"
    model.save(path)
    return path


def test_reads_the_zip_without_unpickling_and_keeps_the_float_policy(dqn_zip):
    layers = read_float_q_network(dqn_zip)
    model = DQN.load(dqn_zip)
    assert [tuple(w.shape) for w, _ in layers] == [(64, 4), (64, 64), (2, 64)]
    for (weight, bias), linear in zip(layers, [m for m in model.q_net.q_net if isinstance(m, nn.Linear)]):
        assert torch.equal(weight, linear.weight.detach()) and torch.equal(bias, linear.bias.detach())


def test_post_training_conversion_reports_agreement_and_returns(dqn_zip):
    coarse = convert_float_model(dqn_zip, "CartPole-v1", target="akida", episodes=3)
    fine = convert_float_model(dqn_zip, "CartPole-v1", target="rate", quant=QuantConfig(8, 8, 8), episodes=3)
    assert coarse.float_return == fine.float_return > 50  # the DQN learned; the same float episodes
    assert fine.error.action_agreement > 0.9  # 8 bits keep the float policy's actions
    assert coarse.error.action_agreement < fine.error.action_agreement  # 4 bits post-training lose many
    assert coarse.network.target == "akida" and coarse.states > 100
    assert "greedy agreement with the float network" in coarse.describe()
    # the converted policy is the exported integer network, bit for bit
    obs = np.random.default_rng(0).normal(0, 0.3, (200, 4))
    np.testing.assert_array_equal(coarse.policy.q_values(obs), coarse.network.q_values(obs))


def test_finetune_starts_from_the_post_training_conversion(dqn_zip):
    # before any step, the acting SNN is the folded float network at the target's bit widths: at 8 bits
    # (rate target) it keeps the float policy's actions
    start = finetune(dqn_zip, "CartPole-v1", 0, target="rate", quant=QuantConfig(8, 8, 8))
    states = float_visited_states(dqn_zip, "CartPole-v1", episodes=3)
    assert agreement_with_float(dqn_zip, start.spiking_policy, states).action_agreement > 0.9
    model = finetune(dqn_zip, "CartPole-v1", 1500, target="akida")
    assert model.spiking_policy.network.target == "akida" and model.num_conversions > 300
    assert model.reward_scale_asked == 1.0  # the float network's Q-values are in the rewards' own units
    with pytest.raises(ValueError, match="finetune sets policy_kwargs itself"):
        finetune(dqn_zip, "CartPole-v1", 10, policy_kwargs={})


@pytest.mark.slow
def test_finetuning_recovers_what_quantization_lost(dqn_zip):
    """4-bit post-training conversion of a DQN loses its policy (measured: 46 % agreement, SNN 16 vs float
    114); 10k steps of RIVC fine-tuning on the akida target won it back (measured 163)."""
    before = convert_float_model(dqn_zip, "CartPole-v1", target="akida", episodes=10)
    model = finetune(dqn_zip, "CartPole-v1", 10_000, target="akida")
    from rivc.agents.rollout import rollout

    after = rollout(model, gym.make("CartPole-v1"), 10, seed=1000).mean_return
    assert after > 2 * before.snn_return and after >= 0.8 * before.float_return, (before.describe(), after)


def test_what_cannot_be_converted_is_named(tmp_path):
    ppo = tmp_path / "ppo.zip"
    PPO("MlpPolicy", "CartPole-v1", n_steps=64).save(ppo)
    with pytest.raises(ValueError, match="holds ActorCriticPolicy .*not a DQN Q-network"):
        read_float_q_network(ppo)
    with pytest.raises(ValueError, match="layer 1 is Conv1d, expected ReLU"):
        read_float_q_network(nn.Sequential(nn.Linear(4, 8), nn.Conv1d(1, 1, 1), nn.Linear(8, 2)))
    with pytest.raises(ValueError, match="must end in a Linear"):
        read_float_q_network(nn.Sequential(nn.Linear(4, 8), nn.ReLU()))
    with pytest.raises(ValueError, match="Discrete action space"):
        convert_float_model(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1)), "Pendulum-v1")
    with pytest.raises(ValueError, match=r"float network reads observations of shape \(5,\).* gives \(4,\)"):
        convert_float_model(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2)), "CartPole-v1")
    with pytest.raises(FileNotFoundError, match="no model at"):
        read_float_q_network(tmp_path / "missing.zip")
    leaky = tmp_path / "leaky.zip"
    DQN("MlpPolicy", "CartPole-v1", policy_kwargs={"activation_fn": nn.LeakyReLU}).save(leaky)
    with pytest.raises(ValueError, match="activation is not ReLU"):
        read_float_q_network(leaky)


def test_cli_convert_model_finetune_and_export(dqn_zip, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["convert-model", str(dqn_zip), "--env", "CartPole-v1", "--episodes", "2", "--finetune", "1200",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "post-training quantized, target akida: greedy agreement" in printed
    assert "after 1200 steps of RIVC fine-tuning: SNN return" in printed and (out / "model.zip").is_file()
    assert "greedy agreement with the float network" in printed.split("fine-tuning")[1]
    assert main(["export", str(out), "--out", str(tmp_path / "policy"), "--episodes", "1"]) == 0
    assert "identical actions to the training-time policy on 100.00 %" in capsys.readouterr().out
