import json
import warnings
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch

from rivc.agents import RIVC, VARIANTS, ConversionConfig
from rivc.neurochip import Backend, SpikingPolicy, register_backend
from rivc import CorruptFileError

FAST = dict(learning_starts=200, batch_size=32, train_freq=4, target_update_interval=100, buffer_size=5000)


class FavourOnePolicy(SpikingPolicy):
    """An instrumented spiking policy: always prefers action 1 and counts its calls."""

    calls = 0

    def __init__(self, network):
        self.network = network

    def q_values(self, obs):
        FavourOnePolicy.calls += 1
        q = np.zeros((np.atleast_2d(obs).shape[0], self.n_actions))
        q[:, 1] = 1.0
        return q


class FavourOneBackend(Backend):
    name = "favour-one"

    def convert(self, network):
        return FavourOnePolicy(network.export() if hasattr(network, "export") else network)


register_backend("favour-one", FavourOneBackend)


def test_rollout_actions_come_from_the_spiking_policy():
    FavourOnePolicy.calls = 0
    model = RIVC("MlpPolicy", "CartPole-v1", backend="favour-one", seed=0, exploration_initial_eps=0.0,
                 exploration_final_eps=0.0, **FAST)
    model.learn(600)
    buffer = model.replay_buffer
    actions = buffer.actions[FAST["learning_starts"]:buffer.pos].ravel()
    assert len(actions) > 300 and np.all(actions == 1)  # the float network would not always pick 1
    assert FavourOnePolicy.calls >= len(actions)


def test_one_conversion_per_update():
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.learn(800)
    # one conversion after every update, plus the initial network's, which acts before the first update
    assert model._n_updates > 100 and model.num_conversions == model._n_updates + 1
    every3 = RIVC("MlpPolicy", "CartPole-v1", seed=0, conversion=dict(every=3), **FAST)
    every3.learn(800)
    # and learn() ends with the latest network converted
    assert every3.num_conversions == every3._n_updates // 3 + 1 + (every3._n_updates % 3 != 0)
    assert every3.converted_at_update == every3._n_updates
    fpnn = RIVC("MlpPolicy", "CartPole-v1", seed=0, variant="fpnn", **FAST)
    fpnn.learn(800)
    assert fpnn.num_conversions == 0  # the float network acts itself


def test_one_conversion_per_update_cycle_and_the_snn_that_acts_is_the_latest_networks(monkeypatch):
    """With several gradient steps per cycle (the RL Zoo's settings), one conversion after them: the SNN acts
    only between train() calls, and then it is always the conversion of the network as updated."""
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **{**FAST, "train_freq": 8, "gradient_steps": 4})
    train, cycles, obs = model.train, [], np.random.default_rng(0).uniform(-1, 1, (64, 4)).astype(np.float32)

    def checked_train(gradient_steps, batch_size=100):
        conversions = model.num_conversions
        train(gradient_steps, batch_size)
        cycles.append(model.num_conversions - conversions)
        with torch.no_grad():  # the acting SNN computes the trained network's Q-values (exact target)
            np.testing.assert_array_equal(model.spiking_policy.q_values(obs).astype(np.float32),
                                          model.q_network(torch.as_tensor(obs)).numpy())

    monkeypatch.setattr(model, "train", checked_train)
    model.learn(800)
    assert len(cycles) > 20 and set(cycles) == {1} and model._n_updates == 4 * len(cycles)
    assert model.num_conversions == len(cycles) + 1  # and the initial network's


def test_learn_runs_numpys_blas_on_one_thread_unless_asked(monkeypatch):
    """Beside another process on the same cores, a multi-threaded BLAS made RIVC 3x slower (benchmarks/bench_train.py)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):  # the process's own setting
        outer = blas_threads()
    if outer != {2}:
        pytest.skip(f"numpy's BLAS runs {outer or 'no detectable'} thread pools here: nothing to limit")
    seen = []
    for threads, expected in ((1, {1}), (None, {2})):
        with threadpool_limits(2, user_api="blas"):
            model = RIVC("MlpPolicy", "CartPole-v1", seed=0, blas_threads=threads, **FAST)
            train = model.train
            monkeypatch.setattr(model, "train", lambda *args, **kw: seen.append(blas_threads()) or train(*args, **kw))
            model.learn(300)
            assert seen and all(s == expected for s in seen) and blas_threads() == {2}  # restored after learn
            seen.clear()
    with pytest.raises(ValueError, match="blas_threads must be an integer >= 1"):
        RIVC("MlpPolicy", "CartPole-v1", blas_threads=0)


def test_learn_runs_torchs_pool_on_the_same_threads_and_restores_it(monkeypatch):
    """torch's int8 and float products wait for busy cores as numpy's BLAS did (docs/SPEED.md): learn runs them on
    ``blas_threads`` threads too, and leaves the process's setting as it found it, also when training fails."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for threads, expected in ((1, 1), (None, 2)):
            model = RIVC("MlpPolicy", "CartPole-v1", seed=0, blas_threads=threads, **FAST)
            train, seen = model.train, []
            monkeypatch.setattr(model, "train", lambda *args, **kw: seen.append(torch.get_num_threads()) or train(*args, **kw))
            model.learn(300)
            assert seen and set(seen) == {expected} and torch.get_num_threads() == 2
        model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
        monkeypatch.setattr(model, "train", lambda *args, **kw: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            model.learn(300)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class BadRewards(gym.Wrapper):
    """Rewards that turn NaN at a given step, observations pushed past the declared bounds in dimension 2."""

    def __init__(self, env, nan_at=None, push=0.0):
        super().__init__(env)
        self.nan_at, self.push, self.steps = nan_at, push, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        obs = obs.copy()
        obs[2] += self.push
        return obs, float("nan") if self.steps == self.nan_at else reward, terminated, truncated, info


def test_a_nan_reward_stops_training_naming_the_reward_and_nothing_non_finite_is_saved(tmp_path):
    model = RIVC("MlpPolicy", BadRewards(gym.make("CartPole-v1"), nan_at=300), seed=0, **FAST)
    with pytest.raises(ValueError, match=r"returned the reward \[nan\] at step .*rewards must be finite"):
        model.learn(600)
    with torch.no_grad():
        model.q_net.net.layers[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not saved: the weights .* hold NaN or inf"):
        model.save(tmp_path / "model.zip")
    assert not (tmp_path / "model.zip").exists()


def test_observations_outside_the_declared_space_warn_once_with_the_share():
    pushed = BadRewards(gym.make("CartPole-v1"), push=1.0)  # pole angle bound 0.42
    model = RIVC("MlpPolicy", pushed, seed=0, calibration=dict(input_range="space"), **FAST)
    with pytest.warns(UserWarning, match=r"dimension\(s\) 2: \d+\.\d % of \d+ states.*clips them"):
        model.learn(400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn(100)  # once
        # a range that follows the data clips nothing at the declared bounds: nothing to say
        tracked = RIVC("MlpPolicy", pushed, seed=0, calibration=dict(input_range="track"), **FAST).learn(400)
    # and it spans the states beyond the bound (the 1-99 % quantiles): the bound stops only the margin
    angles = tracked._replay_observations()[:, 2]
    assert tracked.q_network.obs_high[2] >= np.quantile(angles, 0.99) > pushed.observation_space.high[2]


def test_load_takes_stable_baselines3_keywords_as_the_rl_zoo_passes_them(tmp_path, capsys):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.learn(300)
    path = model.save(tmp_path / "model.zip")
    zero = lambda _: 0.0  # noqa: E731 (what the Zoo's enjoy.py passes)
    loaded = RIVC.load(path, env=gym.make("CartPole-v1"), device="cpu", print_system_info=True, force_reset=True,
                       custom_objects={"learning_rate": 0.0, "lr_schedule": zero, "exploration_schedule": zero})
    printed = capsys.readouterr().out
    assert "== CURRENT SYSTEM INFO ==" in printed and "Stable-Baselines3" in printed and "rivc 0.1.0" in printed
    assert loaded.learning_rate == 0.0 and loaded.lr_schedule is zero and loaded.exploration_schedule is zero
    assert loaded._last_obs is None  # force_reset: the env resets before the next learn
    kept = RIVC.load(path, env=gym.make("CartPole-v1"), force_reset=False)
    assert kept.learning_rate == model.learning_rate
    with pytest.raises(ValueError, match="exclude/include are not supported"):
        model.save(tmp_path / "other.zip", exclude=["replay_buffer"])


def test_the_env_id_is_saved_with_subprocess_envs_too(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    env = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=SubprocVecEnv)
    try:
        model = RIVC("MlpPolicy", env, seed=0, **FAST)
        model.learn(200)
        assert RIVC.load(model.save(tmp_path / "model.zip")).env_id == "CartPole-v1"
    finally:
        env.close()


def test_replay_buffers_round_trip_without_pickle_and_pickles_need_consent(tmp_path):
    from stable_baselines3 import DQN

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.learn(400)
    path = model.save_replay_buffer(tmp_path / "buffer")
    assert path.suffix == ".npz"
    other = RIVC("MlpPolicy", "CartPole-v1", seed=1, **FAST)
    other.load_replay_buffer(tmp_path / "buffer")
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(other.replay_buffer, name), getattr(model.replay_buffer, name))
    assert (other.replay_buffer.pos, other.replay_buffer.full) == (model.replay_buffer.pos, model.replay_buffer.full)
    other.learn(200, reset_num_timesteps=False)  # and learning goes on from it
    smaller = RIVC("MlpPolicy", "CartPole-v1", seed=0, **{**FAST, "buffer_size": 500})
    with pytest.raises(CorruptFileError, match="does not fit this model's buffer"):
        smaller.load_replay_buffer(path)
    sb3 = DQN("MlpPolicy", "CartPole-v1", buffer_size=model.buffer_size, learning_starts=10)
    sb3.learn(50)
    sb3.save_replay_buffer(tmp_path / "sb3")  # a pickle: it could run code when loaded
    with pytest.raises(ValueError, match="runs code when loaded: pass allow_pickle=True"):
        other.load_replay_buffer(tmp_path / "sb3.pkl")
    other.load_replay_buffer(tmp_path / "sb3.pkl", allow_pickle=True)
    assert other.replay_buffer.pos == sb3.replay_buffer.pos > 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_train_and_predict(variant, monkeypatch):
    """Each variant trains, acts through the network its row names, and uses the target its row names."""
    model = RIVC("MlpPolicy", "CartPole-v1", variant=variant, seed=0, **FAST)
    alphas = []
    import rivc.agents.rivc_agent as agent_module

    target = agent_module.gap_increasing_target
    monkeypatch.setattr(agent_module, "gap_increasing_target",
                        lambda *args, **kwargs: alphas.append(kwargs["alpha"]) or target(*args, **kwargs))
    model.learn(500)
    row = VARIANTS[variant]
    assert model.q_network.qat == row.qat and alphas and set(alphas) == {model.alpha if row.gap_increasing else 0.0}
    obs = np.random.default_rng(0).uniform(-0.2, 0.2, (64, 4)).astype(np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    if row.snn_acts:  # the converted spiking policy's greedy actions
        np.testing.assert_array_equal(actions, model.spiking_policy.q_values(obs).argmax(axis=1))
    else:  # the float network's own
        assert model.spiking_policy is None
        with torch.no_grad():
            np.testing.assert_array_equal(actions, model.q_net(torch.as_tensor(obs)).argmax(dim=1).numpy())


def test_boltzmann_exploration_samples_from_the_snn():
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, exploration="boltzmann", beta=1.0, **FAST)
    model.learn(400)
    actions = {int(model.predict(np.zeros(4, dtype=np.float32))[0]) for _ in range(50)}
    assert actions == {0, 1}


def test_save_load_gives_identical_actions(tmp_path):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.learn(600)
    path = model.save(tmp_path / "model")
    assert path.name == "model.zip" and not list(tmp_path.glob(".*tmp"))
    loaded = RIVC.load(path, env="CartPole-v1")
    obs = np.random.default_rng(0).normal(0, 1, (200, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.q_values(obs), model.q_values(obs))
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    assert loaded.num_timesteps == model.num_timesteps and loaded.alpha == model.alpha
    loaded.learn(300)  # training continues from a loaded model
    # the naive baseline's post-training quantization is part of what was saved
    naive = RIVC("MlpPolicy", "CartPole-v1", seed=0, variant="naive", **FAST)
    naive.learn(600)
    np.testing.assert_array_equal(RIVC.load(naive.save(tmp_path / "naive.zip")).q_values(obs), naive.q_values(obs))


def test_load_rejects_bad_files_and_mismatched_envs(tmp_path):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.learn(300)
    path = model.save(tmp_path / "model.zip")
    with pytest.raises(ValueError, match=r"chooses among 2 actions.*Discrete\(3\)"):
        RIVC.load(path, env="Acrobot-v1")
    wider = gym.make("CartPole-v1")
    wider.observation_space = gym.spaces.Box(-2 * wider.observation_space.high, 2 * wider.observation_space.high)
    with pytest.raises(ValueError, match="observation space mismatch"):  # the same shape, other bounds
        RIVC.load(path, env=wider)
    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(CorruptFileError, match="not a readable RIVC model"):
        RIVC.load(tmp_path / "junk.zip")
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as archive:
        archive.writestr("rivc.json", '{"format": "something-else"}')
        archive.writestr("weights.pt", b"")
    with pytest.raises(CorruptFileError):
        RIVC.load(tmp_path / "foreign.zip")
    with pytest.raises(FileNotFoundError):
        RIVC.load(tmp_path / "missing.zip")


def _run(seed):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=seed, **FAST)
    model.learn(700)
    return model


def test_seeded_runs_are_reproducible():
    a, b = _run(3), _run(3)
    np.testing.assert_array_equal(a.replay_buffer.actions, b.replay_buffer.actions)
    for pa, pb in zip(a.policy.state_dict().values(), b.policy.state_dict().values()):
        assert torch.equal(pa, pb)
    c = _run(4)
    assert not np.array_equal(a.replay_buffer.actions, c.replay_buffer.actions)


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="Discrete action space.*DiscretizeAction"):
        RIVC("MlpPolicy", "Pendulum-v1")
    with pytest.raises(ValueError, match="unknown backend 'loihi'"):
        RIVC("MlpPolicy", "CartPole-v1", backend="loihi")
    with pytest.raises(ValueError, match="unknown variant 'dqn'"):
        RIVC("MlpPolicy", "CartPole-v1", variant="dqn")
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        RIVC("MlpPolicy", "CartPole-v1", alpha=1.0)
    with pytest.raises(ValueError, match="weight_bits=12"):
        RIVC("MlpPolicy", "CartPole-v1", quant={"weight_bits": 12})
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    with pytest.raises(ValueError, match="observation shape"):
        model.predict(np.zeros(5, dtype=np.float32))


def test_discretized_continuous_env_trains():
    env = gym.wrappers.DiscretizeAction(gym.make("Pendulum-v1"), bins=3)
    model = RIVC("MlpPolicy", env, seed=0, **FAST)
    model.learn(400)
    assert model.num_conversions > 0


def test_training_smoke_cartpole_learns_something():
    """Default-suite smoke test: a short RIVC run (4-bit, snntorch) beats the random policy (~22)."""
    from rivc.agents.rollout import rollout

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0)
    model.learn(8000)
    mean = rollout(model, gym.make("CartPole-v1"), episodes=5).mean_return
    assert mean > 40, mean


def test_logs_conversion_metrics(tmp_path):
    from stable_baselines3.common.logger import configure

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(1500, log_interval=1)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"conversion/action_agreement", "conversion/mean_abs_dq", "snn/spikes_per_action"} <= set(header)
    rows = (tmp_path / "progress.csv").read_text().splitlines()[1:]
    agreement = [float(r.split(",")[header.index("conversion/action_agreement")] or "nan") for r in rows]
    assert any(0.5 <= a <= 1.0 for a in agreement)


def test_conversion_error_measured_every_nth_conversion(monkeypatch):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, conversion=ConversionConfig(eval_every=5), **FAST)
    calls = []
    original = model.conversion_error
    monkeypatch.setattr(model, "conversion_error", lambda *args: calls.append(1) or original(*args))
    model.learn(800)
    assert model.num_conversions == model._n_updates + 1 and len(calls) == (model.num_conversions) // 5


def test_dead_and_saturated_units_are_logged_with_the_conversion_error():
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, conversion=ConversionConfig(eval_every=5), **FAST)
    from stable_baselines3.common.logger import Logger

    logged = []

    class Recording(Logger):
        def record(self, key, value, exclude=None):
            logged.append((key, value))
            super().record(key, value, exclude)

    model.set_logger(Recording(folder=None, output_formats=[]))
    model.learn(800)
    dead = [value for key, value in logged if key == "quantization/dead_units_layer0"]
    assert len(dead) == model.num_conversions // 5 and all(0.0 <= value <= 1.0 for value in dead)
    zero = [value for key, value in logged if key == "quantization/zero_codes_layer1"]
    top = [value for key, value in logged if key == "quantization/top_codes_layer1"]
    assert len(zero) == len(top) == len(dead) and all(0.0 <= z + t <= 1.0 for z, t in zip(zero, top))
    shares = model.unit_shares()
    assert len(shares.dead) == len(shares.saturated) == len(shares.zero_codes) == len(shares.top_codes) == len(
        model.q_network.sizes) - 2


def test_models_saved_before_chip_targets_are_refused_clearly(tmp_path):
    import json
    import zipfile

    from rivc import CorruptFileError

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.learn(300)
    path = model.save(tmp_path / "model.zip")
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(files["rivc.json"])
    assert meta["hyperparameters"]["target"] == "akida" and RIVC.load(path).target == "akida"
    meta["version"] = 1
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, json.dumps(meta) if name == "rivc.json" else data)
    with pytest.raises(CorruptFileError, match="before chip targets .*retrain"):
        RIVC.load(path)


def test_models_saved_with_a_quantile_beside_an_untracked_range_still_load(tmp_path):
    # until 2026-12-05 every file held the tracked range's quantile, whatever its range: it did nothing there
    path = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST).save(tmp_path / "model.zip")
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(files["rivc.json"])
    assert "quantile" not in meta["calibration"]  # the default is not written now
    meta["calibration"].update(input_range="space", quantile=0.05)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, json.dumps(meta) if name == "rivc.json" else data)
    loaded = RIVC.load(path)
    assert loaded.calibration.input_range == "space" and loaded.calibration.quantile == 0.01
    del meta["calibration"]["input_range"]  # not written: saved while the space's bounds were the default
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, json.dumps(meta) if name == "rivc.json" else data)
    assert RIVC.load(path).calibration.input_range == "space"
    tracked = RIVC("MlpPolicy", "CartPole-v1", seed=0, calibration=dict(input_range="track", quantile=0.0), **FAST)
    assert RIVC.load(tracked.save(tmp_path / "tracked.zip")).calibration.quantile == 0.0


def test_conversion_and_calibration_settings_are_small_configs(tmp_path):
    from rivc.agents import CalibrationConfig

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, conversion=dict(eval_every=3, eval_size=16),
                 calibration=CalibrationConfig(input_range="data", margin=0.25), **FAST)
    assert model.conversion == ConversionConfig(every=1, eval_size=16, eval_every=3)
    # MlpPolicy: clips calibrated and learned
    assert model.calibration == CalibrationConfig("data", 0.25, clips=True, clip_decay=None)
    loaded = RIVC.load(model.save(tmp_path / "model.zip"))
    assert (loaded.conversion, loaded.calibration) == (model.conversion, model.calibration)
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:  # unset options are not written: older versions read it
        calibration = json.loads(archive.read("rivc.json"))["calibration"]
        assert "clip_statistic" not in calibration and "min_samples" not in calibration
        assert calibration["clip_decay"] is None  # the clip rule written out: a later default does not move it
    for bad, message in ((dict(conversion=dict(every=0)), "every must be an integer >= 1"),
                         (dict(conversion=dict(often=2)), "no field often"),
                         (dict(calibration=dict(input_range="box")), "one of space, data, track"),
                         (dict(calibration=dict(track_every=0)), "track_every must be an integer >= 1"),
                         (dict(calibration=dict(quantile=0.5)), r"quantile must be in \[0, 0.5\)"),
                         (dict(calibration=dict(input_range="space", quantile=0.0)), r"input_range='space' has none"),
                         (dict(calibration=dict(margin=-1.0)), "margin must be >= 0")):
        with pytest.raises(ValueError, match=message):
            RIVC("MlpPolicy", "CartPole-v1", **bad)
    with pytest.raises(TypeError, match=r"conversion=ConversionConfig\(every=\.\.\.\)"):
        RIVC("MlpPolicy", "CartPole-v1", convert_every=2)


def test_lsq_clips_are_learned_and_the_snn_follows_them(tmp_path):
    runs = {rule: RIVC("MlpPolicy", "CartPole-v1", seed=0, calibration=dict(clip_gradient=rule), **FAST)
            for rule in ("pact", "lsq")}
    for model in runs.values():
        model.learn(FAST["learning_starts"] + 300)
    assert all(clip.requires_grad for clip in runs["lsq"].q_network.clips)
    assert runs["lsq"].q_network.clip_gradient == "lsq" == runs["lsq"].q_net_target.net.clip_gradient
    clips = {rule: [float(c.detach()) for c in model.q_network.clips] for rule, model in runs.items()}
    assert clips["lsq"] != pytest.approx(clips["pact"], rel=1e-4)  # the rule changes what the clips learn
    error = runs["lsq"].conversion_error()
    assert error.action_agreement == 1.0 and error.mean_abs_dq == 0.0  # the SNN runs the learned clips
    path = runs["lsq"].save(tmp_path / "lsq.zip")
    assert RIVC.load(path).calibration.clip_gradient == "lsq" and RIVC.load(path).q_network.clip_gradient == "lsq"
    with zipfile.ZipFile(runs["pact"].save(tmp_path / "pact.zip")) as archive:  # the default is not written
        assert "clip_gradient" not in json.loads(archive.read("rivc.json"))["calibration"]
    for bad, message in ((dict(clip_gradient="lsq", clip_decay=0.9), "leave clip_decay None for learned clips"),
                         (dict(clip_gradient="LSQ"), "clip_gradient must be one of pact, lsq")):
        with pytest.raises(ValueError, match=message):
            RIVC("MlpPolicy", "CartPole-v1", calibration=bad)
    with pytest.raises(ValueError, match="variant 'fpnn' trains a float network: leave clip_gradient 'pact'"):
        RIVC("MlpPolicy", "CartPole-v1", variant="fpnn", calibration=dict(clip_gradient="lsq"))


@pytest.mark.parametrize("calibration", [{}, {"clip_decay": 0.9}])
def test_per_unit_activation_steps_train_convert_and_load(tmp_path, calibration):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs={"activation_steps": "unit"},
                 calibration=calibration, **FAST)
    model.learn(FAST["learning_starts"] + 300)
    clips = [clip.detach().numpy().copy() for clip in model.q_network.clips]
    assert [c.shape for c in clips] == [(64,), (64,)] and all(np.unique(c).size > 10 for c in clips)  # each its own
    error = model.conversion_error()
    assert error.action_agreement == 1.0 and error.mean_abs_dq == 0.0  # the SNN runs the per-unit steps
    loaded = RIVC.load(model.save(tmp_path / "unit.zip"))
    assert loaded.q_network.activation_steps == "unit" == loaded.q_net_target.net.activation_steps
    for clip, saved in zip(loaded.q_network.clips, clips):
        np.testing.assert_array_equal(clip.detach().numpy(), saved)
    obs = np.random.default_rng(1).uniform(-0.2, 0.2, (20, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.q_values(obs), model.q_values(obs))
    np.testing.assert_array_equal(loaded.spiking_policy.network.q_values(obs), model.q_values(obs))
    with zipfile.ZipFile(RIVC("MlpPolicy", "CartPole-v1", **FAST).save(tmp_path / "layer.zip")) as archive:
        assert "activation_steps" not in json.loads(archive.read("rivc.json"))["policy_kwargs"]  # the default


def test_a_dueling_head_trains_converts_and_loads(tmp_path):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs={"head": "dueling"}, **FAST)
    model.learn(FAST["learning_starts"] + 300)
    assert model.q_network.layers[-1].out_features == 3 and model.spiking_policy.network.n_actions == 2
    error = model.conversion_error()
    assert error.action_agreement == 1.0 and error.mean_abs_dq == 0.0
    loaded = RIVC.load(model.save(tmp_path / "dueling.zip"))
    assert loaded.q_network.head == "dueling" == loaded.q_net_target.net.head
    obs = np.random.default_rng(1).uniform(-0.2, 0.2, (20, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.q_values(obs), model.q_values(obs))
    assert loaded.predict(obs[0], deterministic=True)[0] in (0, 1)


def test_tracked_clips_follow_the_activations_and_are_not_learned(tmp_path):
    tracked = RIVC("MlpPolicy", "CartPole-v1", seed=0, calibration=dict(clip_decay=0.9), **FAST)
    assert not any(clip.requires_grad for clip in tracked.q_network.clips)
    tracked.learn(FAST["learning_starts"] + 400)
    clips = [float(clip) for clip in tracked.q_network.clips]
    top = tracked.q_network.batch_clip_targets
    assert all(t > 0 for t in top) and clips != pytest.approx(top, rel=1e-3)  # a moving average, not the last batch
    error = tracked.conversion_error()
    assert error.action_agreement == 1.0 and error.mean_abs_dq == 0.0  # the SNN follows the tracked clips
    tracked.train(1, batch_size=32)  # one update: the clips move by the configured decay, toward the batch's maxima
    top = tracked.q_network.batch_clip_targets
    assert [float(c) for c in tracked.q_network.clips] == pytest.approx([0.9 * c + 0.1 * t for c, t in zip(clips, top)])
    assert tracked.conversion_error().mean_abs_dq == 0.0  # converted after the clips moved
    with pytest.raises(ValueError, match="variant 'fpnn' trains a float network"):
        RIVC("MlpPolicy", "CartPole-v1", variant="fpnn", calibration=dict(clip_decay=0.9))
    loaded = RIVC.load(tracked.save(tmp_path / "tracked.zip"))
    assert loaded.calibration.clip_decay == 0.9 and not any(c.requires_grad for c in loaded.q_network.clips)
    spread = RIVC("MlpPolicy", "CartPole-v1", seed=0, calibration=dict(clip_decay=0.0, clip_statistic="mse"), **FAST)
    spread.learn(FAST["learning_starts"] + 100)  # decay 0: each clip is its last batch's least-squares clip
    assert [float(c.detach()) for c in spread.q_network.clips] == pytest.approx(spread.q_network.batch_clip_targets)
    assert spread.q_network.tracked_statistic == "mse" and spread.q_net_target.net.tracked_statistic is None
    assert spread.conversion_error().mean_abs_dq == 0.0
    assert RIVC.load(spread.save(tmp_path / "spread.zip")).calibration.clip_statistic == "mse"
    with pytest.raises(ValueError, match="set clip_decay"):
        RIVC("MlpPolicy", "CartPole-v1", calibration=dict(clip_statistic="mse"))
    for bad in (1.0, -0.1, "often", True):
        with pytest.raises(ValueError, match=r"clip_decay must be None \(learned clips\) or in \[0, 1\)"):
            RIVC("MlpPolicy", "CartPole-v1", calibration=dict(clip_decay=bad))


W8 = {"weight_bits": 8, "activation_bits": 8}


@pytest.mark.parametrize(("quant", "options", "tracked"), [
    (None, {}, False),  # 4 bits: learned clips
    (W8, {}, False),  # 8 bits too (docs/zoo_notes.md: learned clips reach more targets there)
    ({"layers": [[8, 8], [8, 4], [4, None]]}, {}, False),
    ({"layers": [[8, 8], [8, 8], [8, None]]}, {}, False),  # (the removed rule "auto" tracked these two)
    ({"weight_bits": 4, "activation_bits": 8}, {"target": "rate"}, False),
    (W8, {"clip_decay": 0.5}, True),  # asked for tracked clips
    (None, {"clip_decay": 0.9}, True),
    (W8, {"clip_gradient": "lsq"}, False),  # LSQ learns them
    (W8, {"variant": "fpnn"}, False),  # a float network learns its clips unquantized
])
def test_the_clips_are_learned_at_every_width_unless_a_decay_is_asked(tmp_path, quant, options, tracked):
    options = dict(options)
    variant, target = options.pop("variant", "rivc"), options.pop("target", "akida")
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, quant=quant, variant=variant, target=target, calibration=options,
                 **FAST)
    expected = options["clip_decay"] if tracked else None
    assert model.calibration.clip_decay == expected
    if variant == "rivc":
        assert [clip.requires_grad for clip in model.q_network.clips] == [not tracked] * 2
    path = model.save(tmp_path / "model.zip")
    assert _saved_meta(path)["calibration"]["clip_decay"] == expected  # written out: a later default does not move it
    assert RIVC.load(path).calibration.clip_decay == expected


def test_a_model_saved_under_the_removed_clip_rule_keeps_the_clips_it_trained_with(tmp_path):
    # saved while clip_decay="auto" was the default (tracked at 8 bits, written decided, the request beside it)
    for statistic in ("max", "mse"):
        path = RIVC("MlpPolicy", "CartPole-v1", seed=0, quant=W8,
                    calibration=dict(clip_decay=0.99, clip_statistic=statistic), **FAST).save(tmp_path / "auto8.zip")
        _write_meta(path, {**_saved_meta(path), "clip_decay_asked": "auto"})
        for quant in (None, {"weight_bits": 4, "activation_bits": 4}):  # as saved, and requantized
            loaded = RIVC.load(path, quant=quant)
            assert (loaded.calibration.clip_decay, loaded.calibration.clip_statistic) == (0.99, statistic)
            assert not any(clip.requires_grad for clip in loaded.q_network.clips)
    with pytest.raises(ValueError, match=r"clip_decay='auto' \(tracked clips at 8 bits\) was removed: .* pass 0.99"):
        RIVC("MlpPolicy", "CartPole-v1", calibration=dict(clip_decay="auto"))


def test_tracked_clips_wait_for_a_quantization_delay():
    # 8 bits with a quantization delay: the float phase's updates leave the tracked clips alone
    delayed = RIVC("MlpPolicy", "CartPole-v1", seed=0, quant=W8, quantization_delay=600,
                   calibration=dict(clip_decay=0.99), **FAST)
    delayed.learn(500)
    assert delayed._n_updates > 0 and not delayed.q_network.qat
    assert [float(clip) for clip in delayed.q_network.clips] == [float(clip) for clip in delayed.q_net_target.net.clips]
    assert min(float(clip) for clip in delayed.q_network.clips) > 0.5  # (before the fix: shrunk toward 0)


def test_an_8_bit_model_saved_while_clips_were_learned_by_default_loads_with_learned_clips(tmp_path):
    path = RIVC("MlpPolicy", "CartPole-v1", seed=0, quant=W8, calibration=dict(clip_decay=None), **FAST).save(
        tmp_path / "model.zip")
    meta = _saved_meta(path)
    del meta["calibration"]["clip_decay"]  # as written before 2026-12-06: None was the default, left out
    _write_meta(path, meta)
    loaded = RIVC.load(path)
    assert loaded.calibration.clip_decay is None and all(clip.requires_grad for clip in loaded.q_network.clips)


@pytest.mark.parametrize("units", ["observation", "normalised"])
def test_tracked_input_range_follows_the_data_and_deploys_what_trains(tmp_path, units):
    # Acrobot declares loose bounds for its velocities (+-4 pi, +-9 pi): the tracked range follows the states the
    # agent visits; the target network moves with it; the policy that acts quantizes over the same range
    model = RIVC("MlpPolicy", "Acrobot-v1", seed=0, calibration=dict(input_range="track", track_every=300),
                 learning_starts=100, policy_kwargs=dict(input_units=units),
                 **{k: v for k, v in FAST.items() if k != "learning_starts"})
    space = model.observation_space
    model.learn(1500)
    net, target = model.q_net.net, model.q_net_target.net
    low, high = net.obs_low.numpy().copy(), net.obs_high.numpy().copy()
    states = model._replay_observations()
    width = states.max(axis=0) - states.min(axis=0)
    assert np.all(low >= states.min(axis=0) - width) and np.all(high <= states.max(axis=0) + width)
    # finer velocity codes than the bounds give (the states visited differ with the units: a first layer in the
    # observation's units starts as a float DQN's, reading velocities at their own small scale)
    assert np.all((high - low)[4:] < (0.5 if units == "normalised" else 0.8) * (space.high - space.low)[4:])
    # the cosines and sines fill their bounds, [-1, 1]: the margin stops there (no codes for states never returned)
    assert np.all(low[:4] >= space.low[:4]) and np.all(high[:4] <= space.high[:4])
    np.testing.assert_array_equal(target.obs_low.numpy(), low)
    np.testing.assert_array_equal(target.obs_high.numpy(), high)
    checked = model._range_checked_at
    assert model.input_range_moves >= 1 and checked >= 1200  # checks at 100, 200, 400, 800, then every 300 steps
    np.testing.assert_array_equal(model.spiking_policy.network.input.low, low)
    error = model.conversion_error()
    assert error.action_agreement == 1.0 and error.mean_abs_dq == 0.0
    loaded = RIVC.load(model.save(tmp_path / "track.zip"))
    assert (loaded.input_range_moves, loaded._range_checked_at) == (model.input_range_moves, checked)
    np.testing.assert_array_equal(loaded.q_network.obs_high.numpy(), high)
    # a range grown loose (by hand here) moves back at the next check; in the observation's units the weights and
    # Adam's moments stay as they are, normalised they follow the inputs' scale
    for each in (net, target):
        each.move_input_range(low - 4 * (high - low), high + 4 * (high - low))
    weights = net.layers[0].weight.detach().clone()
    moments = {key: value.clone() for key, value in model.policy.optimizer.state[net.layers[0].weight].items()}
    moves, model._range_checked_at = model.input_range_moves, 0
    model._track_input_range()
    assert model.input_range_moves == moves + 1
    states = model._replay_observations()  # the share of them that the new range clips is logged
    outside = np.any((states < net.obs_low.numpy()) | (states > net.obs_high.numpy()), axis=1).mean()
    assert outside > 0 and model.logger.name_to_value["calibration/input_clipped_share"] == pytest.approx(outside, abs=0)
    shrink = torch.as_tensor(9 * (high - low) / (net.obs_high - net.obs_low).numpy(), dtype=torch.float32)
    assert shrink.min() > 5  # the replay data's range again (as it moved since the last check)
    shrink = torch.ones_like(shrink) if units == "observation" else shrink  # normalised: the weights shrank
    torch.testing.assert_close(net.layers[0].weight.detach(), weights / shrink, rtol=1e-6, atol=0)
    state = model.policy.optimizer.state[net.layers[0].weight]
    torch.testing.assert_close(state["exp_avg"], moments["exp_avg"] * shrink)
    torch.testing.assert_close(state["exp_avg_sq"], moments["exp_avg_sq"] * shrink**2)


def test_a_given_input_range_is_kept_even_where_the_range_would_track():
    assert RIVC("MlpPolicy", "CartPole-v1").calibration.input_range == "fit"  # (track alone failed a held-out task)
    assert RIVC("MlpPolicy", "CartPole-v1", calibration=dict(quantile=0.0)).calibration.quantile == 0.0  # fit's
    model = RIVC("MlpPolicy", "Acrobot-v1", seed=0, policy_kwargs=dict(obs_range=(-2.0, 2.0)),
                 calibration=dict(input_range="track"), **FAST)
    model.learn(FAST["learning_starts"] + 1200)
    assert not model.tracks_input_range and model.input_range_moves == 0
    assert model.spiking_policy.network.input.low.tolist() == [-2.0] * 6


@pytest.mark.parametrize("units", ["observation", "normalised"])
def test_a_moved_input_range_keeps_the_function(units):
    from rivc.qnetwork import QuantizedQNetwork

    space = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
    obs = torch.as_tensor(np.random.default_rng(0).uniform(-1, 2, (64, 3)), dtype=torch.float32)  # inside both ranges
    torch.manual_seed(0)
    net = QuantizedQNetwork(space, 2, qat=False, input_units=units)
    weight = net.layers[0].weight.detach().clone()
    before = net(obs).detach()
    factor = net.move_input_range(np.array([-2.0, -1.0, -4.0]), np.array([2.0, 3.0, 4.0]))
    # normalised: width before / width after; in the observation's units nothing moves
    np.testing.assert_allclose(factor, [4 / 20, 4 / 20, 8 / 20] if units == "normalised" else [1, 1, 1], rtol=1e-12)
    torch.testing.assert_close(net.layers[0].weight.detach(), weight * torch.as_tensor(factor, dtype=torch.float32))
    torch.testing.assert_close(net(obs).detach(), before, rtol=1e-5, atol=1e-6)  # the float function is kept
    assert net.export(calibration_obs=obs).input.high.tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="high > low"):
        net.move_input_range(np.zeros(3), np.zeros(3))
    # normalised: dimensions with no range yet, or one that read a constant, keep their weights (a factor of 1e6
    # would swamp the layer's weight scale)
    unbounded = QuantizedQNetwork(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), 2, input_units=units)
    weight = unbounded.layers[0].weight.detach().clone()
    unbounded.move_input_range(np.array([-1.0, -1e-7]), np.array([1.0, 1e-7]))
    torch.testing.assert_close(unbounded.layers[0].weight.detach(), weight)
    factor = unbounded.move_input_range(np.array([-2.0, 0.0]), np.array([2.0, 1.0]))
    assert factor.tolist() == ([2.0, 1.0] if units == "normalised" else [1.0, 1.0])  # normalised: twice as wide, twice as large


def test_the_observed_range_leaves_out_rare_values_but_not_a_rare_flag():
    from rivc.qnetwork import observed_range

    rng = np.random.default_rng(0)
    speed = np.where(rng.random(2000) < 0.005, 50.0, rng.uniform(-1, 1, 2000))  # a crash's spin now and then
    contact = (rng.random(2000) < 0.005).astype(float)  # a leg's contact flag, rarely set
    low, high = observed_range(np.stack([speed, contact], axis=1), 2, margin=0.5, quantile=0.01)
    assert -2.0 < low[0] < -1.5 and 1.5 < high[0] < 2.0  # the spins are clipped, the rest keeps its resolution
    assert (low[1], high[1]) == (-0.5, 1.5)  # the flag's quantiles meet at 0: its min and max
    low, high = observed_range(np.stack([speed, contact], axis=1), 2, margin=0.5)
    assert high[0] > 50


def test_calibrating_on_a_few_observations_warns():
    # the RL Zoo starts some tasks at once (learning_starts 0): the ranges would come from one state (a bounded space)
    import warnings

    few = dict(FAST, learning_starts=0)
    with pytest.warns(UserWarning, match=r"input range and activation clips on 1 observation\(s\).*learning_starts >= 100"):
        RIVC("MlpPolicy", "MountainCar-v0", seed=0, calibration=dict(input_range="data"), **few).learn(8)
    with pytest.warns(UserWarning, match=r"its activation clips on 1 observation"):
        RIVC("MlpPolicy", "MountainCar-v0", seed=0, **few).learn(8)
    with pytest.warns(UserWarning, match=r"on 5\d observation\(s\) \(learning_starts=200\).*train for longer"):
        RIVC("MlpPolicy", "MountainCar-v0", seed=0, **FAST).learn(50)  # stopped inside the warm-up
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default warm-up calibrates on enough data, and uncalibrated runs say nothing
        RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST).learn(FAST["learning_starts"] + 8)
        RIVC("MlpPolicy", "MountainCar-v0", seed=0, calibration=dict(clips=False), **few).learn(8)


def test_models_saved_with_flat_settings_still_load(tmp_path):
    import json
    import zipfile

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, conversion=dict(every=2, eval_every=4),
                 calibration=dict(margin=0.3), **FAST)
    model.learn(300)
    path = model.save(tmp_path / "model.zip")
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(files["rivc.json"])
    conversion, calibration = meta.pop("conversion"), meta.pop("calibration")
    meta["version"] = 2  # as rivc wrote models before the configs
    meta["hyperparameters"].update(convert_every=conversion["every"], conversion_eval_size=conversion["eval_size"],
                                   conversion_eval_every=conversion["eval_every"], input_range=calibration["input_range"],
                                   calibration_margin=calibration["margin"], calibrate_clips=calibration["clips"])
    files["rivc.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    loaded = RIVC.load(path, env="CartPole-v1")
    assert (loaded.conversion, loaded.calibration) == (model.conversion, model.calibration)
    obs = np.random.default_rng(1).normal(0, 1, (50, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.q_values(obs), model.q_values(obs))
    # a file that leaves the input range out was written when the space's bounds were the default: it keeps them
    del meta["hyperparameters"]["input_range"]
    files["rivc.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    assert RIVC.load(path).calibration.input_range == "space"


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_the_target_networks_quantized_weights_follow_sb3s_target_update(tau):
    """SB3 writes the target network's weights through ``.data`` (``polyak_update``), which torch's version
    counters do not see: the target's forward must still use the new weights, whatever SB3's schedule."""
    import copy

    from stable_baselines3.common.utils import polyak_update

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **{**FAST, "tau": tau})
    model.learn(600)
    obs = torch.as_tensor(model._replay_observations(limit=64))
    target = model.q_net_target
    with torch.no_grad():
        for online_clip, target_clip in zip(model.q_net.net.clips, target.net.clips):
            online_clip.copy_(target_clip)  # the same clips: only the weights tell old from new
        stale = target(obs)  # cached
        polyak_update(model.q_net.parameters(), target.parameters(), tau)  # what SB3's _on_step does
        fresh = copy.deepcopy(target)  # no cache: quantizes the weights as they are now
        assert not torch.equal(stale, fresh(obs))
        assert torch.equal(target(obs), fresh(obs))


def test_an_evaluation_during_warm_up_measures_the_warm_ups_random_policy(tmp_path):
    from stable_baselines3.common.callbacks import EvalCallback

    model = RIVC("MlpPolicy", "CartPole-v1", **FAST)  # CartPole's velocities are unbounded: no policy yet
    callback = EvalCallback(gym.make("CartPole-v1"), eval_freq=50, n_eval_episodes=2, log_path=str(tmp_path), verbose=0)
    model.learn(300, callback=callback)  # evaluations at steps 50..150 fall inside the warm-up (200 steps)
    assert len(callback.evaluations_results) == 6 and model.spiking_policy is not None
    fresh = RIVC("MlpPolicy", "CartPole-v1", **FAST)
    actions = [fresh.predict(np.zeros(4, np.float32), deterministic=True)[0] for _ in range(50)]
    assert set(actions) == {0, 1}  # random, as the warm-up acts


def test_the_gap_clip_reaches_the_target_and_is_checked(monkeypatch):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, gap_clip=-1.0, **FAST)
    seen = []
    import rivc.agents.rivc_agent as agent_module

    target = agent_module.gap_increasing_target
    monkeypatch.setattr(agent_module, "gap_increasing_target",
                        lambda *args, **kwargs: seen.append(kwargs["gap_clip"]) or target(*args, **kwargs))
    model.learn(500)
    assert seen and set(seen) == {-1.0}
    assert RIVC("MlpPolicy", "CartPole-v1", **FAST).gap_clip == -10.0  # bounded at ten scaled rewards by default
    assert RIVC("MlpPolicy", "CartPole-v1", gap_clip=None, **FAST).gap_clip is None  # the paper's update, unbounded
    for bad in (0.0, 1.0, True, float("nan")):
        with pytest.raises(ValueError, match="gap_clip must be a number below 0"):
            RIVC("MlpPolicy", "CartPole-v1", gap_clip=bad)


@pytest.mark.parametrize("variant, reward_scale, gap_clip", [("rivc", 1.0, None), ("rivc", 0.3, -0.05), ("qat", 0.3, -10.0),
                                                          ("fpnn", 1.0, -10.0), ("fpnn-gap", 1.0, -10.0)])
def test_the_value_target_is_the_target_networks_forward_through_the_gap_increasing_target(variant, reward_scale, gap_clip):
    """RIVC.td_target reads the target network's values as numpy arrays (QuantizedQNetwork.values): bit for bit the
    target of its forward's Q-values, the rewards scaled, with the variant's gap term (none for qat and fpnn), bounded."""
    from rivc.targets import gap_increasing_target

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, variant=variant, reward_scale=reward_scale, gap_clip=gap_clip, **FAST)
    model.learn(400)
    data = model.replay_buffer.sample(32)
    alpha, operator = model.target_alpha_operator
    assert (alpha == 0.0) == (variant in ("qat", "fpnn"))
    with torch.no_grad():
        q_next, q_current = model.q_net_target(torch.cat([data.next_observations, data.observations])).split(32)
    expected = gap_increasing_target(q_next, q_current, data.actions, data.rewards * reward_scale, data.dones,
                                     model.gamma, alpha, model.beta, operator, gap_clip)
    target = model.td_target(data.observations, data.actions, data.rewards, data.next_observations, data.dones)
    assert target.dtype == torch.float32 and target.shape == (32,)
    assert torch.equal(target, expected.reshape(-1))
    if gap_clip == -0.05:  # the bound acts on this batch
        unbounded = gap_increasing_target(q_next, q_current, data.actions, data.rewards * reward_scale, data.dones,
                                          model.gamma, alpha, model.beta, operator, None)
        assert not torch.equal(target, unbounded.reshape(-1))


@pytest.mark.parametrize("variant", ["rivc", "qat", "fpnn"])
def test_n_step_returns_discount_the_value_at_s_prime_by_each_transitions_discount(variant):
    """SB3's n_steps > 1: NStepReplayBuffer samples k rewards and gamma**k; the value target discounts the target
    network's value at s' by it, in one pass over a call's batches (qat, rivc) or per batch (fpnn): without a gap
    term SB3 DQN's n-step target, r + (1 - done) * discount * max Q'(s'), with it RIVC's."""
    from rivc.targets import gap_increasing_target

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, n_steps=3, variant=variant, reward_scale=1.0, **FAST)
    model.learn(400)
    batches = [model.replay_buffer.sample(size) for size in (32, 64)]
    alpha, operator = model.target_alpha_operator
    for data, target in zip(batches, model.td_targets(batches)):
        assert data.discounts is not None and len(torch.unique(data.discounts)) > 1  # some returns cut at episode ends
        with torch.no_grad():
            q_next, q_current = model.q_net_target(torch.cat([data.next_observations, data.observations])).split(
                len(data.actions))
        if not alpha:  # SB3's DQN target (dqn.py), in torch
            expected = data.rewards + (1 - data.dones) * data.discounts * q_next.max(dim=1)[0].reshape(-1, 1)
        else:
            expected = torch.from_numpy(gap_increasing_target(
                q_next.numpy(), q_current.numpy(), data.actions.numpy(), data.rewards.numpy(), data.dones.numpy(),
                data.discounts.numpy().reshape(-1), alpha, model.beta, operator, model.gap_clip))
        one_step = model.td_target(data.observations, data.actions, data.rewards, data.next_observations, data.dones)
        assert torch.equal(target, expected.reshape(-1).float()) and not torch.equal(target, one_step)


def test_a_saved_model_keeps_its_n_step_returns(tmp_path):
    from stable_baselines3.common.buffers import NStepReplayBuffer

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, n_steps=3, **FAST)
    loaded = RIVC.load(model.save(tmp_path / "model"), env="CartPole-v1")
    assert loaded.n_steps == 3 and type(loaded.replay_buffer) is NStepReplayBuffer


@pytest.mark.parametrize("variant, merged", [("rivc", True), ("qat", True), ("fpnn", False)])
def test_a_train_calls_value_targets_take_one_pass_of_the_target_network_where_its_rows_are_exact(variant, merged,
                                                                                                monkeypatch):
    """The target network is the same for every batch of a train() call: a QAT network's exact values (the same bits
    in any batch) take one pass over all the batches' rows, in chunks of VALUE_ROWS; a float network's one per batch.
    Either way each batch's target is its own pass's, bit for bit."""
    import rivc.fast_path

    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, variant=variant, **FAST)
    model.learn(400)
    batches = [model.replay_buffer.sample(size) for size in (32, 300, 700)]  # 2 x 1032 rows with the gap term
    expected = [model.td_target(b.observations, b.actions, b.rewards, b.next_observations, b.dones) for b in batches]
    net = model.q_net_target.net
    passes, rows = [], []
    values, exact_pass = type(net).values, rivc.fast_path.exact_pass
    monkeypatch.setattr(type(net), "values", lambda self, obs: passes.append(len(obs)) or values(self, obs))
    monkeypatch.setattr(rivc.fast_path, "exact_pass",
                        lambda n, a, surrogate: rows.append(len(a)) or exact_pass(n, a, surrogate))
    targets = model.td_targets(batches)
    assert net.values_per_row == merged
    rows_per_batch = [(2 if model.target_alpha_operator[0] else 1) * len(b.actions) for b in batches]
    assert passes == ([sum(rows_per_batch)] if merged else rows_per_batch)
    if merged:
        assert max(rows) == rivc.fast_path.VALUE_ROWS and sum(rows) == sum(rows_per_batch) and len(rows) > 1
    assert [len(t) for t in targets] == [32, 300, 700]
    assert all(torch.equal(t, e) for t, e in zip(targets, expected))


def test_train_samples_its_batches_in_groups_of_target_transitions_to_the_same_network(monkeypatch):
    """A train() call samples TARGET_TRANSITIONS' worth of batches at a time (at least one) where the target network's
    values are per row: the groups change what one target pass covers, not the network it trains (nothing in the
    update draws from the sampling's stream)."""
    from rivc.agents import rivc_agent

    for variant in ("rivc", "fpnn"):  # (a float network: a batch at a time, as DQN)
        trained = []
        for transitions in (8_192, 64, 1):
            model = RIVC("MlpPolicy", "CartPole-v1", seed=0, variant=variant, **dict(FAST, gradient_steps=5))
            model.learn(300)
            monkeypatch.setattr(rivc_agent, "TARGET_TRANSITIONS", transitions)
            groups = []
            td_targets = model.td_targets
            monkeypatch.setattr(model, "td_targets", lambda b, f=td_targets, g=groups: g.append(len(b)) or f(b))
            model.train(gradient_steps=5, batch_size=32)
            assert groups == ({8_192: [5], 64: [2, 2, 1], 1: [1] * 5}[transitions] if variant == "rivc" else [1] * 5)
            trained.append([p.detach().clone() for p in model.q_network.parameters()])
        assert all(torch.equal(a, b) for other in trained[1:] for a, b in zip(trained[0], other))


def test_the_learning_rate_is_capped_while_the_network_trains_quantized_and_the_cap_is_saved(tmp_path):
    import json
    import zipfile

    with pytest.warns(UserWarning, match=r"learning_rate 0.001 \(given 0.0023\): max_learning_rate caps it"):
        model = RIVC("MlpPolicy", "CartPole-v1", seed=0, learning_rate=2.3e-3, **FAST)
    model.learn(300)
    assert model.policy.optimizer.param_groups[0]["lr"] == 1e-3 == model.logger.name_to_value["train/learning_rate"]
    assert model.learning_rate == 2.3e-3  # the given rate is kept (and saved) as given
    uncapped = RIVC("MlpPolicy", "CartPole-v1", seed=0, learning_rate=2.3e-3, max_learning_rate=None, **FAST)
    uncapped.learn(300)
    assert uncapped.policy.optimizer.param_groups[0]["lr"] == 2.3e-3
    schedule = RIVC("MlpPolicy", "CartPole-v1", seed=0, learning_rate=lambda progress: 4e-4 + 2e-3 * progress, **FAST)
    schedule.learn(300)
    for progress, rate in ((1.0, 1e-3), (0.5, 1e-3), (0.2, 8e-4), (0.0, 4e-4)):  # capped where it is above the cap
        schedule._current_progress_remaining = progress
        schedule._update_learning_rate(schedule.policy.optimizer)
        assert schedule.policy.optimizer.param_groups[0]["lr"] == pytest.approx(rate)
    for variant in ("fpnn", "naive"):  # networks trained in float are not capped
        float_network = RIVC("MlpPolicy", "CartPole-v1", seed=0, variant=variant, learning_rate=2.3e-3, **FAST)
        float_network.learn(300)
        assert float_network.policy.optimizer.param_groups[0]["lr"] == 2.3e-3
    with pytest.warns(UserWarning, match="max_learning_rate caps it"):
        delayed = RIVC("MlpPolicy", "CartPole-v1", seed=0, learning_rate=2.3e-3, quantization_delay=400, **FAST)
    delayed.learn(300)
    assert delayed.policy.optimizer.param_groups[0]["lr"] == 2.3e-3  # nor is the float phase of a delay
    delayed.learn(300, reset_num_timesteps=False)
    assert delayed.snn_acting and delayed.policy.optimizer.param_groups[0]["lr"] == 1e-3  # QAT after it is
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading says nothing: the warning was the constructor's
        loaded = RIVC.load(model.save(tmp_path / "model"), env="CartPole-v1")
    assert (loaded.max_learning_rate, loaded.learning_rate) == (1e-3, 2.3e-3)
    loaded.learn(300, reset_num_timesteps=False)
    assert loaded.policy.optimizer.param_groups[0]["lr"] == 1e-3
    path = model.save(tmp_path / "legacy")  # saved before the cap existed: it goes on uncapped
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(files["rivc.json"])
    del meta["hyperparameters"]["max_learning_rate"], meta["hyperparameters"]["gap_clip"]
    files["rivc.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    legacy = RIVC.load(path)
    assert legacy.max_learning_rate is None and legacy.gap_clip is None  # nor had the gap term's bound: unbounded
    for bound in (-3.0, None):  # saved with it: as saved, not the default
        saved = RIVC("MlpPolicy", "CartPole-v1", seed=0, gap_clip=bound, **FAST).save(tmp_path / f"bound{bound}")
        assert RIVC.load(saved).gap_clip == bound
    for bad in (0, -1e-3, True, float("nan"), float("inf"), "1e-3"):
        with pytest.raises(ValueError, match="max_learning_rate must be a finite number > 0"):
            RIVC("MlpPolicy", "CartPole-v1", max_learning_rate=bad)


def test_at_or_below_the_cap_training_is_bit_for_bit_as_without_it():
    weights = []
    for cap in (1e-3, None):
        model = RIVC("MlpPolicy", "CartPole-v1", seed=3, learning_rate=1e-3, max_learning_rate=cap, **FAST)
        model.learn(800)
        weights.append([p.detach().clone() for p in model.policy.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_quant_dicts_may_leave_out_defaults_and_name_no_unknown_key():
    model = RIVC("MlpPolicy", "CartPole-v1", quant={"weight_bits": 8, "activation_bits": 8}, **FAST)
    assert (model.q_network.config.weight_bits, model.q_network.config.input_bits) == (8, 8)
    with pytest.raises(ValueError, match="QuantConfig has no field bits"):
        RIVC("MlpPolicy", "CartPole-v1", quant={"bits": 8})


def test_the_quantization_delay_trains_and_acts_float_first_then_hands_over_to_the_snn(tmp_path):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, quantization_delay=700, **FAST)
    model.learn(500)
    obs = np.random.default_rng(0).uniform(-0.2, 0.2, (64, 4)).astype(np.float32)
    assert not model.snn_acting and model.spiking_policy is None and not model.q_network.qat
    with torch.no_grad():  # the float network acts
        np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0],
                                      model.q_net(torch.as_tensor(obs)).argmax(dim=1).numpy())
    inside = RIVC.load(model.save(tmp_path / "inside"), env="CartPole-v1")
    assert not inside.snn_acting and not inside.q_network.qat and inside.quantization_delay == 700
    np.testing.assert_array_equal(inside.q_values(obs), model.q_values(obs))
    model.learn(500, reset_num_timesteps=False)
    assert model.snn_acting and model.q_network.qat and model.q_net_target.net.qat
    assert 700 <= model.snn_from_step < 800  # the first update cycle at or past the delay
    assert model.spiking_policy is not None and model.num_conversions >= 1
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], model.spiking_policy.q_values(obs).argmax(1))
    after = RIVC.load(model.save(tmp_path / "after"), env="CartPole-v1")
    assert after.snn_acting and after.snn_from_step == model.snn_from_step
    np.testing.assert_array_equal(after.q_values(obs), model.q_values(obs))
    assert RIVC("MlpPolicy", "CartPole-v1", **FAST).snn_from_step is None
    # at the hand-over each clip starts at the float network's largest activation on the replay data
    late = RIVC("MlpPolicy", "CartPole-v1", seed=1, quantization_delay=10_000, **FAST)
    late.learn(500)
    float_max = late.q_network.float_activation_max(late._replay_observations())
    late.quantization_delay = 500
    late.train(1, 32)
    assert late.snn_from_step == 500 and late.q_network.activation_clips() == pytest.approx(float_max, abs=2e-3)
    for bad, match in ((-1, "must be a number of steps >= 0"), (True, "must be a number of steps >= 0")):
        with pytest.raises(ValueError, match=match):
            RIVC("MlpPolicy", "CartPole-v1", quantization_delay=bad)
    with pytest.raises(ValueError, match="variant 'fpnn' has none"):
        RIVC("MlpPolicy", "CartPole-v1", variant="fpnn", quantization_delay=100)


def test_min_samples_lengthens_a_short_warm_up_so_the_ranges_see_that_many_states(tmp_path):
    calibration = {"input_range": "data", "min_samples": 300}
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, calibration=calibration, **{**FAST, "learning_starts": 0})
    assert model.learning_starts == 300
    model.learn(300)
    assert model._n_updates == 0  # random actions, no update yet
    model.learn(200, reset_num_timesteps=False)
    assert model._n_updates > 0 and model.spiking_policy is not None
    low, high = model.q_network.input_quantizer().low, model.q_network.input_quantizer().high
    states = model.replay_buffer.observations[:300, 0]  # the warm-up's states, with the margin on each side
    assert np.all(low <= states.min(axis=0)) and np.all(high >= states.max(axis=0)) and np.all(high - low < 10)
    loaded = RIVC.load(model.save(tmp_path / "model"))
    assert loaded.calibration.min_samples == 300 and loaded.learning_starts == 300
    assert RIVC("MlpPolicy", "CartPole-v1", **{**FAST, "learning_starts": 500},
                calibration={"min_samples": 100}).learning_starts == 500  # never shortened
    with pytest.raises(ValueError, match="min_samples must be an integer >= 0"):
        RIVC("MlpPolicy", "CartPole-v1", calibration={"min_samples": -1})


@pytest.mark.parametrize("case", ["below", "at 1", "clipped", "inf", "nan", "float64", "tiny max_norm"])
def test_the_updates_gradient_clipping_is_torchs_bit_for_bit(case):
    from rivc.agents.optim import clip_gradient_norm

    generator = torch.Generator().manual_seed(3)
    shapes = [(64, 4), (64,), (64, 64), (64,), (3, 64), (3,), ()]
    dtype = torch.float64 if case == "float64" else torch.float32  # (torch's own function serves it)
    scale = {"below": 0.01, "clipped": 100.0}.get(case, 1.0)
    gradients = [torch.randn(shape, generator=generator, dtype=dtype) * scale for shape in shapes]
    if case in ("inf", "nan"):
        gradients[2][1, 1] = float(case)
    max_norm = 1e-5 if case == "tiny max_norm" else 10.0
    if case in ("at 1", "tiny max_norm"):  # the norm at max_norm, where 10 / (norm + 1e-6) lies within an ulp of 1;
        norm = 10.0 if case == "at 1" else 0.95e-5  # below a tiny max_norm, where the 1e-6 makes it clip
        gradients = [g * (norm / torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in gradients]))) for g in gradients]
    ours, torchs = ([torch.nn.Parameter(torch.zeros(shape, dtype=dtype)) for shape in [*shapes, ()]] for _ in range(2))
    for a, b, gradient in zip(ours, torchs, gradients):  # the last parameter takes none (a tracked clip)
        a.grad, b.grad = gradient.clone(), gradient.clone()
    clip_gradient_norm(ours, max_norm)
    torch.nn.utils.clip_grad_norm_(torchs, max_norm)
    assert ours[-1].grad is None and torchs[-1].grad is None
    for a, b in zip(ours[:-1], torchs[:-1]):
        assert torch.equal(a.grad.isnan(), b.grad.isnan()) and torch.equal(a.grad.nan_to_num(), b.grad.nan_to_num())
    if case in ("clipped", "tiny max_norm"):
        assert not any(torch.equal(a.grad, g) for a, g in zip(ours, gradients))
    if case == "below":
        assert all(torch.equal(a.grad, g) for a, g in zip(ours, gradients))


class LooseBoundsEnv(gym.Env):
    """States in [-1, 1] in every input; the space declares input 0's bounds as they are, input 1's ``loose``
    times too wide, and input 2 unbounded."""

    action_space = gym.spaces.Discrete(2)

    def __init__(self, loose: float = 50.0, offset: float = 0.0):
        self.observation_space = gym.spaces.Box(np.array([-1.0, -loose, -np.inf], np.float32),
                                                np.array([1.0, loose, np.inf], np.float32))
        self.offset = np.array([0.0, offset, 0.0], np.float32)  # input 1's states around it (outside: a bad space)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 3).astype(np.float32) + self.offset, {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 3).astype(np.float32) + self.offset
        return obs, float(action), False, self.t >= 50, {}


def test_states_outside_a_loose_bound_that_fit_tracks_are_not_said_to_be_clipped_at_the_bound():
    options = dict(seed=0, exploration_fraction=0.3, calibration=dict(track_every=100), **FAST)
    with pytest.warns(UserWarning, match=r"dimension\(s\) 1: 100\.0 % .*clips them to the space's bounds"):
        space = dict(options, calibration=dict(input_range="space"))
        RIVC("MlpPolicy", LooseBoundsEnv(offset=60.0), **space).learn(900)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = RIVC("MlpPolicy", LooseBoundsEnv(offset=60.0), **options).learn(900)
    assert fit._fitted_inputs.tolist() == [False, True, False] and 58.0 < fit.q_network.obs_low[1] < 59.1


def test_the_fitted_input_range_tracks_only_inputs_whose_bounds_are_loose(tmp_path):
    options = dict(seed=0, exploration_fraction=0.3, **FAST)
    space = RIVC("MlpPolicy", LooseBoundsEnv(), calibration=dict(input_range="space"), **options).learn(900)
    default = RIVC("MlpPolicy", LooseBoundsEnv(), calibration=dict(track_every=100), **options).learn(900)
    assert default.calibration.input_range == "fit" and default._fitted_inputs.tolist() == [False, True, False]
    fit = RIVC("MlpPolicy", LooseBoundsEnv(), calibration=dict(input_range="fit", track_every=100), **options).learn(900)
    for model in (space, fit):
        low, high = model.q_network.obs_low.numpy(), model.q_network.obs_high.numpy()
        np.testing.assert_array_equal([low[0], high[0]], [-1.0, 1.0])  # its states fill its bounds: kept
        np.testing.assert_array_equal(model.q_net_target.net.obs_low.numpy(), low)
    assert space._fitted_inputs is None and fit._fitted_inputs.tolist() == [False, True, False]
    # the loose input follows its states (1-99 % quantiles, widened) where the space's range spans 100
    assert -3.0 < fit.q_network.obs_low[1] < -0.9 and 0.9 < fit.q_network.obs_high[1] < 3.0
    assert space.q_network.obs_low[1] == -50.0
    # the unbounded input keeps its warm-up range, as with the space's bounds
    assert fit.q_network.obs_low[2] == space.q_network.obs_low[2] and fit.input_range_moves >= 1
    assert fit.conversion_error().action_agreement == 1.0
    path = fit.save(tmp_path / "fit.zip")
    assert RIVC.load(path)._fitted_inputs.tolist() == [False, True, False]
    resumed = RIVC.load(path, env=LooseBoundsEnv()).learn(250)  # a learn that counts anew checks the range anew
    assert 0 < resumed._range_checked_at <= 250 < fit._range_checked_at
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(files["rivc.json"])
    meta["input_range_fitted"] = [0, 1, 0]  # a file edited by hand: refused, not read as something else
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, json.dumps(meta) if name == "rivc.json" else data)
    with pytest.raises(CorruptFileError, match="input_range_fitted must be 3 booleans"):
        RIVC.load(path)


def test_the_fitted_input_range_judges_no_input_while_exploring_nor_one_that_has_not_varied():
    model = RIVC("MlpPolicy", LooseBoundsEnv(), seed=0, exploration_fraction=1.0,  # exploring all run long (checks
                 calibration=dict(input_range="fit", track_every=100), **FAST).learn(790)  # at 612, 712: none at 790)
    assert model._fitted_inputs is None and model.input_range_moves == 0 and model._range_checked_at >= 700
    bounds = model._declared_bounds
    assert model._fit_inputs(np.array([0.0, 0.5, 0.0]), np.array([0.0, 0.5, 1.0])).tolist() == [False, False, False]
    model._fitted_inputs = np.array([False, True, False])  # once tracked, always: a later wide spread keeps it
    assert model._fit_inputs(bounds[0].clip(-1e3), bounds[1].clip(max=1e3)).tolist() == [False, True, False]


def test_the_fitted_input_range_trains_as_the_spaces_where_no_bounds_are_loose():
    # bounds the states fill (twice their spread: within the judged share) and an unbounded input: the same
    # network, bit for bit, as with the space's bounds
    runs = [RIVC("MlpPolicy", LooseBoundsEnv(loose=2.0), seed=0, exploration_fraction=0.3,  # (each seeds torch anew)
                 calibration=dict(input_range=rng, track_every=100), **FAST).learn(900) for rng in ("space", "fit")]
    assert runs[1]._fitted_inputs.tolist() == [False] * 3 and runs[1]._range_checked_at >= 800
    for a, b in zip(runs[0].policy.q_net.parameters(), runs[1].policy.q_net.parameters()):
        assert torch.equal(a, b)


def test_a_model_records_the_bins_its_task_was_made_discrete_with(tmp_path):
    """Saved with the env's bins (from its spec), kept through a load without an env and a second save; a damaged
    record is refused, and a model of a discrete task records none."""
    from rivc.envs import ActionBins, DiscretizeAction

    model = RIVC("MlpPolicy", DiscretizeAction(gym.make("Reacher-v5"), bins=(3, 5)), seed=0, **FAST)
    path = model.save(tmp_path / "model.zip")
    loaded = RIVC.load(path)
    assert (loaded.env_id, loaded.action_bins) == ("Reacher-v5", ActionBins((3, 5)))
    again = RIVC.load(loaded.save(tmp_path / "again.zip"))  # no env: what it loaded with
    assert (again.env_id, again.action_bins) == ("Reacher-v5", ActionBins((3, 5)))
    assert RIVC.load(path, env="Reacher-v5").action_space.n == 15  # its id: made with its bins
    with pytest.raises(ValueError, match="in bins 3,5:grid, the env in 5,3:grid"):  # the same count, other actions
        RIVC.load(path, env=DiscretizeAction(gym.make("Reacher-v5"), bins=(5, 3)))
    assert RIVC.load(RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST).save(tmp_path / "cp.zip")).action_bins is None
    meta = _saved_meta(path)
    assert meta["action_bins"] == {"bins": [3, 5], "mode": "grid"}
    _write_meta(path, {**meta, "action_bins": {"bins": [3, 0]}})
    with pytest.raises(CorruptFileError, match="action bins must be an integer >= 2"):
        RIVC.load(path)


def test_reward_scale_auto_brings_large_rewards_to_order_one_and_leaves_small_ones(tmp_path):
    """"auto": 1 / max(1, mean |r|) over the first 1,000 stored rewards, fixed then, saved and loaded; CartPole's
    rewards (1 per step) train bit for bit as with a fixed 1.0. It is the default."""
    big = gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: 5.0 * r)
    model = RIVC("MlpPolicy", big, seed=0, reward_scale="auto", **dict(FAST, learning_starts=1000))
    model.learn(900)
    assert model.reward_scale is None  # not measured yet: fewer than 1,000 rewards
    model.learn(300, reset_num_timesteps=False)
    assert model.reward_scale == pytest.approx(0.2)
    loaded = RIVC.load(model.save(tmp_path / "model.zip"))
    assert (loaded.reward_scale_asked, loaded.reward_scale) == ("auto", model.reward_scale)
    plain = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST).learn(1500)
    fixed = RIVC("MlpPolicy", "CartPole-v1", seed=0, reward_scale=1.0, **FAST).learn(1500)  # (each seeds the globals)
    assert plain.reward_scale_asked == "auto" and plain.reward_scale == fixed.reward_scale == 1.0
    for (name, a), b in zip(plain.policy.state_dict().items(), fixed.policy.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("head", ["q", "dueling"])
def test_reward_scale_measured_after_updates_rescales_the_head_and_keeps_the_actions(head):
    """Updates before the scale is measured (a warm-up under 1,000 steps): both networks' heads and Adam's moments of
    them are rescaled then; the head's codes stay (its scales follow), so the Q-values scale and the actions stay."""
    big = gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: 4.0 * r)
    model = RIVC("MlpPolicy", big, seed=1, reward_scale="auto", policy_kwargs=dict(head=head),
                 **dict(FAST, learning_starts=200))
    model.learn(996)  # updates from step 200 on, the scale not yet measured
    obs = model._replay_observations(limit=256)
    nets = (model.q_network, model.q_net_target.net)
    last = len(model.q_network.layers) - 1
    before = [net(torch.as_tensor(obs)).detach().numpy() for net in nets]
    layers = [net.quantize_layer(last, net._input_step_value if last == 0 else 1.0) for net in nets]
    codes = [layer._codes.copy() for layer in layers]
    scales = [layer._weight_scale.copy() for layer in layers]
    moment = model.policy.optimizer.state[model.q_network.layers[-1].weight]["exp_avg_sq"].clone()
    assert model._decided_reward_scale() == 1.0 and model.reward_scale is None  # (what train() asks first)
    model.replay_buffer.rewards[996:1000] = 4.0  # as after 1,000 steps
    model.replay_buffer.pos = 1000
    assert model._decided_reward_scale() == pytest.approx(0.25)
    for i, net in enumerate(nets):
        after = net(torch.as_tensor(obs)).detach().numpy()
        layer = net.quantize_layer(last, net._input_step_value if last == 0 else 1.0)
        np.testing.assert_array_equal(layer._codes, codes[i])
        np.testing.assert_allclose(layer._weight_scale, 0.25 * scales[i], rtol=1e-6)
        np.testing.assert_allclose(after, 0.25 * before[i], rtol=1e-4, atol=1e-4)
        assert (after.argmax(axis=1) == before[i].argmax(axis=1)).all()
    torch.testing.assert_close(model.policy.optimizer.state[model.q_network.layers[-1].weight]["exp_avg_sq"],
                               moment * 0.0625)


def test_the_reward_scale_reaches_the_target():
    """CartPole's rewards times 4 with reward_scale=0.25 train bit for bit as CartPole's own (powers of two: exact)."""
    big = gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: 4.0 * r)
    scaled = RIVC("MlpPolicy", big, seed=0, reward_scale=0.25, **FAST).learn(1200)
    plain = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST).learn(1200)
    unscaled = RIVC("MlpPolicy", gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: 4.0 * r), seed=0,
                    reward_scale=1.0, **FAST).learn(1200)
    for (name, a), b, c in zip(scaled.policy.state_dict().items(), plain.policy.state_dict().values(),
                               unscaled.policy.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(b, c) for b, c in zip(plain.policy.state_dict().values(),
                                                     unscaled.policy.state_dict().values()))


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "often", True])
def test_reward_scale_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="reward_scale must be a finite number > 0 or 'auto'"):
        RIVC("MlpPolicy", "CartPole-v1", reward_scale=bad)


def test_models_saved_before_the_reward_scale_load_unscaled_and_a_damaged_one_is_refused(tmp_path):
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, reward_scale="auto", **FAST)
    model.learn(1100)
    path = model.save(tmp_path / "model.zip")
    meta = _saved_meta(path)
    assert meta["reward_scale_measured"] == 1.0 and meta["hyperparameters"]["reward_scale"] == "auto"
    old = json.loads(json.dumps(meta))
    del old["reward_scale_measured"], old["hyperparameters"]["reward_scale"]
    _write_meta(path, old)
    assert (RIVC.load(path).reward_scale_asked, RIVC.load(path).reward_scale) == (1.0, 1.0)
    _write_meta(path, {**meta, "reward_scale_measured": 7.0})
    with pytest.raises(CorruptFileError, match="reward_scale_measured must be a number in"):
        RIVC.load(path)


def _saved_meta(path) -> dict:
    """A saved model's ``rivc.json``."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("rivc.json"))


def _write_meta(path, meta: dict) -> None:
    """Rewrite a saved model with ``meta`` as its ``rivc.json`` (its other files as they are)."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, json.dumps(meta) if name == "rivc.json" else data)
