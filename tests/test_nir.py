"""The NIR export, checked by a simulator nobody here wrote: Sinabs runs the exported file and gives
our emulation's spike counts and Q-values exactly (random networks of several widths; a trained policy
in tests/test_deploy.py); what NIR cannot express is refused with the reason."""

import builtins

import numpy as np
import pytest
import torch

from conftest import random_network, random_obs
from rivc import QuantConfig
from rivc.chip import TargetError
from rivc.neurochip.if_sim import membrane_start
from rivc.neurochip.nir_export import load_sinabs, sinabs_agreement, to_nir, write_nir
from rivc.neurochip.snntorch_backend import IFPolicy
from test_chip_targets import tie_network

nir = pytest.importorskip("nir")
pytest.importorskip("sinabs")


def rate_network(bits=(4, 4, 8), hidden=(48, 32), seed=0, clip=None):
    """Clips calibrated (codes spread over the levels), or ``clip`` (small: many saturated units)."""
    net = random_network(config=QuantConfig(*bits), hidden=hidden, seed=seed, target="rate", clip=clip or 2.0)
    if clip is None:
        net.calibrate_activation_clips(random_obs(256, seed=1))
    return net.export()


@pytest.mark.parametrize("bits,hidden", [((4, 4, 8), (48, 32)), ((2, 2, 8), (64, 64)), ((3, 4, 6), (32,)),
                                         ((4, 2, 8), (16, 16, 16))])
@pytest.mark.parametrize("clip", [None, 0.2])
def test_sinabs_runs_the_file_spike_for_spike(bits, hidden, clip, tmp_path):
    network = rate_network(bits, hidden, seed=sum(bits), clip=clip)
    export = write_nir(network, tmp_path / "policy.nir")
    obs = random_obs(300, seed=3)
    agreement = sinabs_agreement(tmp_path / "policy.nir", network, obs)
    assert export.float32_exact or bits == (4, 4, 8)  # 4-bit: the bound is loose, the run still exact
    assert agreement.exact and agreement.actions_equal == 1.0, agreement
    simulator = load_sinabs(export.graph, network)
    simulator.run(obs[:10])
    assert all(neuron.v_mem.dtype == torch.float32 for neuron in simulator.neurons.values())  # a float32 run
    if clip:  # saturated units (currents above the threshold): Sinabs's own defaults fire them more often
        _, counts = IFPolicy(network).run(obs)
        assert any((c[-1] == network.config.activation_levels).mean() > 0.05 for c in counts)
        plain = sinabs_agreement(tmp_path / "policy.nir", network, obs, import_mode="plain")
        assert not plain.exact and plain.counts_equal < 1.0


@pytest.mark.parametrize("options", [{"head": "dueling"}, {"activation_steps": "unit"}])
def test_sinabs_runs_dueling_heads_and_per_unit_steps(options, tmp_path):
    net = random_network(config=QuantConfig(4, 4, 8), hidden=(48, 32), seed=2, target="rate", **options)
    net.calibrate_activation_clips(random_obs(256, seed=1))
    network = net.export()
    if "activation_steps" in options:  # each unit its own shift, exercised
        assert all(np.unique(layer.requant.shift).size > 1 for layer in network.hidden_layers)
    export = write_nir(network, tmp_path / "policy.nir")
    assert export.graph.metadata.get("head") == options.get("head")
    agreement = sinabs_agreement(tmp_path / "policy.nir", network, random_obs(300, seed=3))
    assert agreement.exact and agreement.actions_equal == 1.0, agreement


@pytest.mark.parametrize("bits", [(4, 4, 8), (2, 2, 8), (1, 2, 8), "8/3,2/3,5"])  # and per-layer weight widths
def test_membranes_one_unit_below_a_rounding_tie_fire_alike(bits):
    """Small multipliers and shifts: accumulators land on (and one unit below) rounding ties, where a
    ``v >= theta`` simulator would fire early if a membrane could equal a threshold."""
    network = tie_network("rate", bits)
    obs = np.random.default_rng(7).uniform(-1.2, 1.2, (400, network.obs_dim))
    agreement = sinabs_agreement(to_nir(network).graph, network, obs)
    assert agreement.exact, agreement


def test_longer_runs_and_batches_that_do_not_divide(tmp_path):
    network = rate_network((2, 2, 8), (32, 32))
    obs = random_obs(70, seed=5)
    for steps in (1, 7, 20):
        policy = load_sinabs(to_nir(network, steps).graph, network, steps, batch_size=32)
        q, counts = policy.run(obs)
        q_ours, counts_ours = IFPolicy(network, steps).run(obs)
        np.testing.assert_array_equal(q, q_ours)
        for c, c_ours in zip(counts, counts_ours):
            np.testing.assert_array_equal(c, c_ours[-1])


def test_the_file_holds_the_integer_network_and_how_to_read_it(tmp_path):
    network = rate_network()
    write_nir(network, tmp_path / "policy.nir")
    graph = nir.read(tmp_path / "policy.nir")
    assert set(graph.nodes) == {"input", "fc0", "if0", "fc1", "if1", "fc_out", "output"}
    assert ("if1", "fc_out") in graph.edges
    assert int(graph.metadata["timesteps"]) == network.config.activation_levels
    np.testing.assert_array_equal(graph.metadata["q_scale"], network.layers[-1].scale)
    np.testing.assert_array_equal(graph.metadata["input_low"], network.input.low)
    obs = random_obs(50, seed=9)  # the input codes from the file's metadata alone, as its SEMANTICS say
    meta = graph.metadata
    codes = (np.floor((np.clip(obs, meta["input_low"], meta["input_high"]) - meta["input_low"]) * meta["input_inv_step"]
                      + 0.5) - meta["input_zero_point"])
    np.testing.assert_array_equal(codes, network.input_codes(obs))
    layer = network.layers[0]
    fc0, if0 = graph.nodes["fc0"], graph.nodes["if0"]
    theta = network.config.activation_levels * 2.0**layer.requant.shift
    np.testing.assert_array_equal(fc0.weight[:-1, :-1], layer.weights * layer.requant.multiplier[:, None])
    np.testing.assert_array_equal(fc0.bias[:-1], layer.bias * layer.requant.multiplier)
    np.testing.assert_array_equal(fc0.weight[:-1, -1], membrane_start(theta))
    np.testing.assert_array_equal(if0.v_threshold[:-1], theta)
    assert membrane_start(theta) % 1 == 0.5  # no membrane equals a threshold: > and >= fire alike
    later = graph.nodes["fc1"].weight
    np.testing.assert_array_equal(later[:-1, :-1], network.layers[1].weights * network.layers[1].requant.multiplier[:, None]
                                  * network.config.activation_levels)


def test_what_nir_cannot_express_is_refused(tmp_path):
    for target in ("akida", "akd1000"):
        network = random_network(target=target).export()
        with pytest.raises(TargetError, match="train with target='rate' to export NIR"):
            write_nir(network, tmp_path / "policy.nir")
    assert not (tmp_path / "policy.nir").exists()


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "policy.nir"
    path.write_bytes(b"old")

    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_nir(rate_network(), path)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["policy.nir"]


def test_a_missing_package_is_named(monkeypatch):
    real_import = builtins.__import__

    def no_nir(name, *args, **kwargs):
        if name == "nir":
            raise ImportError("No module named 'nir'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nir)
    with pytest.raises(ImportError, match=r"optional package 'nir': pip install 'rivc\[nir\]'"):
        to_nir(rate_network())


def test_rate_policies_saved_with_16_bit_scales_still_load_and_run_as_trained():
    """Before the NIR export the rate target's scales were 16-bit: such files (format <= 3) load as the
    legacy ``rate16`` target; the same fixed-point ratios in 16 bits give the same actions."""
    import dataclasses
    import json

    from rivc.integer_net import IntegerNetwork

    network = rate_network()
    layers = [dataclasses.replace(layer) if layer.is_output else
              dataclasses.replace(layer, requant=dataclasses.replace(
                  layer.requant, multiplier=layer.requant.multiplier * 256, shift=layer.requant.shift + 8))
              for layer in network.layers]
    old = IntegerNetwork(config=network.config, input=network.input, layers=layers, target="rate", check=False)
    arrays = old.to_arrays()
    meta = json.loads(bytes(arrays["meta"]).decode())
    with pytest.raises(ValueError, match=r"scales must lie in \[0, 2\*\*8\) on target 'rate'"):
        IntegerNetwork.from_arrays(arrays)  # written now, such scales are not the rate target's
    meta["version"] = 3
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    loaded = IntegerNetwork.from_arrays(arrays)
    assert loaded.target == "rate16" and loaded.layers[0].requant.multiplier.max() >= 2**8
    obs = random_obs(200, seed=4)
    np.testing.assert_array_equal(IFPolicy(loaded).q_values(obs), IFPolicy(network).q_values(obs))
    assert not to_nir(loaded).float32_exact


def test_a_nir_whose_if_resets_to_a_value_is_refused(monkeypatch):
    monkeypatch.setattr(nir, "__version__", "1.0.8")
    with pytest.raises(ImportError, match=r"nir 1.0.8 defines IF as a reset to v_reset.*pip install 'nir>=1.0.4,<1.0.6'"):
        to_nir(rate_network())
