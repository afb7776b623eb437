import inspect

import pytest

from rivc.agents import RIVC
from rivc.agents.hyperparams import TUNABLE, TUNED_HYPERPARAMS, effective_hyperparams, tuned_hyperparams
from benchmarks import tune
from benchmarks.ablation import TASKS, run_params


def test_tunable_values_start_at_the_agent_defaults():
    defaults = inspect.signature(RIVC.__init__).parameters
    for name, values in TUNABLE.items():
        assert values[0] == defaults[name].default, name
        assert len(set(values)) == len(values), name


@pytest.mark.parametrize("env_id", list(TASKS))
def test_tuned_hyperparams_build_an_agent(env_id):
    import rivc.envs  # noqa: F401

    params = tuned_hyperparams(env_id)
    assert env_id in TUNED_HYPERPARAMS and set(params) <= set(TUNABLE)
    model = RIVC("MlpPolicy", env_id, **params)
    for name, value in params.items():
        assert getattr(model, name) == value
    params["alpha"] = 0.123  # a copy: the table itself is unchanged
    assert TUNED_HYPERPARAMS[env_id].get("alpha") != 0.123
    assert tuned_hyperparams("NoSuchTask-v0") == {}


def test_effective_hyperparams_drop_what_a_variant_never_reads():
    params = {"alpha": 0.99, "beta": 3.0, "gap_clip": -1.0, "learning_rate": 5e-4}
    assert effective_hyperparams("rivc", params) == params
    assert effective_hyperparams("gap", params) == params
    for variant in ("naive", "qat", "fpnn"):
        assert effective_hyperparams(variant, params) == {"learning_rate": 5e-4}
    boltzmann = {**params, "exploration": "boltzmann"}
    assert effective_hyperparams("naive", boltzmann) == {"beta": 3.0, "learning_rate": 5e-4, "exploration": "boltzmann"}
    # runs that differ only in what the variant ignores share one key (and one stored record)
    assert run_params("naive", params) == run_params("naive", {"learning_rate": 5e-4})
    assert run_params("rivc", params) != run_params("rivc", {"learning_rate": 5e-4})


def test_score_uses_final_and_second_half_of_the_curve():
    assert tune.score([0.0, 0.0, 50.0, 70.0], final=100.0) == pytest.approx(0.5 * (100 + 60))


def test_two_processes_add_trials_to_one_journal_study_and_the_report_ranks_them(tmp_path):
    import subprocess
    import sys

    import optuna

    storage = tmp_path / "study.log"
    command = [sys.executable, "benchmarks/tune.py", "--env", "CartPole-v1", "--trials", "1", "--timesteps", "240",
               "--seeds", "100", "--storage", str(storage)]
    runs = [subprocess.Popen(command, cwd=tune.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # at the same time, against one journal file
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="rivc-CartPole-v1-240", storage=tune.storage_of(storage))
    assert len(study.trials) == 2 and all(set(t.params) == set(TUNABLE) for t in study.trials)
    assert all(t.state == optuna.trial.TrialState.COMPLETE and "seed100" in t.user_attrs for t in study.trials)
    page = tune.report(tune.storage_of(storage), tmp_path / "TUNING.md", "test")
    text = page.read_text()
    assert "rivc-CartPole-v1-240" in text and "2 trials: 2 complete, 0 pruned" in text and "Best:" in text


def test_a_trial_reports_each_curve_point_and_stops_when_the_pruner_says_so():
    import optuna

    class Trial:  # what objective() asks of Optuna's trial
        def __init__(self):
            self.reported = []

        def suggest_categorical(self, name, values):
            return values[0]

        def report(self, value, step):
            self.reported.append(step)

        def should_prune(self):
            return len(self.reported) == 3

    trial = Trial()
    with pytest.raises(optuna.TrialPruned):
        tune.objective(trial, "CartPole-v1", 240, (100, 101))
    assert trial.reported == [0, 1, 2]  # one report per curve point, stopped at the third
    trial.should_prune = lambda: False
    trial.reported, trial.set_user_attr = [], lambda *args: None
    tune.objective(trial, "CartPole-v1", 240, (100, 101))
    assert trial.reported == list(range(2 * tune.EVAL_POINTS))  # both seeds' points, numbered on


def test_a_study_whose_trials_ran_another_gap_bound_is_not_resumed(tmp_path):
    import optuna

    storage = tune.storage_of(tmp_path / "study.log")
    old = optuna.create_study(study_name="rivc-CartPole-v1-240", storage=storage, direction="maximize")
    old.add_trial(optuna.trial.create_trial(value=1.0))  # tuned before the bound was the default: no "gap_clip"
    with pytest.raises(ValueError, match=r"ran with the gap term bound at None, its trials now run at -10.0: pass "
                                         r"another --study"):
        tune.tune("CartPole-v1", 1, storage, 240, (100,))
    assert len(optuna.load_study(study_name="rivc-CartPole-v1-240", storage=storage).trials) == 1  # nothing added
