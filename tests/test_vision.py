"""Vision policies: conv Q-networks on camera frames. For every chip target and layer type (stride,
max pooling, 'same' and 'valid' padding, odd sizes, 1 or 3 channels, HWC or CHW frames, saturation)
the QAT forward, the integer reference, the emulator's fast path, the snntorch reference and (Akida
targets) the akida engine agree bit for bit; the default CnnPolicy is hardware-resident on both
Akida devices; what a chip or the agent cannot take is refused with a clear error."""

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rivc.envs  # noqa: F401
from rivc import QuantConfig, QuantizedQNetwork
from rivc.chip import TARGETS, TargetError
from rivc.conv import ConvGeometry, ConvSpec, conv2d, max_pool, same_padding
from rivc.integer_net import ImageInput, IntegerLayer, IntegerNetwork
from rivc.neurochip import make_backend

from conftest import tie_requantization

HAS_AKIDA = importlib.util.find_spec("akida") is not None

# (frame shape, conv layers) per case; every target runs them (no pooling on the rate-coded target)
ARCHS = [
    ((17, 15, 1), [ConvSpec(8, 3, 2), ConvSpec(8, 3, 1, 2), ConvSpec(6, 3, 2)]),  # odd sizes, stride, pooling
    ((12, 12, 3), [ConvSpec(6, 5, 1, 2), ConvSpec(8, 3, 2), ConvSpec(4, 3, 1)]),  # 5x5 kernel, pooling
    ((3, 16, 16), [ConvSpec(8, 3, 2, 2), ConvSpec(8, 3, 1)]),  # CHW frames; the input layer strides and pools
    ((9, 11, 3), [ConvSpec(4, 7, 1), ConvSpec(6, 3, 2)]),  # 7x7 kernel on a frame smaller than 2 kernels
    ((15, 15, 1), [ConvSpec(6, 3, 1, 2, "valid"), ConvSpec(8, 3, 2)]),  # 'valid' edges; pooling drops the odd row
]
# per layer: three conv layers, a dense hidden layer, the head (Akida 2.0: the input conv's weights are 8-bit)
TARGET_BITS = [("akida", (4, 4, 8)), ("akida", (2, 2, 8)), ("akida", (4, 1, 8)), ("akida", (8, 8, 8)),
               ("akida", "8/8,8/8,8/4,4/4,4"), ("akida", "8/4,4/2,4/4,4/1,4"), ("akd1000", (4, 4, 8)),
               ("akd1000", (2, 2, 8)), ("akd1000", "8/4,4/2,2/2,4/1,4"), ("rate", (4, 4, 8)), ("rate", (6, 3, 8)),
               ("rate", "8/3,5/3,2/3,7/3,4")]


def config_of(bits) -> QuantConfig:
    return QuantConfig.parse_layers(bits) if isinstance(bits, str) else QuantConfig(*bits)


def frames(n, shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype(np.uint8)


def conv_network(shape, arch, target, bits, seed=0):
    torch.manual_seed(seed)
    if TARGETS[target].rate_coded:
        arch = [ConvSpec(s.filters, s.kernel, s.stride, 0, s.padding) for s in arch]
    space = spaces.Box(0, 255, shape, np.uint8)
    config = config_of(bits)
    if not config.uniform:  # the per-layer form names every layer: as many as this architecture has
        config = QuantConfig(input_bits=config.input_bits, layers=(*config.layers[:len(arch)], *config.layers[-2:]))
    return QuantizedQNetwork(space, 5, config, hidden_sizes=(24,), target=target, conv_layers=arch)


def consumers(network, obs):
    """Q-values of every consumer (fast path and snntorch reference spike for spike)."""
    fast = make_backend("snntorch").convert(network).run(obs)
    reference = make_backend("snntorch", exact_reference=True).convert(network).run(obs)
    np.testing.assert_array_equal(fast[0], reference[0])
    for counts_fast, counts_reference in zip(fast[1], reference[1]):
        np.testing.assert_array_equal(counts_fast, counts_reference)
    q = {"integer reference": network.q_values(obs)}
    if not network.chip.rate_coded:
        q["emulator"] = fast[0]
        if HAS_AKIDA:
            q["akida engine"] = make_backend("akida").convert(network).q_values(obs)
    return q


@pytest.mark.parametrize("target,bits", TARGET_BITS)
@pytest.mark.parametrize("case", range(len(ARCHS)))
def test_conv_networks_agree_bit_for_bit(target, bits, case):
    shape, arch = ARCHS[case]
    net = conv_network(shape, arch, target, bits, seed=case)
    obs = frames(48, shape, seed=case)
    net.calibrate_activation_clips(obs)
    network = net.export()
    with torch.no_grad():
        q_qat = net(torch.as_tensor(obs)).numpy()
    q = consumers(network, obs)
    np.testing.assert_array_equal(q_qat, q["integer reference"].astype(np.float32))
    hidden, _ = network.forward_codes(obs)
    assert all(0 < codes.mean() < network.levels(i) for i, codes in enumerate(hidden))  # not dead, not saturated
    for name, values in q.items():
        np.testing.assert_array_equal(values, q["integer reference"], err_msg=name)
    if HAS_AKIDA and not network.chip.rate_coded:  # and the chip holds it: hardware-only on the target's device
        from rivc.neurochip.akida_backend import fit_report

        assert fit_report(network)["hardware_only"]


@pytest.mark.parametrize("target", ["akida", "rate"])
def test_pointwise_strided_convs_agree(target):
    """1x1 kernels with stride 2 after the input layer (Akida 2.0 runs them; AKD1000 has no 1x1 conv)."""
    net = conv_network((16, 16, 3), [ConvSpec(8, 3, 1), ConvSpec(8, 1, 2), ConvSpec(4, 1, 1)], target, (4, 4, 8))
    obs = frames(32, (16, 16, 3), seed=5)
    net.calibrate_activation_clips(obs)
    network = net.export()
    q = consumers(network, obs)
    with torch.no_grad():
        np.testing.assert_array_equal(net(torch.as_tensor(obs)).numpy(), q["integer reference"].astype(np.float32))
    for name, values in q.items():
        np.testing.assert_array_equal(values, q["integer reference"], err_msg=name)


def test_training_mode_forward_is_the_chip_and_its_gradients_reach_every_layer():
    net = conv_network(*ARCHS[0], "akida", (4, 4, 8))
    obs = torch.as_tensor(frames(16, ARCHS[0][0]))
    net.calibrate_activation_clips(obs.numpy())
    q = net(obs)  # with gradients: the straight-through surrogate carries them, the values are the chip's
    with torch.no_grad():
        np.testing.assert_array_equal(q.detach().numpy(), net(obs).numpy())
    q.sum().backward()
    assert all(layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0 for layer in net.layers)
    assert all(clip.grad is not None for clip in net.clips)


def test_accumulators_beyond_float32_take_float64_and_stay_exact():
    """8-bit weights on 8-bit activations of a wide layer: partial sums pass 2**24, the exact path goes float64."""
    net = conv_network((16, 16, 3), [ConvSpec(64, 7, 1), ConvSpec(64, 7, 2)], "rate", (8, 8, 8))
    obs = frames(8, (16, 16, 3), seed=9)
    net.calibrate_activation_clips(obs)
    step = float(net.clips[0].detach()) / net.config.activation_levels
    assert net.quantize_layer(1, torch.tensor(step), float(net.clips[1].detach())).weight_codes.dtype == torch.float64
    network = net.export()
    with torch.no_grad():
        np.testing.assert_array_equal(net(torch.as_tensor(obs)).numpy(), network.q_values(obs).astype(np.float32))


def test_checkpoints_from_before_conv_layers_load():
    net = conv_network(*ARCHS[0], "akida", (4, 4, 8))
    mlp = QuantizedQNetwork(spaces.Box(-1.0, 1.0, (4,), np.float32), 2)
    legacy = {key.replace("layers.", "linears."): value for key, value in mlp.state_dict().items()}
    clone = QuantizedQNetwork(spaces.Box(-1.0, 1.0, (4,), np.float32), 2)
    clone.load_state_dict(legacy)  # the layers were called ``linears``
    assert all(torch.equal(a, b) for a, b in zip(clone.state_dict().values(), mlp.state_dict().values()))
    assert net.linears == list(net.layers[3:])


def saturating_conv_network(target, bits, seed=0) -> IntegerNetwork:
    """Integer conv layers whose accumulators land on rounding ties and saturate often (border effects of
    'same' padding on a 13x11 frame, a pooling layer on the Akida targets), then two dense layers."""
    chip, config = TARGETS[target], config_of(bits)
    precision = chip.precision(config, 5, conv_input=True)
    rng = np.random.default_rng(seed)
    pool = 0 if chip.rate_coded else 2
    shape, specs, layers = (13, 11, 3), [(6, 2, 0), (5, 1, pool), (4, 1, 0)], []
    for i, (units, stride, pooling) in enumerate([*specs, (16, 0, 0), (3, 0, 0)]):
        top = precision[i].weight_levels
        geometry = ConvGeometry(shape, 3, stride, "same", pooling) if stride else None
        weight_shape = (units, 3, 3, shape[2]) if geometry else (units, int(np.prod(shape)))
        layer = IntegerLayer(weights=rng.integers(-top, top + 1, weight_shape), bias=rng.integers(-20, 21, units) * 4,
                             scale=np.full(units, 0.01), conv=geometry)
        if i < len(specs) + 1:
            tie_requantization(layer, chip, precision[i], rng, first=i == 0, first_step=8, first_shift=6)
        layers.append(layer)
        shape = layer.out_shape()
    return IntegerNetwork(config=config, input=ImageInput((13, 11, 3)), layers=layers, target=target)


@pytest.mark.parametrize("target,bits", TARGET_BITS)
def test_ties_saturation_and_borders_agree_everywhere(target, bits):
    network = saturating_conv_network(target, bits)
    obs = frames(64, (13, 11, 3), seed=3)
    obs[:8] = 255  # saturating frames
    q = consumers(network, obs)
    hidden, _ = network.forward_codes(obs)
    assert any((codes == network.levels(i)).mean() > 0.05 for i, codes in enumerate(hidden))
    assert any((codes == 0).mean() > 0.05 for codes in hidden)
    for name, values in q.items():
        np.testing.assert_array_equal(values, q["integer reference"], err_msg=name)


def test_conv_arithmetic_on_hand_checked_values():
    # TF 'same': 32 at stride 2 with a 3x3 kernel pads 0 before and 1 after; 5 at stride 1 pads 1 and 1
    assert same_padding(32, 3, 2) == (0, 1) and same_padding(5, 3, 1) == (1, 1) and same_padding(7, 2, 2) == (0, 1)
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    kernel = np.zeros((1, 3, 3, 1))
    kernel[0, 0, 2, 0] = 1  # cross-correlation: output (y, x) reads input (y - 1, x + 1)
    out = conv2d(x, kernel, ConvGeometry((4, 4, 1), 3, 1))
    assert out[0, 1, 1, 0] == x[0, 0, 2, 0] and out[0, 0, 0, 0] == 0  # padded border reads zero
    rows = np.array([[-5.0, -1.0, -7.0], [-2.0, -3.0, -9.0]]).reshape(1, 2, 3, 1)
    same = max_pool(rows, ConvGeometry((2, 3, 1), 1, 1, "same", 2))
    assert same.ravel().tolist() == [-1.0, -7.0]  # the padded cells never win, even over negatives
    valid = max_pool(rows, ConvGeometry((2, 3, 1), 1, 1, "valid", 2))
    assert valid.ravel().tolist() == [-1.0]  # 'valid' drops the column a window cannot cover
    assert ConvGeometry((15, 15, 1), 3, 1, "valid", 2).out_shape(4) == (6, 6, 4)  # 13 // 2, as Akida pools
    assert ConvGeometry((15, 15, 1), 3, 1, "same", 2).out_shape(4) == (8, 8, 4)


@pytest.mark.skipif(not HAS_AKIDA, reason="needs the akida package")
@pytest.mark.parametrize("target,device", [("akida", "TwoNodesIPv2"), ("akd1000", "AKD1000")])
@pytest.mark.parametrize("env_id", ["rivc/PanTrack-v0", "rivc/MobileReachCamera-v0"])
def test_default_cnn_policy_is_hardware_resident(target, device, env_id):
    from rivc.agents import RIVC
    from rivc.neurochip.akida_backend import fit_report

    model = RIVC("CnnPolicy", env_id, target=target, seed=0)  # the mapper runs when the agent is built
    report = fit_report(model.q_network.export(), device)
    assert report["hardware_only"] and report["device"] == device and report["passes"] == 1
    assert report["nps"].get("HRC") == 1 and report["nps"].get("CNP1", 0) >= 3  # input conv on the HRC
    assert report["macs"] == model.q_network.export().macs  # on Akida 2.0 akida's own count equals ours


@pytest.mark.parametrize("target,arch,shape,message", [
    ("akida", [ConvSpec(8, 3, 2), ConvSpec(8, 3, 2, 2)], (32, 32, 1), "strides and pools"),
    ("akida", [ConvSpec(8, 3, 2), ConvSpec(8, 3, 1, 2)], (32, 32, 1), "last conv layer"),
    ("akida", [ConvSpec(8, 3, 2), ConvSpec(8, 5, 2)], (32, 32, 1), "stride 1, not 2"),
    ("akida", [ConvSpec(8, 1, 1)], (32, 32, 1), "1x1 kernel"),
    ("akida", [ConvSpec(8, 3, 2)], (32, 32, 2), "1 or 3 channels"),
    ("akida", [ConvSpec(8, 3, 2)], (32, 400, 1), "at most 384 wide"),
    ("akida", [ConvSpec(8, 3, 1)], (32, 32, 1), "layer 1 takes 8192 inputs"),
    ("akd1000", [ConvSpec(8, 3, 2)], (4, 32, 1), "at least 5 pixels"),
    ("akd1000", [ConvSpec(8, 3, 2), ConvSpec(8, 3, 2), ConvSpec(8, 3, 2)], (32, 300, 1), "at most 256 wide"),
    ("akd1000", [ConvSpec(8, 3, 2), ConvSpec(8, 3, 1, 0, "valid")], (32, 32, 1), "'valid' padding"),
    ("akd1000", [ConvSpec(8, 5, 1), ConvSpec(8, 5, 2)], (32, 32, 1), "stride 1, not 2"),
    ("rate", [ConvSpec(8, 3, 1, 2), ConvSpec(8, 3, 2)], (32, 32, 1), "no exact max pooling"),
])
def test_what_a_chip_cannot_run_is_refused(target, arch, shape, message):
    space = spaces.Box(0, 255, shape, np.uint8)
    with pytest.raises(TargetError, match=message):
        QuantizedQNetwork(space, 3, hidden_sizes=(16,), target=target, conv_layers=arch)


def test_agent_errors_for_the_wrong_policy_or_frames():
    from rivc.agents import RIVC

    with pytest.raises(ValueError, match="use RIVC\\('CnnPolicy', env\\)"):
        RIVC("MlpPolicy", "rivc/PanTrack-v0")
    with pytest.raises(ValueError, match="use RIVC\\('MlpPolicy', env\\) for vector observations"):
        RIVC("CnnPolicy", "CartPole-v1")
    float_frames = gym.make("rivc/PanTrack-v0")
    float_frames = gym.wrappers.TransformObservation(
        float_frames, lambda o: o.astype(np.float32) / 255, spaces.Box(0.0, 1.0, (32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 pixels 0..255"):
        RIVC("CnnPolicy", float_frames)
    with pytest.raises(ValueError, match="unknown policy"):
        RIVC("ConvPolicy", "rivc/PanTrack-v0")
    with pytest.raises(ValueError, match="8-bit pixels"):
        conv_network((12, 12, 3), ARCHS[1][1], "rate", (4, 4, 6))
    network = conv_network((12, 12, 3), ARCHS[1][1], "akida", (4, 4, 8)).export()
    with pytest.raises(ValueError, match="uint8 pixels 0..255"):
        network.q_values(frames(2, (12, 12, 3)) / 255.0)
    with pytest.raises(ValueError, match="does not match the network"):
        network.q_values(frames(2, (3, 12, 12)))


def test_image_training_smoke_and_save_load(tmp_path):
    """A short CnnPolicy run on camera frames: the SNN acts, every conversion is exact, save/load keeps it."""
    from rivc.agents import RIVC

    env = gym.make("rivc/PanTrack-v0")
    model = RIVC("CnnPolicy", env, seed=0, learning_starts=200, buffer_size=2_000, batch_size=16,
                 policy_kwargs=dict(conv_arch=[(8, 3, 2), (8, 3, 2), (8, 3, 2)], net_arch=[32]))
    model.learn(600)
    assert model.num_conversions >= 100 and model.spiking_policy.network.is_image
    error = model.conversion_error()
    assert error.action_agreement == 1.0 and error.mean_abs_dq == 0.0 and error.spikes_per_action > 0
    obs = np.stack([env.reset(seed=i)[0] for i in range(4)])
    model.save(tmp_path / "cnn.zip")
    loaded = RIVC.load(tmp_path / "cnn.zip", env=env)
    np.testing.assert_array_equal(loaded.q_values(obs), model.q_values(obs))
    assert loaded.q_network.conv_specs == model.q_network.conv_specs


def test_saved_conv_networks_round_trip(tmp_path):
    network = conv_network((3, 16, 16), ARCHS[2][1], "akd1000", (4, 4, 8)).export()
    network.save(tmp_path / "net.npz")
    loaded = IntegerNetwork.load(tmp_path / "net.npz")
    obs = frames(8, (3, 16, 16))
    assert loaded.is_image and loaded.input.channels_first and loaded.obs_shape == (3, 16, 16)
    np.testing.assert_array_equal(loaded.q_values(obs), network.q_values(obs))


@pytest.mark.skipif(not HAS_AKIDA, reason="needs the akida package")
@pytest.mark.parametrize("target", ["akida", "akd1000"])
def test_cli_trains_exports_and_deploys_a_camera_policy(tmp_path, capsys, target):
    from rivc.agents.cli import main

    out = tmp_path / "run"
    assert main(["train", "--env", "rivc/PanTrack-v0", "--target", target, "--timesteps", "300", "--out", str(out),
                 "--eval-episodes", "2"]) == 0
    assert "(CnnPolicy)" in capsys.readouterr().out
    assert main(["export", str(out), "--backend", "akida", "--episodes", "1", "--out", str(out / "policy")]) == 0
    printed = capsys.readouterr().out
    assert "hardware-resident" in printed and "HRC" in printed and "identical actions" in printed and "100.00 %" in printed
    assert main(["deploy", str(out / "policy"), "--episodes", "2"]) == 0
    assert "equal it episode for episode" in capsys.readouterr().out


def test_the_vision_benchmark_trains_each_camera_run_with_the_settings_its_records_ran(monkeypatch):
    """The stored MobileReach camera records ran RIVC's defaults, before the camera task took MobileReach's tuned
    beta: a run added to them must too, and the state runs keep their tuned values."""
    import json
    import sys
    from pathlib import Path

    import rivc.agents.cli

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import vision

    seen = {}

    def fake_main(argv):
        options = dict(zip(argv[1::2], argv[2::2]))
        seen[options["--env"]] = options["--hyperparams"]
        (Path(options["--out"]) / "summary.json").write_text(json.dumps({"env": options["--env"]}))
        return 0

    monkeypatch.setattr(rivc.agents.cli, "main", fake_main)
    task = next(t for t in vision.TASKS if t.name == "MobileReach")
    for env_id in (task.image_env, task.state_env):
        assert vision.train(env_id, task, 0) == {"env": env_id}
    assert seen == {"rivc/MobileReachCamera-v0": "defaults", "rivc/MobileReach-v0": "tuned"}
