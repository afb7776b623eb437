"""RIVC through the RL Baselines3 Zoo's own scripts (rivc.agents.zoo): train, enjoy, and -optimize with a journal
storage that two processes share."""

import subprocess
import sys

import pytest
import yaml

pytest.importorskip("rl_zoo3")
pytest.importorskip("pandas")

from rivc.agents.hyperparams import tuned_hyperparams, zoo_hyperparams  # noqa: E402
from rivc.agents.zoo import HYPERPARAMS_FILE  # noqa: E402

SHORT = ["--hyperparams", "learning_starts:100", "train_freq:4", "gradient_steps:1", "buffer_size:2000"]


def zoo(*arguments: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rivc.agents.zoo", *arguments], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_the_shipped_hyperparameters_agree_with_the_zoos_and_ours():
    shipped = yaml.safe_load(HYPERPARAMS_FILE.read_text())
    for env_id in ("CartPole-v1", "LunarLander-v3"):
        zoo_settings = zoo_hyperparams(env_id)
        mine = dict(shipped[env_id])
        assert mine.pop("n_timesteps") == zoo_settings.timesteps
        assert eval(mine.pop("policy_kwargs")) == zoo_settings.kwargs.pop("policy_kwargs")  # noqa: S307 (our file)
        assert {k: mine[k] for k in zoo_settings.kwargs} == zoo_settings.kwargs
    for env_id in ("rivc/ArmReach-v0", "rivc/MobileReach-v0", "rivc/MobileReachCamera-v0"):
        assert tuned_hyperparams(env_id).items() <= shipped[env_id].items()
    assert shipped["rivc/MobileReachCamera-v0"]["policy"] == "CnnPolicy"


def test_the_zoo_trains_rivc_and_its_enjoy_loads_the_model(tmp_path):
    trained = zoo("train", "--algo", "rivc", "--env", "CartPole-v1", "-n", "400", "-f", "logs", "--eval-freq", "-1",
                  *SHORT, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "logs" / "rivc" / "CartPole-v1_1" / "CartPole-v1.zip").is_file()
    config = (tmp_path / "logs" / "rivc" / "CartPole-v1_1" / "CartPole-v1" / "config.yml").read_text()
    assert "akida" in config and "weight_bits" in config  # RIVC's own settings from the shipped file
    enjoyed = zoo("enjoy", "--algo", "rivc", "--env", "CartPole-v1", "-f", "logs", "-n", "200", "--no-render",
                  cwd=tmp_path)
    assert enjoyed.returncode == 0, enjoyed.stderr[-2000:]
    assert "Mean reward" in enjoyed.stdout


def test_optimize_samples_rivcs_knobs_into_a_journal_that_two_processes_share(tmp_path):
    import optuna

    study = ["--algo", "rivc", "--env", "CartPole-v1", "-n", "300", "-optimize", "--n-trials", "1", "--n-jobs", "1",
             "--sampler", "tpe", "--pruner", "median", "--storage", "study.log", "--study-name", "rivc-cartpole",
             "--eval-episodes", "1", "--n-evaluations", "1", "-f", "logs", *SHORT]
    for _ in range(2):  # two processes, one after the other, against one storage
        done = zoo("train", *study, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log")))
    trials = optuna.load_study(study_name="rivc-cartpole", storage=storage).trials
    assert len(trials) == 2 and all({"alpha", "beta", "target", f"bits_{trial.params['target']}"} <= trial.params.keys()
                                    for trial in trials)


def test_the_sampler_gives_each_target_only_widths_it_runs():
    import optuna

    from rivc.agents.zoo import sample_rivc_params
    from rivc.chip import TARGETS

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = sample_rivc_params(trial, 2, 1, {"using_her_replay_buffer": False})
        chip = TARGETS[params["target"]]
        assert params["quant"]["weight_bits"] in chip.weight_bits and params["quant"]["activation_bits"] in chip.activation_bits
        assert trial.params[f"bits_{params['target']}"] == params["quant"]["weight_bits"]  # what TPE learns from
        study.tell(trial, 0.0)


@pytest.mark.parametrize("given", [["--conf-file", "mine.yml"], ["--conf-file=mine.yml"], ["-conf", "mine.yml"],
                                   ["--conf", "mine.yml"]])
def test_a_users_own_hyperparameter_file_is_not_overridden(given):
    from rivc.agents.zoo import zoo_arguments

    assert zoo_arguments("train", ["--algo", "rivc", *given]) == ["--algo", "rivc", *given]
    assert zoo_arguments("train", ["--algo", "rivc"])[-1] == str(HYPERPARAMS_FILE)
