"""`rivc precision`: per-layer sensitivity of a trained policy (HAWQ-V2's Hessian trace, the measured agreement
with one layer at other widths) and the cheapest legal per-layer widths that keep its greedy actions."""

import json

import numpy as np
import pytest
import torch

from rivc import QuantConfig
from rivc.agents import RIVC
from rivc.agents.cli import main
from rivc.agents.precision import collect_transitions, hessian_traces, legal_configs, memory_bits, search_precision
from rivc.chip import TargetError
from rivc.neurochip.cost import parameter_bits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("precision_run")
    assert main(["train", "--bits", "8", "--timesteps", "1500", "--out", str(folder), "--eval-episodes", "1",
                 "--hyperparams", "defaults"]) == 0
    return folder


def test_requantized_networks_keep_weights_clips_and_ranges_and_cost_what_the_report_counts(trained):
    model = RIVC.load(trained / "model.zip")
    net = model.q_network
    mixed = net.with_config(QuantConfig.parse_layers("8/8,8/4,4/32"))
    assert all(torch.equal(a, b) for a, b in zip(mixed.state_dict().values(), net.state_dict().values()))
    assert [p.levels for p in mixed.precision] == [127, 15, None]
    for config in (net.config, mixed.config, QuantConfig(4, 2, 8)):
        assert memory_bits(net, config) == parameter_bits(net.with_config(config).export())
    with pytest.raises(TargetError, match="layer 1 has 8-bit weights on 4-bit inputs"):
        net.with_config(QuantConfig(8, 4, 8))
    configs = legal_configs(net, widths=(4, 8))
    assert QuantConfig.parse_layers("8/4,4/4,4/32") in configs and QuantConfig.parse_layers("8/4,8/4,4") not in configs
    assert len(configs) == 6  # of the 32 combinations of 4/8-bit widths; akida's mapper agrees (test_chip_targets)


def test_the_search_finds_the_cheapest_legal_widths_that_keep_the_actions(trained):
    model = RIVC.load(trained / "model.zip")
    env = __import__("gymnasium").make("CartPole-v1")
    data = collect_transitions(model, env, 2, seed=7)
    traces = hessian_traces(model, data, samples=8)
    assert len(traces) == 3 and all(np.isfinite(traces)) and traces[2] != 0
    result, chosen = search_precision(model, data, agreement=0.6, widths=(4, 8), hessian_samples=8)
    assert chosen is not None and result.agreement_chosen >= 0.6
    assert result.memory_bits_chosen <= result.memory_bits_trained and result.evaluated >= 1
    # nothing cheaper than the choice keeps the agreement: the candidates before it were measured and refused
    cheaper = [c for c in legal_configs(model.q_network, (4, 8)) if memory_bits(model.q_network, c) < result.memory_bits_chosen]
    assert result.evaluated >= len(cheaper) + 1
    strict, none = search_precision(model, data, agreement=1.0, memory_budget_bits=1, widths=(4, 8), hessian_samples=2)
    assert none is None and strict.chosen is None and strict.evaluated == 0  # no assignment fits 1 bit
    assert [row.trained for row in result.layers] == ["8/8", "8/8", "8/32"]
    with pytest.raises(ValueError, match="agreement to keep must be in"):
        search_precision(model, data, agreement=0.0)


def test_cli_prints_the_table_writes_it_and_fine_tunes_the_choice(trained, capsys):
    assert main(["precision", str(trained), "--widths", "4,8", "--episodes", "1", "--agreement", "0.5",
                 "--finetune", "300", "--eval-episodes", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Hessian trace" in printed and "legal assignments" in printed and "chosen" in printed
    record = json.loads((trained / "precision.json").read_text())
    assert record["chosen"] and set(record["returns"]) == {"trained", "chosen, requantized", "chosen, fine-tuned 300 steps"}
    assert (trained / "precision.md").read_text().startswith("| layer |")
    tuned = RIVC.load(trained / "precision" / "model.zip")
    assert tuned.quant.describe() == record["chosen"]
    assert main(["precision", str(trained), "--agreement", "1.5"]) == 2
    assert main(["precision", str(trained), "--widths", "four"]) == 2
    assert "--widths takes bit widths" in capsys.readouterr().err


def test_fine_tuning_at_other_widths_keeps_the_reward_scale_the_model_trained_with(tmp_path):
    """The Q-values are in the trained model's units: "auto" measured once, kept when fine-tuned at 8 bits."""
    import gymnasium as gym

    from rivc.agents.precision import finetune_at

    big = gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: 4.0 * r)
    model = RIVC("MlpPolicy", big, seed=0, learning_starts=200, batch_size=32).learn(1100)
    assert model.reward_scale == 0.25
    tuned = finetune_at(model.save(tmp_path / "model.zip"), big, QuantConfig(8, 8, 8), timesteps=50)
    assert (tuned.reward_scale_asked, tuned.reward_scale) == ("auto", 0.25)
