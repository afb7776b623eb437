"""Train what you deploy: for every chip target and bit width it supports, uniform and per layer, the QAT
forward, the integer reference, the emulator's fast path, the snntorch reference and (Akida targets) the
akida engine give the same Q-values, bit for bit; the default policies are hardware-resident; what a chip
cannot run is refused when the network is built, as akida's own mapper refuses it."""

import importlib.util
import itertools
import sys

import numpy as np
import pytest
import torch

from conftest import random_network, random_obs, tie_requantization
from rivc import QuantConfig
from rivc.chip import TARGETS, TargetError, scale_shift_codes, threshold_step_codes
from rivc.integer_net import InputQuantizer, IntegerLayer, IntegerNetwork
from rivc.neurochip import make_backend

UNIFORM = [(4, 4, 8), (2, 2, 8), (4, 1, 8), (1, 2, 8), (2, 4, 8), (8, 4, 8), (4, 8, 8), (4, 3, 6), (8, 8, 8), (8, 2, 8)]
# per layer (two hidden layers and the head): Akida 2.0's mixed maps, 8-bit ends around a 4-bit middle, narrow layers
PER_LAYER = ["8/8,8/4,4", "8/4,4/4,4", "8/8,8/8,4", "8/8,4/4,2", "8/2,4/1,4", "4/4,4/2,8", "2/4,4/4,2", "8/4,4/4,8",
             "4/4,2/4,4", "8/4,2/2,4", "4/6,7/6,3"]


def accepted(target: str, config: QuantConfig, layers: int = 3) -> bool:
    try:
        TARGETS[target].check(config, [6, *[16] * (layers - 1), 3])
    except TargetError:
        return False
    return True


def config_of(bits) -> QuantConfig:
    return QuantConfig.parse_layers(bits) if isinstance(bits, str) else QuantConfig(*bits)


# every target with each of its legal widths in the samples above: the tests follow the targets table
CASES = [(target, bits) for target in TARGETS for bits in [*UNIFORM, *PER_LAYER] if accepted(target, config_of(bits))]


def test_the_targets_accept_the_widths_their_chips_run():
    """What CASES must hold (a target that lost a width would otherwise just drop its cases)."""
    for case in [("akida", (8, 8, 8)), ("akida", (4, 4, 8)), ("akida", (2, 2, 8)), ("akida", (4, 1, 8)),
                 ("akida", "8/8,8/4,4"), ("akida", "8/4,4/4,4"), ("akd1000", (4, 4, 8)), ("akd1000", (2, 2, 8)),
                 ("akd1000", "8/4,4/4,4"), ("rate", (8, 8, 8)), ("rate", (4, 3, 6)), ("rate", "4/6,7/6,3")]:
        assert case in CASES, case
    assert ("akida", (8, 4, 8)) not in CASES and ("akd1000", (8, 8, 8)) not in CASES


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


def every_consumer_equals(net, network):
    """The QAT forward and every consumer of ``network`` (``net``'s export) give the same Q-values; returns them."""
    obs, q = engines(network)
    with torch.no_grad():
        q_qat = net(torch.as_tensor(obs)).numpy()
    np.testing.assert_array_equal(q_qat, q["integer reference"].astype(np.float32))
    for name, values in q.items():
        np.testing.assert_array_equal(values, q["integer reference"], err_msg=name)
    return obs, q


@pytest.mark.parametrize("target,bits", CASES)
def test_qat_forward_equals_every_consumer_bit_for_bit(target, bits):
    net = random_network(config=config_of(bits), hidden=(48, 32), seed=len(str(bits)), target=target)
    net.calibrate_activation_clips(random_obs(256, seed=1))  # codes spread over the levels
    network = net.export()
    obs, _ = every_consumer_equals(net, network)
    hidden, _ = network.forward_codes(obs)
    assert all(0 < codes.mean() < network.levels(i) for i, codes in enumerate(hidden))


@pytest.mark.parametrize("target,bits", [case for case in CASES if case[1] in ((4, 4, 8), (2, 2, 8), (8, 8, 8),
                                                                              "8/8,8/4,4", "8/4,4/4,4")])
def test_per_unit_activation_steps_are_what_every_consumer_runs(target, bits, tmp_path):
    # a step per unit, folded into the next layer's weights: the chip's format as it is, the same values everywhere
    net = random_network(config=config_of(bits), hidden=(48, 32), seed=3, target=target, activation_steps="unit")
    net.calibrate_activation_clips(random_obs(256, seed=1))
    with torch.no_grad():  # units whose ranges differ by 30 times, as a trained layer's do (docs/zoo_notes.md)
        net.clips[0].mul_(torch.logspace(-1.5, 0, 48)[torch.randperm(48)])
        net.layers[1].weight.div_(torch.logspace(-1.5, 0, 48)[None, :] * 3)
    network = net.export()
    obs, q = every_consumer_equals(net, network)
    hidden, _ = network.forward_codes(obs)
    assert all(0 < codes.mean() < network.levels(i) for i, codes in enumerate(hidden))
    if TARGETS[target].requantization == "scale_shift":  # ratios 30 times apart: a shift per unit, every scale kept
        assert all(np.unique(layer.requant.shift).size > 1 for layer in network.hidden_layers)
        half = 2 ** (TARGETS[target].scale_bits - 1)
        assert all(layer.requant.multiplier.min() >= half for layer in network.hidden_layers)
    loaded = IntegerNetwork.load(network.save(tmp_path / "unit.npz"))
    np.testing.assert_array_equal(loaded.q_values(obs), q["integer reference"])


@pytest.mark.parametrize("target,bits", [case for case in CASES if case[1] in ((4, 4, 8), (2, 2, 8), "8/4,4/4,4")])
def test_a_dueling_head_is_what_every_consumer_runs(target, bits, tmp_path):
    # the head's rows are V and each action's A; every consumer turns them into Q = V + A - mean A alike
    net = random_network(config=config_of(bits), hidden=(48, 32), seed=4, target=target, head="dueling")
    net.calibrate_activation_clips(random_obs(256, seed=1))
    network = net.export()
    assert network.n_actions == 4 and network.layers[-1].units == 5
    obs, q = every_consumer_equals(net, network)
    rows = network.forward_codes(obs)[1] * network.layers[-1].scale  # by hand: V + A - mean A ranks by A
    np.testing.assert_allclose(q["integer reference"], rows[:, :1] + rows[:, 1:] - rows[:, 1:].mean(1, keepdims=True),
                               rtol=1e-12, atol=1e-12)
    assert np.array_equal(q["integer reference"].argmax(1), rows[:, 1:].argmax(1))
    loaded = IntegerNetwork.load(network.save(tmp_path / "dueling.npz"))
    assert loaded.head == "dueling" and loaded.n_actions == 4
    np.testing.assert_array_equal(loaded.q_values(obs), q["integer reference"])


def tie_network(target, bits, seed=0, obs_dim=6, sizes=(24, 16), n_actions=3) -> IntegerNetwork:
    """An integer network whose accumulators land on rounding ties and saturate often."""
    chip, config = TARGETS[target], config_of(bits)
    precision = chip.precision(config, len(sizes) + 1)
    rng = np.random.default_rng(seed)
    layers, fan_in = [], obs_dim
    for i, units in enumerate([*sizes, n_actions]):
        top = precision[i].weight_levels
        layer = IntegerLayer(weights=rng.integers(-top, top + 1, (units, fan_in)), bias=rng.integers(-20, 21, units) * 4,
                             scale=np.full(units, 0.01))
        if precision[i].weight_bits == 1:
            layer.weights = np.where(layer.weights >= 0, 1, -1)
        if i < len(sizes):
            tie_requantization(layer, chip, precision[i], rng, first=i == 0)
        layers.append(layer)
        fan_in = units
    quantizer = InputQuantizer(-np.ones(obs_dim), np.ones(obs_dim), config.input_bits)
    return IntegerNetwork(config=config, input=quantizer, layers=layers, target=target)


@pytest.mark.parametrize("target,bits", CASES)
def test_ties_and_saturation_agree_everywhere(target, bits):
    network = tie_network(target, bits)
    obs, q = engines(network)
    hidden, _ = network.forward_codes(obs)
    assert any((codes == network.levels(i)).mean() > 0.05 for i, codes in enumerate(hidden))  # saturation
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


@pytest.mark.parametrize("per_unit", [False, True])
def test_the_tensor_requantization_equals_the_integer_rule_bit_for_bit(per_unit):
    """A float64 tensor takes an in-place path (acc * (scale / 2**shift) + 1/2): the same codes as numpy's and as
    the rule written with integers, on a conv map's accumulators up to 2**30 and exact half-way ones, with a clip
    that binds (2-bit codes on a wider output) and without, and the caller's accumulators untouched."""
    from rivc.requant import accumulator_clip

    rng = np.random.default_rng(0)
    units, levels = 8, 3
    scale = np.concatenate([[1, 3, 5, 32], rng.integers(1, 256, units - 4)])  # (the first have half-way cases)
    shift = rng.integers(6, 24, units) if per_unit else np.full(units, 11)
    acc = rng.integers(-(2**30), 2**30, (4, units, 16, 16)).astype(np.float64)  # [B, F, H, W]
    acc[1] = rng.integers(-(2**12), 2**12, (units, 16, 16))
    halfway = 0
    for unit, (s, m) in enumerate(zip(shift, scale)):  # acc * scale half-way between two codes: (k + 1/2) * 2**shift
        row = [(k * 2**s + 2 ** (s - 1)) // m for k in range(levels) if (k * 2**s + 2 ** (s - 1)) % m == 0]
        acc[2, unit].flat[: len(row)] = row
        halfway += len(row)
    assert halfway >= units  # 3 + 1 + 1 + 3 at least
    unit_shape = (units, 1, 1)
    acc_clip = accumulator_clip(scale, shift, levels).reshape(unit_shape)
    for clip in (None, acc_clip):
        clipped = acc if clip is None else np.minimum(acc, clip)
        integer = (clipped.astype(np.int64) * scale.reshape(unit_shape) + (1 << shift.reshape(unit_shape)) // 2) \
            >> shift.reshape(unit_shape)
        expected = np.clip(integer, 0, levels)
        step_shift = shift.reshape(unit_shape) if per_unit else 11
        codes = scale_shift_codes(acc, scale.reshape(unit_shape).astype(np.float64), step_shift, levels, clip)
        tensor_acc = torch.from_numpy(acc.copy())
        tensor = scale_shift_codes(tensor_acc, torch.from_numpy(scale.reshape(unit_shape).astype(np.float64)),
                                   torch.from_numpy(step_shift.astype(np.float64)) if per_unit else step_shift, levels,
                                   None if clip is None else torch.from_numpy(clip.astype(np.float64)))
        assert np.array_equal(codes, expected) and tensor.dtype == torch.float64
        assert np.array_equal(tensor.numpy(), expected) and torch.equal(tensor_acc, torch.from_numpy(acc))
        if clip is None:
            assert (integer > levels).any()  # without the clip, the output clips (the 2-bit codes of a wider output)
        else:
            assert (integer == levels).any() and np.array_equal(codes, np.clip(integer, 0, None))  # the clip binds
    # numpy or Python parameters with a tensor's accumulators: the same codes
    mixed = scale_shift_codes(torch.from_numpy(acc.copy()), scale.reshape(unit_shape).astype(np.float64),
                              shift.reshape(unit_shape) if per_unit else 11, levels)
    assert np.array_equal(mixed.numpy(), scale_shift_codes(acc, scale.reshape(unit_shape).astype(np.float64),
                                                           shift.reshape(unit_shape) if per_unit else 11, levels))


@pytest.mark.parametrize("levels", [1, 3, 15, 255])
def test_the_float32_requantization_gives_the_integer_rules_codes_wherever_it_is_taken(levels):
    """The QAT forward's int32 and float32 accumulators are requantized in float32 where ``scale_shift_float32`` says
    float32 gives the same codes: the integer rule's on every unit's thresholds (+-2), on random and extreme int32
    values (float32 rounds them) and on half-way cases, per-unit shifts and clips that bind; and it declines where
    ``(levels + 1.5) * 2**shift + scale`` reaches 2**24."""
    from rivc.chip import scale_shift_codes32, scale_shift_float32
    from rivc.requant import accumulator_clip

    rng = np.random.default_rng(levels)
    taken = 0
    for shift in range(1, 25):
        for per_unit, scale_bits in ((False, 8), (True, 8), (False, 16)):
            scale = np.concatenate([[0, 1, 3, 32], rng.integers(1, 2**scale_bits, 4)])
            shifts = rng.integers(1, shift + 1, len(scale)) if per_unit else shift
            for clip in (None, accumulator_clip(scale, shifts, levels)):
                factors = scale_shift_float32(scale, shifts, levels, clip)
                exact = (levels + 1.5) * 2.0 ** np.max(shifts) + scale.max() < 2**24
                assert (factors is not None) == exact
                if not exact:
                    continue
                taken += 1
                edges = np.arange(levels + 2)[:, None] * 2.0 ** np.asarray(shifts) - 2.0 ** (np.asarray(shifts) - 1)
                thresholds = np.floor(edges / np.maximum(scale, 1)).ravel()  # (k - 1/2) * 2**shift / scale, each unit's
                values = np.concatenate([thresholds + d for d in (-2, -1, 0, 1, 2)]
                                        + [rng.integers(-(2**31), 2**31, 500), rng.integers(-(2**12), 2**20, 500),
                                           [-(2**31), 2**31 - 1, 2**24 - 1, 2**24, 2**24 + 1, 0, -1]])
                acc = np.broadcast_to(np.clip(values, -(2**31), 2**31 - 1)[:, None], (len(values), len(scale)))
                for accumulators in (acc.astype(np.int32), np.where(np.abs(acc) < 2**24, acc, 0).astype(np.float32)):
                    expected = scale_shift_codes(accumulators.astype(np.float64), scale.astype(np.float64), shifts,
                                                 levels, clip)
                    codes = scale_shift_codes32(accumulators, *factors, levels)
                    assert codes.dtype == np.float32 and np.array_equal(codes, expected)
    assert taken >= 20
    scale = np.array([3, 5], dtype=np.int64)
    assert scale_shift_float32(-scale, 4, levels) is None  # negative scales: no exactness argument
    assert scale_shift_float32(scale, 4, levels, np.array([2**24 + 1, 8])) is None  # a clip float32 rounds
    assert scale_shift_float32(scale, 4, levels, np.array([2**24 + 2, 8])) is not None


@pytest.mark.parametrize("target,bits", [("akida", (4, 4, 8)), ("akd1000", (4, 4, 8)), ("akida", (8, 8, 8)),
                                         ("akida", "8/8,8/4,4"), ("akida", "8/4,4/2,4"), ("akd1000", "8/4,4/2,4")])
@pytest.mark.parametrize("hidden,obs_dim", [((64, 64), 4), ((64, 64), 10), ((256, 256), 4)])
def test_default_policies_are_hardware_resident(target, bits, hidden, obs_dim):
    pytest.importorskip("akida")
    from rivc.neurochip.akida_backend import fit_report

    network = random_network(obs_dim=obs_dim, hidden=hidden, target=target, config=config_of(bits)).export()
    report = fit_report(network)
    assert report["device"] == TARGETS[target].device and report["hardware_only"]
    assert report["np_count"] >= 3 and report["passes"] >= 1 and report["program_memory_bytes"] > 0
    assert report["macs"] >= obs_dim * hidden[0]


@pytest.mark.parametrize("target,bits,message", [
    ("akida", (4, 4, 6), "input_bits=6"), ("akida", (3, 4, 8), "weight_bits=3"), ("akida", (4, 6, 8), "activation_bits=6"),
    ("akd1000", (8, 4, 8), "weight_bits=8"), ("akd1000", (1, 4, 8), "weight_bits=1"),
    ("akd1000", (4, 8, 8), "activation_bits=8"),
])
def test_unsupported_bit_widths_are_refused_when_the_network_is_built(target, bits, message):
    with pytest.raises(TargetError, match=rf"target '{target}'.*cannot run {message}: it supports"):
        random_network(config=QuantConfig(*bits), target=target)


@pytest.mark.parametrize("target,bits,layer,rule", [
    ("akida", (8, 4, 8), 1, "8-bit weights on 4-bit inputs"),  # the mapper: "Input bits should be >= weights bits"
    ("akida", (4, 8, 8), 0, "outputs 8-bit activations from 4-bit weights"),
    ("akida", "8/4,8/4,4", 1, "8-bit weights on 4-bit inputs"),
    ("akida", "8/8,4/8,4", 1, "outputs 8-bit activations from 4-bit weights"),
    ("akida", "8/8,8/3,4", 1, "3-bit activations"), ("akida", "8/8,8/8,5", 2, "5-bit weights"),
    ("akd1000", "4/4,4/4,4", 0, "input layer, whose weights are 8-bit"), ("akd1000", "8/4,8/4,4", 1, "8-bit weights"),
    ("rate", "4/4,4/2,4", None, "same activation bits"),
])
def test_per_layer_widths_are_refused_naming_the_layer_and_the_rule(target, bits, layer, rule):
    where = "" if layer is None else rf".*layer {layer}\b"
    with pytest.raises(TargetError, match=rf"target '{target}'{where}.*{rule}"):
        random_network(config=config_of(bits), hidden=(16, 16), target=target)
    with pytest.raises(TargetError, match="gives 3 layer.*the network has 2"):
        random_network(config=QuantConfig.parse_layers("4/4,4/4,4"), hidden=(16,), target=target)


def test_akida_widths_are_refused_exactly_where_akidas_mapper_refuses_them():
    """Every combination of 4/8-bit weights and activations over two hidden layers and the head: the target's
    rule and akida's own hardware-only mapper (a model built without rivc's check) agree."""
    akida = pytest.importorskip("akida")
    agreements = 0
    for w0, a0, w1, a1, w2 in itertools.product((4, 8), repeat=5):
        config = QuantConfig(layers=((w0, a0), (w1, a1), (w2, None)))
        model = akida.Model()
        model.add(akida.InputData((1, 1, 6), input_bits=8))
        for units, weight_bits, output_bits in ((16, w0, a0), (16, w1, a1), (3, w2, 32)):
            activation = akida.ActivationType.NoActivation if output_bits == 32 else akida.ActivationType.ReLU
            model.add(akida.Dense1D(units, weights_bits=weight_bits, output_bits=output_bits, activation=activation))
        try:
            model.map(akida.TwoNodesIPv2(), hw_only=True)
            mapped = True
        except RuntimeError:
            mapped = False
        assert accepted("akida", config) == mapped, config.describe()
        agreements += 1
    assert agreements == 32


def test_per_layer_widths_round_trip_through_files_and_old_files_load(tmp_path):
    config = QuantConfig.parse_layers("8/8, 8/4, 4/32")
    assert config.describe() == "8/8,8/4,4/32" and (config.weight_bits, config.activation_bits) == (8, 8)
    assert QuantConfig.from_dict(config.to_dict()) == config
    assert QuantConfig.parse_layers("8/8,8/4,4") == config
    assert "layers" not in QuantConfig(4, 4, 8).to_dict()  # older versions read a uniform config's file
    assert QuantConfig.from_dict({"weight_bits": 4, "activation_bits": 2, "input_bits": 8}) == QuantConfig(4, 2, 8)
    network = tie_network("akida", "8/8,8/4,4")
    loaded = IntegerNetwork.load(network.save(tmp_path / "mixed.npz"))
    assert loaded.config == network.config and [p.levels for p in loaded.precision[:2]] == [127, 15]
    obs = random_obs(100, obs_dim=6)
    np.testing.assert_array_equal(loaded.q_values(obs), network.q_values(obs))
    for text, problem in (("8/8,x/4,4", "entry 2"), ("8/8,8/4,4/8", "entry 3"), ("8,8/4,4", "entry 1"),
                          ("8/8,8/4,9", "out of range")):
        with pytest.raises(ValueError, match=problem):
            QuantConfig.parse_layers(text)


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
