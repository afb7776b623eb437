import numpy as np
import pytest

from conftest import random_network, random_obs
from rivc import QuantConfig, conversion_error, network_conversion_error
from rivc.neurochip import available_backends, make_backend

CASES = [((4, 4, 8), None), ((4, 4, 8), 7), ((4, 4, 8), 40), ((8, 4, 8), None), ((2, 2, 4), None),
         ((2, 2, 4), 9), ((8, 8, 8), None), ((1, 1, 8), None), ((4, 3, 6), None)]


@pytest.mark.parametrize("bits,timesteps", CASES)
def test_rate_coded_fast_path_equals_snntorch_reference_spike_for_spike(bits, timesteps):
    exported = random_network(config=QuantConfig(*bits), hidden=(32, 24), seed=sum(bits), target="rate").export()
    obs = random_obs(128, seed=1)
    fast = make_backend("snntorch", timesteps=timesteps).convert(exported)
    reference = make_backend("snntorch", timesteps=timesteps, exact_reference=True).convert(exported)
    q_fast, counts_fast = fast.run(obs)
    counts_fast = [c.copy() for c in counts_fast]
    q_reference, counts_reference = reference.run(obs)
    assert len(counts_fast) == len(counts_reference) == 2
    for cf, cr in zip(counts_fast, counts_reference):
        np.testing.assert_array_equal(cf, cr)  # cumulative spike counts at every time step
    np.testing.assert_array_equal(q_fast, q_reference)
    assert counts_fast[0][-1].sum() > 0  # the test exercises spiking


@pytest.mark.parametrize("steps", ["layer", "unit"])  # per unit: each unit's own shift, one threshold (rate_coding)
def test_rate_coded_first_layer_spike_counts_equal_integer_codes_at_default_T(steps):
    net = random_network(target="rate", activation_steps=steps)
    net.calibrate_activation_clips(random_obs(256, seed=1))
    exported = net.export()
    if steps == "unit":
        assert np.unique(exported.layers[0].requant.shift).size > 1
    obs = random_obs(500)
    hidden_codes, _ = exported.forward_codes(obs)
    _, counts = make_backend("snntorch").convert(exported).run(obs)
    np.testing.assert_array_equal(counts[0][-1], hidden_codes[0])


def test_currents_above_threshold_fire_every_step():
    # a strong input saturates: L spikes in L steps, the excess carries over
    exported = random_network(clip=0.05, target="rate").export()
    _, counts = make_backend("snntorch").convert(exported).run(random_obs(64))
    assert counts[0][-1].max() == exported.config.activation_levels


@pytest.mark.parametrize("target", ["akida", "akd1000"])
def test_exact_targets_fire_their_codes_at_every_layer(target):
    exported = random_network(hidden=(64, 48, 32), target=target).export()
    obs = random_obs(1000)
    policy = make_backend("snntorch").convert(exported)
    _, counts = policy.run(obs)
    hidden_codes, _ = exported.forward_codes(obs)
    for layer_counts, codes in zip(counts, hidden_codes):
        np.testing.assert_array_equal(layer_counts, codes)
    np.testing.assert_array_equal(policy.q_values(obs), exported.q_values(obs))
    assert policy.latency_steps == 3 * exported.config.activation_levels
    with pytest.raises(ValueError, match="applies only to the rate-coded target"):
        make_backend("snntorch", timesteps=40).convert(exported)


def test_rate_coded_snn_agreement_on_random_networks():
    # Later layers see spike trains: a neuron may fire on input that later input cancels, so
    # counts overshoot by one now and then. Measured on random 2x64 MLPs (4-bit): 85-100 %,
    # mean about 92 %; random networks have tiny action gaps, trained RIVC networks large ones.
    agreements = []
    for seed in range(5):
        net = random_network(config=QuantConfig(4, 4, 8), seed=seed, target="rate")
        policy = make_backend("snntorch").convert(net)
        agreements.append(network_conversion_error(net, policy, random_obs(2000, seed=seed)).action_agreement)
    assert np.mean(agreements) >= 0.9 and min(agreements) >= 0.8, agreements
    exported = random_network(seed=1, target="rate").export()
    _, counts = make_backend("snntorch").convert(exported).run(random_obs(2000, seed=1))
    overshoot = counts[1][-1] - exported.forward_codes(random_obs(2000, seed=1))[0][1]
    assert set(np.unique(overshoot)) <= {0.0, 1.0}  # here the errors are single extra spikes


@pytest.mark.parametrize("target", ["akida", "rate"])
def test_predict_returns_greedy_actions_and_spike_counts(net, target):
    exported = random_network(target=target).export()
    policy = make_backend("snntorch").convert(exported)
    obs = random_obs(10)
    actions = policy.predict(obs)
    assert actions.shape == (10,) and actions.dtype.kind == "i"
    np.testing.assert_array_equal(actions, policy.q_values(obs).argmax(1))
    assert policy.q_values(obs[0]).shape == (1, 4)
    q, spikes = policy.q_values_and_spikes(obs)
    hidden_codes, _ = exported.forward_codes(obs)
    if target == "akida":  # an exact neuron emits its code
        assert spikes == sum(codes.sum() for codes in hidden_codes) / 10
    assert spikes > 0


def test_backend_registry_and_errors(net):
    assert "snntorch" in available_backends()
    with pytest.raises(ValueError, match="unknown backend 'loihi'; available: .*snntorch"):
        make_backend("loihi")
    with pytest.raises(ValueError, match="timesteps must be a positive integer"):
        make_backend("snntorch", timesteps=0)
    with pytest.raises(TypeError, match="cannot convert"):
        make_backend("snntorch").convert(object())


def test_conversion_error_metric():
    ref = np.array([[1.0, 2.0], [3.0, 0.0]])
    err = conversion_error(ref, np.array([[1.5, 2.0], [0.0, 1.0]]), spikes_per_action=12.0)
    assert err.action_agreement == 0.5 and err.mean_abs_dq == pytest.approx((0.5 + 0 + 3 + 1) / 4)
    assert set(err.as_log()) == {"conversion/action_agreement", "conversion/mean_abs_dq", "snn/spikes_per_action"}
    mean = type(err).mean([err, conversion_error(ref, ref, spikes_per_action=4.0)])
    assert (mean.action_agreement, mean.spikes_per_action) == (0.75, 8.0)
    with pytest.raises(ValueError):
        conversion_error(ref, ref[:1])
