"""Train what you deploy: for every chip target and bit width it supports, the QAT forward, the integer
reference, the emulator's fast path, the snntorch reference and (Akida targets) the akida engine give
the same Q-values, bit for bit; the default policies are hardware-resident; what a chip cannot run is
refused when the network is built."""

import importlib.util
import sys

import numpy as np
import pytest
import torch

from conftest import random_network, random_obs
from rivc import QuantConfig
from rivc.chip import TARGETS, TargetError, accumulator_clip, scale_shift_codes, threshold_step_codes
from rivc.integer_net import InputQuantizer, IntegerLayer, IntegerNetwork
from rivc.neurochip import make_backend

CASES = [(target, bits) for target, chip in TARGETS.items()
         for bits in [(4, 4, 8), (2, 2, 8), (4, 1, 8), (1, 2, 8), (2, 4, 8), (8, 4, 8), (4, 8, 8), (4, 3, 6)]
         if bits[0] in chip.weight_bits and bits[1] in chip.activation_bits and bits[2] in chip.input_bits]


def engines(network):
    """Q-values of every consumer of the target: integer reference, fast path, snntorch, akida engine.

    The rate-coded target's emulation approximates the integer network by nature (spike timing):
    there the fast path and the snntorch reference must agree with each other, spike for spike."""
    obs = random_obs(400, obs_dim=network.obs_dim, seed=7)
    q = {"integer reference": network.q_values(obs)}
    fast, reference = make_backend("snntorch"), make_backend("snntorch", exact_reference=True)
    spiking = {"emulator fast path": fast.convert(network).run(obs), "snntorch reference": reference.convert(network).run(obs)}
    np.testing.assert_array_equal(spiking["emulator fast path"][0], spiking["snntorch reference"][0])
    for counts_fast, counts_reference in zip(spiking["emulator fast path"][1], spiking["snntorch reference"][1]):
        np.testing.assert_array_equal(counts_fast, counts_reference)  # spike for spike
    if not network.chip.rate_coded:
        q.update({name: values for name, (values, _) in spiking.items()})
        if importlib.util.find_spec("akida") is not None:
            q["akida engine"] = make_backend("akida").convert(network).q_values(obs)
    return obs, q


@pytest.mark.parametrize("target,bits", CASES)
def test_qat_forward_equals_every_consumer_bit_for_bit(target, bits):
    net = random_network(config=QuantConfig(*bits), hidden=(48, 32), seed=sum(bits), target=target)
    net.calibrate_activation_clips(random_obs(256, seed=1))  # codes spread over the levels
    network = net.export()
    obs, q = engines(network)
    with torch.no_grad():
        q_qat = net(torch.as_tensor(obs)).numpy()
    np.testing.assert_array_equal(q_qat, q["integer reference"].astype(np.float32))
    hidden, _ = network.forward_codes(obs)
    levels = network.config.activation_levels
    assert all(0 < codes.mean() < levels for codes in hidden)
    for name, values in q.items():
        np.testing.assert_array_equal(values, q["integer reference"], err_msg=name)


def tie_network(target, bits, seed=0, obs_dim=6, sizes=(24, 16), n_actions=3) -> IntegerNetwork:
    """An integer network whose accumulators land on rounding ties and saturate often."""
    chip, config = TARGETS[target], QuantConfig(*bits)
    rng = np.random.default_rng(seed)
    layers, fan_in = [], obs_dim
    for i, units in enumerate([*sizes, n_actions]):
        top = max(1, 2 ** (chip.layer_weight_bits(i, config.weight_bits) - 1) - 1)
        layer = IntegerLayer(weights=rng.integers(-top, top + 1, (units, fan_in)), bias=rng.integers(-20, 21, units) * 4,
                             scale=np.full(units, 0.01))
        if config.weight_bits == 1 and (i > 0 or chip.first_layer_weight_bits is None):
            layer.weights = np.where(layer.weights >= 0, 1, -1)
        if i < len(sizes):
            if chip.requantization == "threshold_step":  # step 16: every accumulator is a tie of ceil
                layer.offset, layer.step = rng.integers(-2, 3, units), rng.choice([16, 32, 48], units)
                if config.activation_bits < 4:
                    layer.step = layer.step * 2 ** (4 - config.activation_bits)
            else:  # scale 1..3 over 2**shift: half of the accumulators are ties of the rounding
                layer.multiplier, layer.shift = rng.integers(1, 4, units), int(rng.integers(1, 3)) + 2 * (i == 0)
                if config.activation_bits < (chip.min_output_bits or 0):
                    layer.acc_clip = accumulator_clip(layer.multiplier, layer.shift, config.activation_levels)
        layers.append(layer)
        fan_in = units
    quantizer = InputQuantizer(-np.ones(obs_dim), np.ones(obs_dim), config.input_bits)
    return IntegerNetwork(config=config, input=quantizer, layers=layers, target=target)


@pytest.mark.parametrize("target,bits", CASES)
def test_ties_and_saturation_agree_everywhere(target, bits):
    network = tie_network(target, bits)
    obs, q = engines(network)
    hidden, _ = network.forward_codes(obs)
    assert any((codes == network.config.activation_levels).mean() > 0.05 for codes in hidden)  # saturation
    assert any((codes == 0).mean() > 0.05 for codes in hidden)
    for name, values in q.items():
        np.testing.assert_array_equal(values, q["integer reference"], err_msg=name)


@pytest.mark.parametrize("obs_dim", [9, 10, 25, 26, 49, 50, 147])
def test_every_akd1000_input_layout_is_exact_and_hardware_resident(obs_dim):
    pytest.importorskip("akida")
    from rivc.neurochip.akida_backend import fit_report

    network = tie_network("akd1000", (4, 4, 8), obs_dim=obs_dim, sizes=(24, 16), seed=obs_dim)
    obs, q = engines(network)
    np.testing.assert_array_equal(q["akida engine"], q["integer reference"])
    assert fit_report(network)["nps"]["HRC"] == 1


def test_the_mapper_refuses_what_the_device_cannot_hold():
    pytest.importorskip("akida")
    from rivc.neurochip.akida_backend import AkidaConversionError, check_hardware_fit

    with pytest.raises(AkidaConversionError, match="not hardware-resident on TwoNodesIPv2: .*hidden_1"):
        check_hardware_fit(QuantConfig(), [1500, 1024, 1024, 1024, 2], TARGETS["akida"])
    with pytest.raises(AkidaConversionError, match="unknown akida device 'NoSuchDevice'"):
        from rivc.neurochip.akida_backend import fit_report

        fit_report(tie_network("akida", (4, 4, 8)), "NoSuchDevice")


def test_rounding_rules_on_hand_checked_values():
    acc = np.array([-3.0, 1.0, 2.0, 3.0, 5.0, 6.0, 100.0])
    # (acc * 1 + 2) / 4 rounded down: 1.5 -> 1 ... half up at acc = 2 (exactly 1.0 after + 2)
    assert scale_shift_codes(acc, np.ones(7), 2, 3).tolist() == [0, 0, 1, 1, 1, 2, 3]
    assert scale_shift_codes(acc, np.ones(7), 2, 3, acc_clip=np.full(7, 5)).tolist() == [0, 0, 1, 1, 1, 1, 1]
    # ceil(16 * (acc - 1) / 32): exact multiples stay, anything above goes up
    assert threshold_step_codes(acc, 1, 32, 15).tolist() == [0, 0, 1, 1, 2, 3, 15]
    torch_codes = scale_shift_codes(torch.as_tensor(acc), torch.ones(7, dtype=torch.float64), 2, 3)
    assert torch_codes.tolist() == [0, 0, 1, 1, 1, 2, 3]


@pytest.mark.parametrize("target", ["akida", "akd1000"])
@pytest.mark.parametrize("hidden,obs_dim", [((64, 64), 4), ((64, 64), 10), ((256, 256), 4)])
def test_default_policies_are_hardware_resident(target, hidden, obs_dim):
    pytest.importorskip("akida")
    from rivc.neurochip.akida_backend import fit_report

    network = random_network(obs_dim=obs_dim, hidden=hidden, target=target).export()
    report = fit_report(network)
    assert report["device"] == TARGETS[target].device and report["hardware_only"]
    assert report["np_count"] >= 3 and report["passes"] >= 1 and report["program_memory_bytes"] > 0
    assert report["macs"] >= obs_dim * hidden[0]


@pytest.mark.parametrize("target,bits,message", [
    ("akida", (8, 4, 8), "weight_bits=8"), ("akida", (4, 8, 8), "activation_bits=8"),
    ("akida", (4, 4, 6), "input_bits=6"), ("akd1000", (8, 4, 8), "weight_bits=8"),
    ("akd1000", (1, 4, 8), "weight_bits=1"), ("akd1000", (4, 8, 8), "activation_bits=8"),
])
def test_unsupported_bit_widths_are_refused_when_the_network_is_built(target, bits, message):
    with pytest.raises(TargetError, match=rf"target '{target}'.*cannot run {message}: it supports"):
        random_network(config=QuantConfig(*bits), target=target)


def test_too_many_inputs_and_units_are_refused_naming_the_layer():
    with pytest.raises(TargetError, match="layer 0 takes 200 observation inputs.*at most 147"):
        random_network(obs_dim=200, target="akd1000")
    with pytest.raises(TargetError, match="layer 0 takes 3000 observation inputs.*at most 2048"):
        random_network(obs_dim=3000, target="akida")
    with pytest.raises(TargetError, match="layer 0 has 256 units.*at most 192 filters for 10 inputs"):
        random_network(obs_dim=10, hidden=(256, 256), target="akd1000")
    with pytest.raises(TargetError, match="unknown target 'loihi'"):
        random_network(target="loihi")


def test_the_agent_refuses_what_the_chip_cannot_run():
    from rivc.agents import RIVC

    with pytest.raises(TargetError, match="layer 0 has 600 units"):
        RIVC("MlpPolicy", "CartPole-v1", target="akd1000", policy_kwargs={"net_arch": [600, 64]})
    with pytest.raises(ValueError, match="akida backend runs the Akida targets"):
        RIVC("MlpPolicy", "CartPole-v1", target="rate", backend="akida")


def test_akida_refuses_a_rate_coded_network_and_a_missing_package(monkeypatch):
    pytest.importorskip("akida")
    from rivc.neurochip.akida_backend import AkidaConversionError

    with pytest.raises(AkidaConversionError, match="target 'rate', which Akida does not run"):
        make_backend("akida").convert(random_network(target="rate").export())
    monkeypatch.setitem(sys.modules, "akida", None)
    with pytest.raises(ImportError, match=r"pip install 'rivc\[akida\]'"):
        make_backend("akida")


def test_saved_networks_keep_their_target(tmp_path):
    for target in TARGETS:
        network = tie_network(target, (2, 2, 8))
        loaded = IntegerNetwork.load(network.save(tmp_path / f"{target}.npz"))
        assert loaded.target == target
        obs = random_obs(100, obs_dim=6)
        np.testing.assert_array_equal(loaded.q_values(obs), network.q_values(obs))
