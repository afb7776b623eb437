import sys

import numpy as np
import pytest

from conftest import random_network, random_obs
from rivc.neurochip import make_backend
from rivc import QuantConfig

pytest.importorskip("akida")

from rivc.neurochip.akida_backend import AkidaBackend, AkidaConversionError, AkidaPolicy, mapping_report  # noqa: E402

BITS = [(4, 4, 8), (8, 4, 8), (2, 2, 8), (4, 1, 8), (1, 1, 8), (8, 2, 8)]


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("seed", range(2))
def test_akida_engine_equals_integer_reference_exactly(bits, seed):
    backend = make_backend("akida")
    exported = random_network(config=QuantConfig(*bits), seed=seed).export(**backend.export_options)
    obs = random_obs(500, seed=seed)
    policy = backend.convert(exported)
    assert isinstance(policy, AkidaPolicy)
    np.testing.assert_array_equal(policy.q_values(obs), exported.q_values(obs))
    np.testing.assert_array_equal(policy.predict(obs), exported.q_values(obs).argmax(1))


def test_converting_a_torch_network_applies_the_export_options():
    net = random_network()
    policy = make_backend("akida").convert(net)
    obs = random_obs(200)
    np.testing.assert_array_equal(policy.q_values(obs), net.export(multiplier_bits=8, bias_bits=8).q_values(obs))
    assert policy.network.layers[0].multiplier.max() <= 255


def test_what_akida_cannot_express_is_named():
    backend = make_backend("akida")
    with pytest.raises(AkidaConversionError, match="layer 0: .*multiplier_bits=8|layer 0: bias .*bias_bits=8"):
        backend.convert(random_network().export())  # 16-bit multipliers, unrestricted biases
    with pytest.raises(AkidaConversionError, match="activation_bits=8"):
        backend.convert(random_network(config=QuantConfig(4, 8, 8)).export(multiplier_bits=8, bias_bits=8))
    with pytest.raises(AkidaConversionError, match="input_bits=6"):
        backend.convert(random_network(config=QuantConfig(4, 4, 6)).export(multiplier_bits=8, bias_bits=8))
    with pytest.raises(AkidaConversionError, match="weight_bits=3"):
        backend.convert(random_network(config=QuantConfig(3, 4, 8)).export(multiplier_bits=8, bias_bits=8))


def test_mapping_report_on_virtual_devices():
    exported = random_network(hidden=(32, 32)).export(multiplier_bits=8, bias_bits=8)
    report = mapping_report(exported, "TwoNodesIPv2")
    assert report["error"] is None
    assert set(report["hardware_layers"]) | set(report["software_layers"]) == {"hidden_0", "hidden_1", "q_values"}
    assert report["fits"] == (report["nps"] > 0 and {"hidden_0", "hidden_1"} <= set(report["hardware_layers"]))
    akd1000 = mapping_report(exported, "AKD1000")  # first IP version: Dense1D is a second-IP layer
    assert akd1000["fits"] is False and "IP version" in akd1000["error"]


def test_device_option_and_missing_package(monkeypatch):
    assert AkidaBackend(device="software").device is None
    with pytest.raises(ValueError, match="akida.devices\\(\\) lists 0 board"):
        AkidaBackend(device=3)
    with pytest.raises(ValueError, match="device must be"):
        AkidaBackend(device="gpu")
    monkeypatch.setitem(sys.modules, "akida", None)
    with pytest.raises(ImportError, match=r"pip install 'rivc\[akida\]'"):
        AkidaBackend()


def test_rivc_trains_with_the_akida_backend():
    from rivc.agents import RIVC

    model = RIVC("MlpPolicy", "CartPole-v1", backend="akida", seed=0, learning_starts=200, batch_size=32,
                 target_update_interval=100, buffer_size=5000)
    model.learn(800)
    assert isinstance(model.spiking_policy, AkidaPolicy)
    assert model.num_conversions == model._n_updates + 1 > 100
    obs = random_obs(50, obs_dim=4, scale=0.1)
    np.testing.assert_array_equal(model.q_values(obs), model.spiking_policy.network.q_values(obs))
