"""A first layer trained in the observation's own units (``input_units="observation"``, the default) and the input
range folded into the layer the chip runs."""

import copy
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from rivc import QuantConfig, QuantizedQNetwork
from rivc.integer_net import IntegerNetwork

# MountainCar's box: a narrow velocity range and an offset position range (codes worth about 14 * velocity)
LOW, HIGH = np.array([-1.2, -0.07, 0.0], np.float32), np.array([0.6, 0.07, 3.0], np.float32)
SPACE = spaces.Box(LOW, HIGH, dtype=np.float32)


def observations(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.uniform(LOW - 0.1 * (HIGH - LOW), HIGH + 0.1 * (HIGH - LOW), (n, 3)), dtype=torch.float32)


def network(units: str = "observation", seed: int = 0, **kwargs) -> QuantizedQNetwork:
    torch.manual_seed(seed)
    return QuantizedQNetwork(SPACE, 3, kwargs.pop("config", QuantConfig(4, 4, 8)), input_units=units, **kwargs)


def float_mlp(net: QuantizedQNetwork) -> nn.Sequential:
    """The same weights as a plain float MLP on raw observations, as SB3's DQN builds one."""
    modules = []
    for i, layer in enumerate(net.layers):
        modules += [copy.deepcopy(layer)] + ([nn.ReLU()] if i < len(net.layers) - 1 else [])
    return nn.Sequential(*modules)


def test_the_float_network_is_a_float_dqn_on_the_observations():
    # the same initial function as a float DQN's with these weights, whatever the range (inside it)
    net = network(qat=False)
    obs = torch.as_tensor(np.random.default_rng(1).uniform(LOW, HIGH, (256, 3)), dtype=torch.float32)
    torch.testing.assert_close(net(obs), float_mlp(net)(obs), rtol=0, atol=0)
    assert net.input_units == "observation" and network("normalised").input_units == "normalised"


@pytest.mark.parametrize("target, bits", [("akida", (4, 4, 8)), ("akd1000", (4, 4, 8)), ("akida", (8, 8, 8)),
                                          ("rate", (2, 2, 6))])
def test_the_folded_layer_is_what_the_chip_runs(target, bits):
    # the QAT forward's Q-values are the exported integer network's, bit for bit, with the range folded in
    net = network(config=QuantConfig(*bits), target=target)
    obs = observations(2000)
    q = net(obs).detach().numpy()
    exported = net.export()
    np.testing.assert_array_equal(exported.q_values(obs.numpy()).astype(np.float32), q)
    again = IntegerNetwork.from_arrays(exported.to_arrays())
    np.testing.assert_array_equal(again.q_values(obs.numpy()).astype(np.float32), q)
    # the float values the layer's codes stand for: the folded layer on the codes' values is the layer on observations
    codes = net.input_quantizer().codes(obs.numpy())
    folded_w, folded_b = net._fold_input_range(net.layers[0].weight.detach().numpy(), net.layers[0].bias.detach().numpy())
    x = codes * net._input_step_value
    direct = net.observation_values(codes) @ net.layers[0].weight.detach().numpy().T + net.layers[0].bias.detach().numpy()
    np.testing.assert_allclose(x @ folded_w.T + folded_b, direct, rtol=1e-4, atol=1e-4)


def test_fused_gradients_equal_the_composed_ones_and_reach_the_observation_units():
    net = network(seed=3)
    obs = observations(256, seed=4)
    upstream = torch.as_tensor(np.random.default_rng(5).normal(0, 1, (256, 3)), dtype=torch.float32)
    grads = []
    for fused in (True, False):
        net.fused_surrogate = fused
        net.zero_grad()
        (net(obs) * upstream).sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for fused, composed in zip(*grads):
        torch.testing.assert_close(fused, composed)
    # the chain rule through the fold: a normalised network holding the folded weights computes the same Q-values,
    # and its gradients map onto these as W = W' / a, b = b' - W c gives: dW' = (dW - db c) / a, db' = db
    normalised = network("normalised", seed=3)
    folded = net._fold_input_range(net.layers[0].weight.detach().numpy(), net.layers[0].bias.detach().numpy())
    with torch.no_grad():
        normalised.load_state_dict({**net.state_dict(), "first_layer_in_observation_units": torch.tensor(False)})
        normalised.layers[0].weight.copy_(torch.as_tensor(folded[0]))
        normalised.layers[0].bias.copy_(torch.as_tensor(folded[1]))
    q = normalised(obs)
    torch.testing.assert_close(q.detach(), net(obs).detach(), rtol=0, atol=0)
    (q * upstream).sum().backward()
    scale, offset = (torch.as_tensor(v, dtype=torch.float32) for v in net.input_affine())
    weight_grad, bias_grad = normalised.layers[0].weight.grad, normalised.layers[0].bias.grad
    torch.testing.assert_close(grads[0][0], (weight_grad - bias_grad[:, None] * offset) / scale, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(grads[0][1], bias_grad)
    torch.testing.assert_close(grads[0][2:], [p.grad for p in normalised.parameters()][2:])


def test_the_range_does_not_change_the_learning_geometry():
    # two ranges, one 8 times as wide: the float network's function and gradients (what Adam steps on) are equal; a
    # normalised first layer's gradients differ by the range's scale
    narrow, wide = network(qat=False), network(qat=False, obs_range=(LOW - 4 * (HIGH - LOW), HIGH + 3 * (HIGH - LOW)))
    obs = torch.as_tensor(np.random.default_rng(2).uniform(LOW, HIGH, (128, 3)), dtype=torch.float32)
    grads = []
    for net in (narrow, wide):
        net(obs).sum().backward()
        grads.append(net.layers[0].weight.grad.clone())
    torch.testing.assert_close(narrow(obs), wide(obs), rtol=0, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    narrow_n, wide_n = (network("normalised", qat=False, obs_range=r)
                        for r in ((LOW, HIGH), (LOW - 4 * (HIGH - LOW), HIGH + 3 * (HIGH - LOW))))
    for net in (narrow_n, wide_n):
        net(obs).sum().backward()
    assert not torch.allclose(narrow_n.layers[0].weight.grad, wide_n.layers[0].weight.grad)


def test_a_state_dict_keeps_its_units_and_a_legacy_one_loads_normalised():
    normalised = network("normalised", seed=6)
    obs = observations(500, seed=7)
    q = normalised(obs).detach()
    state = normalised.state_dict()
    assert not bool(state["first_layer_in_observation_units"])
    legacy = {k: v for k, v in state.items() if k != "first_layer_in_observation_units"}  # saved before the units
    loaded = network("observation", seed=8)
    loaded.load_state_dict(legacy)
    assert loaded.input_units == "normalised"
    torch.testing.assert_close(loaded(obs).detach(), q, rtol=0, atol=0)
    again = network("normalised", seed=9)
    again.load_state_dict(network("observation", seed=6).state_dict())
    assert again.input_units == "observation"
    assert network().with_config(QuantConfig(8, 8, 8)).input_units == "observation"
    assert loaded.with_config(QuantConfig(8, 8, 8)).input_units == "normalised"


def test_frames_are_read_as_pixels_whatever_the_units():
    frames = spaces.Box(0, 255, (16, 16, 1), np.uint8)
    net = QuantizedQNetwork(frames, 2, conv_layers=[(4, 3, 2)], hidden_sizes=(8,))
    assert net.input_units == "normalised" and not net.folds_input_range


def test_bad_units_are_refused():
    with pytest.raises(ValueError, match="input_units must be one of observation, normalised, got 'raw'"):
        network("raw")


def test_a_model_saved_before_the_units_loads_normalised_and_deploys_as_saved(tmp_path):
    from rivc.agents import RIVC

    model = RIVC("MlpPolicy", "MountainCar-v0", seed=0, learning_starts=200, batch_size=32, train_freq=4,
                 target_update_interval=100, buffer_size=2000, policy_kwargs=dict(input_units="normalised"))
    model.learn(600)
    path = model.save(tmp_path / "legacy")
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(files["rivc.json"])
    assert meta["policy_kwargs"].pop("input_units") == "normalised"  # what a file from before the units lacks
    files["rivc.json"] = json.dumps(meta).encode()
    weights = torch.load(io.BytesIO(files["weights.pt"]), weights_only=True)
    weights["policy"] = {k: v for k, v in weights["policy"].items() if not k.endswith("first_layer_in_observation_units")}
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    files["weights.pt"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    loaded = RIVC.load(path, env="MountainCar-v0")
    assert loaded.q_network.input_units == loaded.q_net_target.net.input_units == "normalised"
    states = model._replay_observations()
    np.testing.assert_array_equal(loaded.q_network.export().q_values(states), model.q_network.export().q_values(states))
    np.testing.assert_array_equal(loaded.spiking_policy.predict(states), model.spiking_policy.predict(states))
    again = RIVC.load(loaded.save(tmp_path / "again"))  # saved again: the file says which units it holds
    assert json.loads(zipfile.ZipFile(tmp_path / "again.zip").read("rivc.json"))["policy_kwargs"]["input_units"] == "normalised"
    assert again.q_network.input_units == "normalised"
    assert RIVC.load(RIVC("MlpPolicy", "MountainCar-v0").save(tmp_path / "new")).q_network.input_units == "observation"


def test_a_dimension_with_an_empty_range_reads_its_low_on_every_path():
    # obs_range low == high in one dimension: the codes read a constant, the fold moves it into the bias
    low, high = LOW.copy(), HIGH.copy()
    low[2] = high[2] = 1.5
    obs = observations(300, seed=11)
    exact = network(seed=12, obs_range=(low, high))
    np.testing.assert_array_equal(exact.export().q_values(obs.numpy()).astype(np.float32), exact(obs).detach().numpy())
    clamped = torch.minimum(torch.maximum(obs, torch.as_tensor(low)), torch.as_tensor(high))
    float_net = network(seed=12, qat=False, obs_range=(low, high))
    torch.testing.assert_close(float_net(obs), float_mlp(float_net)(clamped), rtol=0, atol=0)
    assert np.all(exact.observation_values(exact.input_quantizer().codes(obs.numpy()))[:, 2] == np.float32(1.5))


def test_after_a_range_moves_the_qat_forward_is_still_the_export():
    net = network(seed=13)
    obs = observations(800, seed=14)
    before = net(obs).detach()
    weight = net.layers[0].weight.detach().clone()
    net.move_input_range(LOW - 0.5 * (HIGH - LOW), HIGH + 0.5 * (HIGH - LOW))
    assert torch.equal(net.layers[0].weight.detach(), weight)  # nothing to rescale
    after = net(obs).detach()
    np.testing.assert_array_equal(net.export().q_values(obs.numpy()).astype(np.float32), after.numpy())
    assert not torch.equal(after, before)  # new codes, a new fold: the cache was not read
    net.calibrate_input_range(obs.numpy(), all_dims=True)
    np.testing.assert_array_equal(net.export().q_values(obs.numpy()).astype(np.float32), net(obs).detach().numpy())
    net.fused_surrogate = False  # the general path reads the same fold
    np.testing.assert_array_equal(net.export().q_values(obs.numpy()).astype(np.float32), net(obs).detach().numpy())


def test_the_precision_search_measures_the_first_layers_error_in_its_own_units():
    from rivc.agents.precision import weight_error
    from rivc.quant import weight_codes

    low, high = LOW.copy(), HIGH.copy()
    low[2] = high[2] = 0.5  # an empty range: the column folds into the bias, its error is 0
    net = network(seed=15, obs_range=(low, high))
    weight, bias = (p.detach().numpy().astype(np.float64) for p in (net.layers[0].weight, net.layers[0].bias))
    scale = net.input_affine()[0]
    folded = np.where(scale > 0, weight / np.where(scale > 0, scale, 1.0), 0.0).astype(np.float32)
    codes, step = weight_codes(folded, 4)
    expected = float((((codes * step - folded) * scale) ** 2).sum())
    assert weight_error(net, 0, 4) == pytest.approx(expected, rel=1e-6) and expected > 0
    hidden = net.layers[1].weight.detach().numpy()
    codes, step = weight_codes(hidden, 4)
    assert weight_error(net, 1, 4) == pytest.approx(float(((codes * step - hidden) ** 2).sum()), rel=1e-6)


def test_a_frame_network_records_pixels_and_an_old_pickle_loads_normalised():
    import pickle

    frames = QuantizedQNetwork(spaces.Box(0, 255, (16, 16, 1), np.uint8), 2, conv_layers=[(4, 3, 2)], hidden_sizes=(8,))
    assert not bool(frames.state_dict()["first_layer_in_observation_units"])
    old = network("normalised", seed=16)
    obs = observations(100, seed=17)
    q = old(obs).detach()
    del old._buffers["first_layer_in_observation_units"]  # as a network pickled before the units
    restored = pickle.loads(pickle.dumps(old))
    assert restored.input_units == "normalised"
    torch.testing.assert_close(restored(obs).detach(), q, rtol=0, atol=0)
