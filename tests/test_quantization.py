import numpy as np
import pytest
import torch
from gymnasium import spaces

from conftest import random_network, random_obs
from rivc import QuantConfig, QuantizedQNetwork
from rivc.quant import activation_step, clip_statistic, straight_through_clip, weight_codes


@pytest.mark.parametrize("field", ["weight_bits", "activation_bits", "input_bits"])
@pytest.mark.parametrize("value", [0, 9, -1, 2.5, True])
def test_bit_widths_out_of_range_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"QuantConfig\.{field}=.*1 to 8"):
        QuantConfig(**{field: value})


def test_levels():
    cfg = QuantConfig(weight_bits=4, activation_bits=4, input_bits=8)
    assert (cfg.weight_levels, cfg.activation_levels, cfg.input_levels) == (7, 15, 255)
    assert QuantConfig(weight_bits=1).weight_levels == 1


def test_weight_codes_symmetric_per_channel():
    w = np.array([[0.6, -1.0, 0.25], [0.0, 0.0, 0.0]], dtype=np.float32)
    codes, scale = weight_codes(w, 4)
    assert codes.tolist()[0] == [4.0, -7.0, 2.0]  # 0.6 * 7 = 4.2 -> 4, -1 -> -7, 1.75 -> 2
    assert codes.tolist()[1] == [0.0, 0.0, 0.0] and scale[1, 0] == 1.0
    binary, bscale = weight_codes(w, 1)
    assert set(np.unique(binary).tolist()) <= {-1.0, 1.0}
    assert bscale[0, 0] == pytest.approx(1.85 / 3) and bscale[1, 0] == 1.0


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_codes_stay_in_range_without_clipping(bits):
    levels = 2 ** (bits - 1) - 1
    w = np.random.default_rng(bits).normal(0, 1, (500, 300)).astype(np.float32) * np.logspace(-30, 30, 500)[:, None]
    w = w.astype(np.float32)
    w[:3] = np.array([8, 128, 4], dtype=np.float32)[:, None] * np.float32(2.0**-149)  # subnormal rows: codes 0
    codes, _ = weight_codes(w[:3], bits)
    assert not codes.any()
    w = w[3:]
    codes, scale = weight_codes(w, bits)
    assert np.abs(codes).max() == levels and np.all(np.abs(codes).max(axis=1) == levels)
    np.testing.assert_array_equal(codes, np.clip(np.rint(w / scale), -levels, levels))


def test_straight_through_gradients_reach_weights_and_clips(net):
    obs = torch.as_tensor(random_obs(64))
    net(obs).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.layers.parameters())
    assert all(p.grad is not None for p in net.clips)
    assert any(p.grad.abs().sum() > 0 for p in net.layers.parameters())


@pytest.mark.parametrize("bits", [(4, 4, 8), (8, 4, 8), (2, 2, 4), (8, 8, 8), (1, 1, 8), (4, 3, 6)])
def test_integer_export_equals_quantized_network(bits):
    net = random_network(config=QuantConfig(*bits), target="rate")
    obs = random_obs(2000)
    q_torch = net(torch.as_tensor(obs)).detach().numpy()
    np.testing.assert_array_equal(q_torch, net.export().q_values(obs).astype(np.float32))


@pytest.mark.parametrize("target", ["akida", "akd1000", "rate"])
def test_qat_learns_through_the_chip_arithmetic(target):
    # a few Adam steps on a regression target lower the loss of the exact (chip) forward
    net = random_network(config=QuantConfig(4, 4, 8), target=target, seed=3)
    obs = torch.as_tensor(random_obs(256, seed=4))
    goal = torch.as_tensor(np.random.default_rng(5).normal(0, 1, (256, 4)), dtype=torch.float32)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(net(obs), goal)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_export_save_load_roundtrip(tmp_path, net):
    exported = net.export()
    path = exported.save(tmp_path / "policy.npz")
    loaded = type(exported).load(path)
    obs = random_obs(100)
    np.testing.assert_array_equal(loaded.q_values(obs), exported.q_values(obs))
    assert loaded.config == exported.config
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_corrupt_and_foreign_files_raise_clear_errors(tmp_path, net):
    from rivc import CorruptFileError, IntegerNetwork

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(CorruptFileError, match="not a readable rivc integer network"):
        IntegerNetwork.load(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    with pytest.raises(CorruptFileError, match="not a valid rivc integer network"):
        IntegerNetwork.load(foreign)
    truncated = tmp_path / "truncated.npz"
    data = net.export().save(tmp_path / "ok.npz").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError):
        IntegerNetwork.load(truncated)
    with pytest.raises(FileNotFoundError):
        IntegerNetwork.load(tmp_path / "missing.npz")
    unit = random_network(hidden=(16, 8), activation_steps="unit").export().to_arrays()  # per-unit shifts (h0, h1)
    for key, bad, message in (("h0", np.zeros(16, np.int64), "shift >= 1"), ("h1", np.full(3, 4), "shape \\(8,\\)"),
                              ("h0", np.full(16, 99), "at most 40"), ("h1", np.full(8, 2.5), "not whole numbers")):
        arrays = {**unit, key: bad}
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(CorruptFileError, match=message):
            IntegerNetwork.load(tmp_path / "bad.npz")
    import json

    def rewritten(arrays, **changes):  # the file with its JSON header changed
        meta = {**json.loads(bytes(arrays["meta"]).decode()), **changes}
        np.savez(tmp_path / "bad.npz", **{**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)})
        return tmp_path / "bad.npz"

    plain = random_network(hidden=(16, 8)).export().to_arrays()
    dueling = random_network(hidden=(16, 8), head="dueling").export().to_arrays()
    assert [json.loads(bytes(a["meta"]).decode())["version"] for a in (plain, unit, dueling)] == [4, 5, 5]
    for arrays, changes, message in ((unit, {"version": 4}, "does not match what the file holds"),
                                     (dueling, {"version": 4}, "does not match what the file holds"),
                                     (plain, {"version": 5}, "does not match what the file holds"),
                                     (plain, {"version": 4, "head": "dueling"}, "does not match what the file holds"),
                                     (dueling, {"head": "duel"}, "head must be one of q, dueling"),
                                     (unit, {"shifts": [3, 3, None]}, "both a shift")):
        with pytest.raises(CorruptFileError, match=message):
            IntegerNetwork.load(rewritten(arrays, **changes))
    np.savez(tmp_path / "bad.npz", **{**plain, "h2": np.full(4, 3)})  # per-unit shifts on the head: refused
    with pytest.raises(CorruptFileError, match="does not take"):
        IntegerNetwork.load(tmp_path / "bad.npz")


def test_post_training_quantization_of_float_network():
    torch.manual_seed(0)
    space = spaces.Box(-1.0, 1.0, (8,), np.float32)
    fpnn = QuantizedQNetwork(space, 4, QuantConfig(8, 8, 8), qat=False, target="rate")
    obs = random_obs(2000)
    with pytest.raises(ValueError, match="calibration_obs"):
        fpnn.export()
    exported = fpnn.export(calibration_obs=obs)
    q_float = fpnn(torch.as_tensor(obs)).detach().numpy()
    # 8-bit PTQ of a float network stays close; 2-bit does not (the naive baseline's problem)
    assert np.mean(q_float.argmax(1) == exported.q_values(obs).argmax(1)) > 0.9
    coarse = QuantizedQNetwork(space, 4, QuantConfig(2, 2, 8), qat=False, target="rate")
    coarse.load_state_dict(fpnn.state_dict())
    err8 = np.abs(q_float - exported.q_values(obs)).mean()
    err2 = np.abs(q_float - coarse.export(calibration_obs=obs).q_values(obs)).mean()
    assert err2 > 3 * err8


def test_unbounded_dimensions_need_calibration_and_freeze():
    high = np.array([1.0, np.finfo(np.float32).max, np.inf], dtype=np.float32)
    space = spaces.Box(-high, high, dtype=np.float32)
    net = QuantizedQNetwork(space, 2)
    obs = np.random.default_rng(0).normal(0, 3, (500, 3)).astype(np.float32)
    with pytest.raises(RuntimeError, match=r"dimensions \[1, 2\] have no finite bounds"):
        net(torch.as_tensor(obs))
    net.calibrate_input_range(obs)
    exported = net.export()
    assert exported.input.low[0] == -1.0 and exported.input.high[0] == 1.0
    assert exported.input.low[1] < obs[:, 1].min() and exported.input.high[2] > obs[:, 2].max()
    # the range is frozen in the export and survives a state_dict round trip
    clone = QuantizedQNetwork(space, 2)
    clone.load_state_dict(net.state_dict())
    np.testing.assert_array_equal(clone.export().input.high, exported.input.high)
    np.testing.assert_allclose(clone(torch.as_tensor(obs)).detach(), net(torch.as_tensor(obs)).detach())


def test_user_obs_range():
    space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    net = QuantizedQNetwork(space, 2, obs_range=(-5.0, 5.0))
    assert not net.needs_calibration
    assert net.export().input.high.tolist() == [5.0, 5.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_observations_raise(net, bad):
    obs = random_obs(3)
    obs[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        net(torch.as_tensor(obs))
    with pytest.raises(ValueError, match="NaN or inf"):
        net.export().q_values(obs)


def test_observation_shape_mismatch_raises(net):
    with pytest.raises(ValueError, match=r"expected \(batch, 8\)"):
        net(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected \(8,\) or \(batch, 8\)"):
        net.export().q_values(np.zeros((3, 5)))


def test_non_flat_observation_space_rejected():
    with pytest.raises(ValueError, match="flat Box"):
        QuantizedQNetwork(spaces.Discrete(3), 2)


def test_rivc_integer_parts_import_without_torch():
    import subprocess
    import sys

    code = ("import sys; import rivc, rivc.neurochip; from rivc import IntegerNetwork, QuantConfig; "
            "import rivc.neurochip.if_sim; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_limits_for_chips():
    from rivc.chip import quantize_bias, requantization, split_bias

    bias = np.array([0, 5, -127, 128, -300, 1000, 40001])
    limited = quantize_bias(bias, 8)
    mantissa, shifts = split_bias(limited, 8)  # what the Akida backend programs: exact, smallest shift
    np.testing.assert_array_equal(mantissa << shifts, limited)
    assert np.all(np.abs(mantissa) <= 127) and list(shifts) == [0, 0, 0, 1, 2, 3, 9]
    for value, original in zip(limited, bias):
        shift = 0
        while abs(value >> shift) > 127 or ((value >> shift) << shift) != value:
            shift += 1
        assert -127 <= value >> shift <= 127 and ((value >> shift) << shift) == value
        assert abs(value - original) <= max(1, abs(original) / 127)  # half a step of the int8 mantissa
    np.testing.assert_array_equal(quantize_bias(bias, None), bias)
    ratio = np.array([0.3, 1.7, 255.9 / 256])
    multiplier, shift = requantization(ratio, 1.0, bits=8)
    assert multiplier.max() < 256 and shift >= 1
    np.testing.assert_allclose(multiplier / 2.0**shift, ratio, rtol=2 / 128)


def test_per_unit_shifts_keep_every_units_scale():
    # per-unit steps make a layer's ratios (accumulator unit over activation step) span 1e8 here: one shift rounds
    # the small ones' scales to 0, a shift per unit (Akida's output_shift is per channel) keeps 8 bits for each
    from rivc.chip import requantization

    ratio = np.random.default_rng(0).permutation(np.logspace(-6, 2, 300))
    one_scale, one_shift = requantization(ratio, 1.0, bits=8)
    assert isinstance(one_shift, int) and (one_scale == 0).mean() > 0.5
    scale, shift = requantization(ratio, np.ones(300), bits=8)
    assert shift.shape == (300,) and shift.min() >= 1
    representable = ratio * 2 < 255.5  # below 2**7 a shift >= 1 holds the ratio
    assert np.all((scale[representable] >= 128) & (scale[representable] <= 255))
    np.testing.assert_allclose(scale[representable] / 2.0 ** shift[representable], ratio[representable], rtol=1 / 256)
    assert np.all(scale[~representable] == 255) and np.all(shift[~representable] == 1)  # saturates: the codes do too
    steps = np.linspace(0.5, 2.0, 300)  # the steps divide: the same as the ratios given whole
    np.testing.assert_array_equal(requantization(ratio * steps, steps, bits=8)[1], shift)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_split_bias_equals_a_brute_force_search(bits):
    from rivc.chip import split_bias

    top = 2 ** (bits - 1) - 1
    bias = np.concatenate([np.arange(-5000, 5001), np.random.default_rng(0).integers(-2**40, 2**40, 5000)])
    mantissa, shift = split_bias(bias, bits)
    for value, m, s in zip(bias[::7], mantissa[::7], shift[::7]):
        expected = 0
        while abs(int(value)) > top << expected:  # the smallest shift whose mantissa range holds |bias|
            expected += 1
        nearest = (int(value) + ((1 << expected) >> 1)) >> expected  # nearest mantissa, half up
        assert (s, m) == (expected, max(-top, min(top, nearest))), value


def clipping_network(target: str, clip_gradient: str, steps: str, head: str) -> QuantizedQNetwork:
    """A 2-bit-activation network whose clips sit where some units clip: the clips get gradients too."""
    net = random_network(config=QuantConfig(4, 2, 8), target=target, seed=7, activation_steps=steps, head=head)
    net.clip_gradient = clip_gradient
    with torch.no_grad():
        for clip in net.clips:
            clip.fill_(0.05)
    return net


SURROGATE_CASES = [("layer", "q"), ("unit", "q"), ("layer", "dueling")]  # (activation steps, head)


@pytest.mark.parametrize("steps, head", SURROGATE_CASES)
@pytest.mark.parametrize("target", ["akida", "akd1000", "rate"])
def test_values_are_the_forwards_q_values_bit_for_bit(target, steps, head):
    # what a value target reads (QuantizedQNetwork.values: on an MLP on the CPU the fast path's exact pass alone)
    # against the general path's forward without gradients; the float network's values are its forward's
    net = clipping_network(target, "pact", steps, head)
    obs = torch.as_tensor(random_obs(64, seed=3))
    net.fused_surrogate = False
    with torch.no_grad():
        expected = net(obs).numpy()
    net.fused_surrogate = True
    values = net.values(obs)
    assert isinstance(values, np.ndarray) and values.dtype == np.float32
    np.testing.assert_array_equal(values, expected)
    net.qat = False
    with torch.no_grad():
        np.testing.assert_array_equal(net.values(obs), net(obs).numpy())


@pytest.mark.parametrize("steps, head", SURROGATE_CASES)
@pytest.mark.parametrize("clip_gradient", ["pact", "lsq"])
@pytest.mark.parametrize("target", ["akida", "akd1000", "rate"])
def test_fused_surrogate_gradients_equal_the_composed_estimators(target, clip_gradient, steps, head):
    # the MLP's one-node surrogate (_DenseSurrogate) against autograd through the per-op estimators
    net = clipping_network(target, clip_gradient, steps, head)
    obs = torch.as_tensor(random_obs(256, seed=8))
    upstream = torch.as_tensor(np.random.default_rng(9).normal(0, 1, (256, 4)), dtype=torch.float32)
    results = []
    for fused in (True, False):
        net.fused_surrogate = fused
        net.zero_grad()
        q = net(obs)
        (q * upstream).sum().backward()
        results.append((q.detach(), [p.grad.clone() for p in net.parameters()]))
    (q_fused, grads_fused), (q_composed, grads_composed) = results
    torch.testing.assert_close(q_fused, q_composed, rtol=0, atol=0)
    assert len(grads_fused) == len(grads_composed) == 2 * len(net.layers) + len(net.clips)
    for fused, composed in zip(grads_fused, grads_composed):
        torch.testing.assert_close(fused, composed)
    assert all(float(c.grad.abs().sum()) > 0 for c in net.clips)
    if head == "dueling":  # the value row's bias takes every action's gradient
        assert float(net.layers[-1].bias.grad[0]) == pytest.approx(float(upstream.sum()), rel=1e-5)
    if steps == "unit":  # a clip per unit: its own column's gradient
        assert all(c.grad.unique().numel() > 2 for c in net.clips)
    below = slice(None) if steps == "layer" else slice(0, 3)
    with torch.no_grad():
        net.clips[0].view(-1)[below].fill_(1e-6)  # below MIN_CLIP: clamped, so no gradient on either path
    for fused in (True, False):
        net.fused_surrogate = fused
        net.zero_grad()
        (net(obs) * upstream).sum().backward()
        assert float(net.clips[0].grad.view(-1)[below].abs().max()) == 0.0


@pytest.mark.parametrize("levels", [3, 15, 255])
def test_lsq_clip_gradient_is_autograd_of_lsqs_quantizer(levels):
    # LSQ written as its paper states it, differentiated by autograd: y = s * round(clamp(z / s, 0, L)) with the
    # rounding straight through and the step s = clip / L learned at gradient scale 1 / sqrt(N L)
    rng = np.random.default_rng(levels)
    pre = torch.as_tensor(rng.normal(0.3, 1.0, (64, 24)))  # some below 0, some above the clip
    upstream = torch.as_tensor(rng.normal(0, 1, (64, 24)))
    clip_value = 1.25
    scale = 1 / np.sqrt(24 * levels)
    clip = torch.tensor(clip_value, dtype=torch.float64, requires_grad=True)
    clip_scaled = clip * scale + (clip - clip * scale).detach()  # LSQ's gradient scale: the value unchanged
    z = pre.clone().requires_grad_(True)
    step = clip_scaled / levels
    u = z / step
    u = torch.clamp(u, 0, levels)
    y = (u + (torch.round(u) - u).detach()) * step
    (y * upstream).sum().backward()
    codes = torch.clamp(torch.round(pre / activation_step(clip_value, levels)), 0, levels)
    ours_z = pre.clone().requires_grad_(True)
    ours_clip = torch.tensor(clip_value, dtype=torch.float32, requires_grad=True)
    value = straight_through_clip(ours_z, ours_clip, (codes * activation_step(clip_value, levels)).float(), pre,
                                  "lsq", codes, levels)
    (value.double() * upstream).sum().backward()
    torch.testing.assert_close(ours_z.grad, z.grad)
    assert float(ours_clip.grad) == pytest.approx(float(clip.grad), rel=1e-5)
    inside = (pre > 0) & (pre < clip_value)
    assert 0 < int(inside.sum()) < pre.numel() and bool((pre >= clip_value).any())  # all three regions present
    pact_clip = torch.tensor(clip_value, dtype=torch.float32, requires_grad=True)
    (straight_through_clip(pre.clone().requires_grad_(True), pact_clip, value.detach(), pre).double() * upstream).sum().backward()
    assert float(pact_clip.grad) == pytest.approx(float((upstream * (pre >= clip_value)).sum()), rel=1e-5)
    assert float(pact_clip.grad) * scale != pytest.approx(float(ours_clip.grad), rel=1e-3)  # the rounding term counts


@pytest.mark.parametrize("levels", [1, 15, 255])
def test_mse_clip_statistic_is_the_least_squares_candidate(levels):
    # brute force over the same candidates, written plainly: the clip whose quantization of relu(z) errs least
    rng = np.random.default_rng(levels)
    pre = np.concatenate([rng.uniform(-1, 1, 2400), rng.exponential(1.0, 1600)])  # a long tail: its top is rare
    pre = rng.permutation(pre).reshape(40, 100)  # a batch of 40 samples of 100 units: all read
    top = pre.max()
    chosen = clip_statistic(pre, levels, "mse")

    def least_squares(values, top):
        def error(clip):
            step = clip / levels
            return sum((min(round(v / step), levels) * step - v) ** 2 for v in values[values > 0])
        return min((top * k / 32 for k in range(1, 33)), key=error)
    assert chosen == pytest.approx(least_squares(pre, top), rel=1e-6)
    assert chosen < 0.8 * top or levels == 255  # below 8 bits the tail is clipped
    assert clip_statistic(pre, levels, "max") == top
    assert clip_statistic(torch.as_tensor(pre), levels, "mse") == chosen  # torch tensors read the same
    assert clip_statistic(-np.abs(pre), levels, "mse") == -np.abs(pre).min()  # no positive value: the max (a dead layer)
    many = rng.exponential(1.0, (500, 100))  # more values than it reads: its first whole samples, under its top
    assert clip_statistic(many, levels, "mse") == pytest.approx(least_squares(many[:41], many.max()), rel=1e-6)
    for values in (pre, -np.abs(pre)):  # an unknown statistic is refused even where every value is <= 0
        with pytest.raises(ValueError, match="one of max, mse"):
            clip_statistic(values, levels, "p99")


@pytest.mark.parametrize("target, bits", [("akida", (4, 4, 8)), ("rate", (1, 1, 8)), ("akd1000", (2, 2, 8))])
@pytest.mark.parametrize("where, value", [("weight", np.nan), ("weight", np.inf), ("weight", -np.inf),
                                          ("bias", np.nan), ("bias", np.inf), ("bias", 1e30)])
def test_diverged_parameters_are_refused_at_quantization(target, bits, where, value):
    # a diverged update must not become a policy: NaN/inf weights (even at 1 bit, where the codes stay +-1
    # and only the scale goes bad), and biases that are not finite or overflow the integer codes
    net = random_network(config=QuantConfig(*bits), target=target)
    with torch.no_grad():
        getattr(net.layers[1], where).view(-1)[3] = value
    with pytest.raises(ValueError, match="layer 1 has non-finite"):
        net(torch.as_tensor(random_obs(4)))
    with pytest.raises(ValueError, match="layer 1 has non-finite"):
        net.export()


@pytest.mark.parametrize("steps, head", SURROGATE_CASES)
@pytest.mark.parametrize("clip_gradient", ["pact", "lsq"])
@pytest.mark.parametrize("target", ["akida", "akd1000", "rate"])
def test_huber_loss_backward_writes_autograds_gradients_bit_for_bit(monkeypatch, target, clip_gradient, steps, head):
    # the agent's update without autograd's graph: the gradients smooth_l1_loss(...).backward() leaves through the
    # fused surrogate, bit for bit, at batch sizes whose 1 / B is not a power of two, errors either side of beta = 1
    import rivc.fast_path as fast_path

    net = clipping_network(target, clip_gradient, steps, head)
    for batch in (64, 37):
        rng = np.random.default_rng(batch)
        obs = torch.as_tensor(random_obs(batch, seed=8))
        actions = torch.as_tensor(rng.integers(0, net.n_actions, (batch, 1)))
        with torch.no_grad():
            taken = net(obs).gather(1, actions).squeeze(1)
        targets = taken + torch.as_tensor(rng.normal(0, 1.5, batch), dtype=torch.float32)
        assert ((targets - taken).abs() > 1).any() and ((targets - taken).abs() < 1).any()
        net.zero_grad(set_to_none=True)
        loss = torch.nn.functional.smooth_l1_loss(net(obs).gather(1, actions).squeeze(1), targets)
        loss.backward()
        expected = [p.grad.clone() for p in net.parameters()]
        for p in net.parameters():
            p.grad = torch.full_like(p, 7.0)  # overwritten, not accumulated
        monkeypatch.setattr(fast_path._DenseSurrogate, "apply", None)  # no autograd node on this path
        taken_as = actions.reshape(-1) if batch == 37 else actions  # actions [B] or [B, 1]
        assert net.huber_loss_backward(obs, taken_as, targets) == pytest.approx(loss.item(), rel=1e-6)
        monkeypatch.undo()
        for got, want in zip([p.grad for p in net.parameters()], expected):
            assert torch.equal(got, want)
    net.fused_surrogate = False  # the general path: autograd's graph, the same loss
    assert net.huber_loss_backward(obs, actions, targets) == pytest.approx(loss.item(), rel=1e-6)
    for got, want in zip([p.grad for p in net.parameters()], expected):
        torch.testing.assert_close(got, want)


def test_huber_loss_backward_leaves_tracked_clips_without_gradient():
    net = random_network(config=QuantConfig(4, 4, 8), seed=3)
    for clip in net.clips:
        clip.requires_grad_(False)  # CalibrationConfig(clip_decay=...): the clips follow the activations
        clip.grad = torch.ones_like(clip)
    obs = torch.as_tensor(random_obs(16, seed=1))
    net.huber_loss_backward(obs, torch.zeros(16, dtype=torch.int64), torch.zeros(16))
    assert all(clip.grad is None for clip in net.clips)
    assert all(layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0 for layer in net.layers)


@pytest.mark.parametrize("fused", [True, False])
def test_clip_tracking_follows_the_largest_pre_activation(fused):
    # both forward paths record each hidden layer's largest exact pre-activation (acc * scale) on a training batch
    net = random_network(seed=3, clip=0.3)  # activations past the clips: the recorded maxima are not capped there
    net.fused_surrogate = fused
    obs = torch.as_tensor(random_obs(64, seed=4))
    net(obs).sum().backward()
    assert net.batch_clip_targets == [0.0, 0.0]  # recorded only when asked (the agent asks with clip_decay)
    net.tracked_statistic = "max"
    with torch.no_grad():
        net(obs)  # acting and measuring record nothing
    assert net.batch_clip_targets == [0.0, 0.0]
    net(obs).sum().backward()
    exported = net.export()
    codes, top, spread = exported.input_codes(obs.numpy()), [], []
    for layer, precision in zip(exported.layers[:-1], net.precision):
        acc = codes @ layer.weights.T.astype(np.float64) + layer.bias
        top.append(float((acc * layer.scale).max()))
        spread.append(clip_statistic(acc * layer.scale, precision.levels, "mse"))
        codes = layer.activation(acc)
    assert net.batch_clip_targets == pytest.approx(top, rel=1e-12)
    net.tracked_statistic = "mse"  # the least-squares clip of the same batch, below its largest value
    net(obs).sum().backward()
    assert net.batch_clip_targets == pytest.approx(spread, rel=1e-6) and all(s < t for s, t in zip(spread, top))
    net.tracked_statistic = "max"
    net(obs).sum().backward()
    assert all(t > 0.3 for t in top)
    before = [float(c.detach()) for c in net.clips]
    net.track_activation_clips(0.75)
    assert [float(c.detach()) for c in net.clips] == pytest.approx([0.75 * b + 0.25 * t for b, t in zip(before, top)], rel=1e-6)
    net.track_activation_clips(0.0)
    assert [float(c.detach()) for c in net.clips] == pytest.approx(top, rel=1e-6)
    q = net(obs).detach()  # the new clips are the chip's: the export still equals the network bit for bit
    np.testing.assert_array_equal(q.numpy(), net.export().q_values(obs.numpy()).astype(np.float32))


@pytest.mark.parametrize("statistic", ["max", "mse"])
def test_per_unit_clip_statistic_is_each_units_own(statistic):
    rng = np.random.default_rng(4)
    pre = rng.normal(0, 1, (300, 12)) * np.logspace(-2, 1, 12)  # units 1,000 times apart
    pre[:, 5] = -np.abs(pre[:, 5])  # a dead unit: its max, as a layer's
    per_unit = clip_statistic(pre, 15, statistic, per_unit=True)
    assert per_unit.shape == (12,)
    np.testing.assert_allclose(per_unit, [clip_statistic(pre[:, [j]], 15, statistic) for j in range(12)], rtol=1e-6)
    np.testing.assert_array_equal(clip_statistic(torch.as_tensor(pre), 15, statistic, per_unit=True), per_unit)


@pytest.mark.parametrize("fused", [True, False])
def test_per_unit_clips_track_each_units_largest_pre_activation(fused):
    net = random_network(seed=3, clip=0.3, hidden=(16, 8), activation_steps="unit")
    net.fused_surrogate, net.tracked_statistic = fused, "max"
    obs = torch.as_tensor(random_obs(64, seed=4))
    net(obs).sum().backward()
    exported = net.export()
    codes, top = exported.input_codes(obs.numpy()), []
    for layer in exported.layers[:-1]:
        acc = layer.accumulate(codes)
        top.append((acc * layer.scale).max(axis=0))
        codes = layer.activation(acc)
    for recorded, expected in zip(net.batch_clip_targets, top):
        np.testing.assert_allclose(recorded, expected, rtol=1e-12)
    net.track_activation_clips(0.5)
    for clip, expected in zip(net.clips, top):
        np.testing.assert_allclose(clip.detach().numpy(), 0.5 * 0.3 + 0.5 * np.maximum(expected, 1e-4), rtol=1e-6)
    np.testing.assert_array_equal(net(obs).detach().numpy(), net.export().q_values(obs.numpy()).astype(np.float32))


def test_per_unit_steps_are_refused_where_they_are_not_built():
    with pytest.raises(ValueError, match="activation_steps must be one of layer, unit"):
        random_network(activation_steps="channel")
    space = spaces.Box(0, 255, (16, 16, 1), np.uint8)
    with pytest.raises(ValueError, match="built for dense networks"):
        QuantizedQNetwork(space, 3, conv_layers=[(4, 3, 1, 1)], activation_steps="unit")


def test_dueling_q_values_are_the_same_bits_in_numpy_and_torch_and_their_gradient_is_autograds():
    from rivc.integer_net import dueling_gradient, dueling_q_values

    rows = np.random.default_rng(3).normal(0, 50, (200, 7))  # a value, six advantages
    q = dueling_q_values(rows)
    np.testing.assert_array_equal(dueling_q_values(torch.as_tensor(rows)).numpy(), q)
    np.testing.assert_allclose(q, rows[:, :1] + rows[:, 1:] - rows[:, 1:].mean(axis=1, keepdims=True), rtol=1e-13)
    values = torch.tensor(rows, requires_grad=True)
    upstream = np.random.default_rng(4).normal(0, 1, (200, 6))
    (dueling_q_values(values) * torch.as_tensor(upstream)).sum().backward()
    np.testing.assert_allclose(dueling_gradient(upstream), values.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_heads_are_refused_where_they_do_not_fit():
    with pytest.raises(ValueError, match="head must be one of q, dueling"):
        random_network(head="duel")
    with pytest.raises(ValueError, match="two or more actions"):
        random_network(n_actions=1, head="dueling")


def test_clip_reads_follow_copies_reloads_and_reassigned_clips():
    # the fused forward and export read the clips through cached numpy views: a deep copy, an unpickled module,
    # a state dict assigned in place and a reassigned .data must not leave them on the old storage
    import copy
    import pickle

    obs = torch.as_tensor(random_obs(32, seed=5))

    def agree(net: QuantizedQNetwork, clip: float) -> None:
        assert [float(c.detach()) for c in net.clips] == pytest.approx([clip] * len(net.clips))
        with torch.no_grad():
            fused = net(obs)
            net.fused_surrogate = False
            general = net(obs)
            net.fused_surrogate = True
        np.testing.assert_array_equal(fused.numpy(), general.numpy())
        np.testing.assert_array_equal(fused.numpy(), net.export().q_values(obs.numpy()).astype(np.float32))
        assert net.export().layers[0].requant is not None

    net = random_network(seed=6)
    net(obs)  # views made
    copied = copy.deepcopy(net)
    with torch.no_grad():
        for clip in copied.clips:
            clip.fill_(0.5)
    agree(copied, 0.5)
    agree(net, 2.0)
    unpickled = pickle.loads(pickle.dumps(net))
    with torch.no_grad():
        for clip in unpickled.clips:
            clip.fill_(0.7)
    agree(unpickled, 0.7)
    state = {k: v.clone() for k, v in copied.state_dict().items()}
    net.load_state_dict(state, assign=True)
    agree(net, 0.5)
    for clip in net.clips:
        clip.data = torch.tensor(0.9)
    net.clear_quantization_cache()  # as after any .data edit
    agree(net, 0.9)


@pytest.mark.parametrize("target", ["akida", "akd1000", "rate"])
def test_biases_kept_as_they_are_match_quantize_bias(target):
    # the exporter skips quantize_bias below max_bias_kept_as_is: the two must describe one bias format
    from rivc.chip import get_target, quantize_bias

    chip = get_target(target)
    limit = chip.max_bias_kept_as_is
    edge = np.array([0, 1, -1, 100, -100] + ([limit, -limit] if np.isfinite(limit) else [2**40, -2**40]), dtype=np.int64)
    np.testing.assert_array_equal(quantize_bias(edge, chip.bias_bits, chip.bias_limit), edge)
    if np.isfinite(limit):
        beyond = np.array([limit + 2, -limit - 2], dtype=np.int64)  # odd past a mantissa, or past the limit
        assert np.all(quantize_bias(beyond, chip.bias_bits, chip.bias_limit) != beyond)  # the threshold is tight
    net = random_network(seed=2, target=target)
    with torch.no_grad():
        net.layers[0].bias[:3] = torch.tensor([1e4, -1e4, 3.0])  # codes past the mantissa range and the limit
    exported = net.export()
    obs = random_obs(32, seed=3)
    with torch.no_grad():
        np.testing.assert_array_equal(net(torch.as_tensor(obs)).numpy(), exported.q_values(obs).astype(np.float32))
    bias = exported.layers[0].bias
    np.testing.assert_array_equal(quantize_bias(bias, chip.bias_bits, chip.bias_limit), bias)  # the chip holds them


@pytest.mark.parametrize("target, config", [("akida", QuantConfig(4, 4, 8)), ("akida", QuantConfig(8, 8, 8)),
                                            ("akd1000", QuantConfig(4, 4, 8)), ("rate", QuantConfig(8, 8, 8)),
                                            ("akida", QuantConfig.parse_layers("8/8,8/4,4/32"))])
def test_int8_products_equal_the_float_products(monkeypatch, target, config):
    """The exact path's int8 x int8 -> int32 products (where torch has them) give the Q-values and gradients of its
    float products, bit for bit; layers whose codes do not fit int8 (the rate target's 255-level activations) take
    the float path."""
    import rivc.fast_path as fast_path

    if not fast_path.INT8_PRODUCTS:
        pytest.skip("torch has no int8 matrix product on this machine: the float path is the only one")
    obs = torch.as_tensor(random_obs(512, seed=3))
    upstream = torch.as_tensor(np.random.default_rng(4).normal(0, 1, (512, 4)), dtype=torch.float32)
    results = []
    monkeypatch.setattr(fast_path, "INT8_MIN_PRODUCTS", 0)  # every product that fits int8 takes it, however small
    for int8 in (True, False):
        monkeypatch.setattr(fast_path, "INT8_PRODUCTS", int8)
        net = random_network(config=config, target=target, seed=11)
        with torch.no_grad():
            for clip in net.clips:
                clip.fill_(0.3)
        q = net(obs)
        (q * upstream).sum().backward()
        taken = [net.quantize_layer(0, net._input_step_value)._dense_int8 is not None]
        results.append((q.detach(), [p.grad.clone() for p in net.parameters()], taken))
    (q8, grads8, taken8), (qf, gradsf, takenf) = results
    torch.testing.assert_close(q8, qf, rtol=0, atol=0)
    for a, b in zip(grads8, gradsf):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert taken8 == [True] and takenf == [False]  # 8-bit input codes fit int8 on every target
    hidden = random_network(config=config, target=target, seed=11).export().precision[0].levels
    layer = net.quantize_layer(1, 0.01, 1.0 if len(net.layers) > 2 else None)
    if hidden > 127:
        monkeypatch.setattr(fast_path, "INT8_PRODUCTS", True)
        assert layer._dense_int8 is None  # 255-level codes do not fit int8: the float path


@pytest.mark.parametrize("target", ["akida", "akd1000"])
def test_per_unit_steps_give_each_unit_its_levels_and_the_next_layer_their_values(target):
    # a layer whose units' ranges differ 30 times: one step per layer leaves the narrow units a few of the 15 codes,
    # a step per unit gives each its 15; the next layer, its weights folded onto the codes, reads what they stand for
    obs = random_obs(512, seed=2)
    widths = torch.logspace(-1.5, 0, 32)[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    top_codes = {}
    for steps in ("layer", "unit"):
        net = random_network(hidden=(32, 16), seed=5, target=target, activation_steps=steps)
        with torch.no_grad():
            net.layers[0].weight.mul_(widths[:, None])
            net.layers[0].bias.mul_(widths)
        net.calibrate_activation_clips(obs)
        network = net.export()
        hidden, _ = network.forward_codes(obs)
        top_codes[steps] = hidden[0].max(axis=0)
    assert np.median(top_codes["layer"]) <= 5 and top_codes["unit"].min() >= 14
    # unit steps: the first layer's codes are its pre-activations over each unit's own step
    clips = net.clips[0].detach().numpy()
    steps = activation_step(clips, 15)
    first, second = network.layers[:2]
    pre = first.accumulate(network.input_codes(obs)) * first.scale
    assert np.all(np.abs(hidden[0] - np.clip(pre / steps, 0, 15)) <= 0.5 + 0.1)
    # the second layer's accumulators stand for W @ (codes * step) + b within its weights' rounding
    exact = (hidden[0] * steps) @ net.layers[1].weight.detach().double().numpy().T + net.layers[1].bias.detach().numpy()
    got = second.accumulate(hidden[0]) * second.scale
    bound = second.scale * (hidden[0].sum(axis=1, keepdims=True) + 1) / 2
    assert np.all(np.abs(got - exact) <= bound) and np.abs(got - exact).mean() < 0.2 * bound.mean()
