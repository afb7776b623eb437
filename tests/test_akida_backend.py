import numpy as np
import pytest

from conftest import random_obs

pytest.importorskip("akida")

from rivc.neurochip.akida_backend import AkidaBackend, AkidaPolicy  # noqa: E402


def test_device_options():
    assert AkidaBackend(device="software").device is None
    with pytest.raises(ValueError, match="akida.devices\\(\\) lists 0 board"):
        AkidaBackend(device=3)
    with pytest.raises(ValueError, match="device must be"):
        AkidaBackend(device="gpu")


@pytest.mark.parametrize("target", ["akida", "akd1000"])
def test_rivc_trains_with_the_akida_engine_acting(target):
    from rivc.agents import RIVC

    model = RIVC("MlpPolicy", "CartPole-v1", target=target, backend="akida", seed=0, learning_starts=200,
                 batch_size=32, target_update_interval=100, buffer_size=5000)
    model.learn(800)
    assert isinstance(model.spiking_policy, AkidaPolicy)
    assert model.num_conversions == 151  # the end of warm-up, then one per update
    obs = random_obs(50, obs_dim=4, scale=0.1)
    np.testing.assert_array_equal(model.q_values(obs), model.spiking_policy.network.q_values(obs))
    error = model.conversion_error(obs)
    assert error.action_agreement == 1.0 and error.mean_abs_dq < 1e-6
