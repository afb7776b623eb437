import numpy as np
import pytest

from conftest import random_network, random_obs

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


class FakeBoard:
    """What ``measure_on_board`` touches of an akida device: its SoC's power switch and meter."""

    class Soc:
        power_measurement_enabled = False

        class power_meter:  # noqa: N801 (akida's attribute name)
            floor = 912.5

    soc = Soc()

    def __str__(self) -> str:
        return "AKD1000 board (fake)"


class BoardRun:
    """A mapped model's metrics and power events as akida's engine records them (timestamps in ms)."""

    class Metrics:
        names = ["inference_start", "inference_end", "inference_frames"]

        def __init__(self, frames):
            self.values = {"inference_start": 1000, "inference_end": 1500, "inference_frames": frames}

        def __getitem__(self, name):
            return self.values[name]

    def __init__(self, model, frames, powers):
        from types import SimpleNamespace

        self.model, self.metrics = model, self.Metrics(frames)
        self.power_events = [SimpleNamespace(ts=1000 + 100 * i, power=p) for i, p in enumerate(powers)]

    def forward(self, inputs):
        return self.model.forward(inputs)

    @property
    def statistics(self):
        from akida.statistics import Statistics

        return Statistics(model=self)  # akida's own reading of the metrics and power events


def test_report_measures_power_and_energy_on_a_board(monkeypatch):
    from rivc.neurochip.akida_backend import measure_on_board

    network = random_network(target="akd1000").export()
    policy = AkidaPolicy(network)
    obs = random_obs(50, obs_dim=network.obs_dim)
    with pytest.raises(ValueError, match="software engine, which has no power meter"):
        measure_on_board(policy, obs)
    policy.device = FakeBoard()
    policy.model = BoardRun(policy.model, frames=len(obs), powers=[990.0, 1010.0, 1030.0, 1050.0])
    board = measure_on_board(policy, obs, settle_seconds=0)
    assert FakeBoard.soc.power_measurement_enabled
    # akida drops the first reading: average 1030 mW over 0.5 s for 50 frames = 10.3 mJ per frame
    assert board.power_mw["Avg"] == pytest.approx(1030.0) and board.fps == pytest.approx(100.0)
    assert board.energy_mj_per_frame == pytest.approx(10.3) and board.floor_power_mw == 912.5
    assert "MEASURED: 1030.0 mW average during inference, 912.5 mW at rest, 10.3 mJ per action" in board.describe()
