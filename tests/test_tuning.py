import inspect
import json

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
    params = {"alpha": 0.99, "beta": 3.0, "learning_rate": 5e-4}
    assert effective_hyperparams("rivc", params) == params
    assert effective_hyperparams("gap", params) == params
    for variant in ("naive", "qat", "fpnn"):
        assert effective_hyperparams(variant, params) == {"learning_rate": 5e-4}
    boltzmann = {**params, "exploration": "boltzmann"}
    assert effective_hyperparams("naive", boltzmann) == {"beta": 3.0, "learning_rate": 5e-4, "exploration": "boltzmann"}
    # runs that differ only in what the variant ignores share one key (and one stored record)
    assert run_params("naive", params) == run_params("naive", {"learning_rate": 5e-4})
    assert run_params("rivc", params) != run_params("rivc", {"learning_rate": 5e-4})


def _store(results, env_id, params, seed, final, curve_value):
    spec = tune.spec(env_id, params, seed)
    record = {"final_return": final, "final_success": float("nan"), "final_agreement": 1.0,
              "curve": [[i, curve_value] for i in range(8)]}
    (results / f"{spec.key}.json").write_text(json.dumps(record))


def test_score_uses_final_and_second_half_of_the_curve():
    record = {"final_return": 100.0, "curve": [[0, 0.0], [1, 0.0], [2, 50.0], [3, 70.0]]}
    assert tune.score(record) == pytest.approx(0.5 * (100 + 60))


def test_combination_and_report_pick_the_best_configuration(tmp_path):
    env_id = "CartPole-v1"
    scores = {(): 100.0, (("alpha", 0.99),): 150.0, (("beta", 3.0),): 120.0, (("learning_rate", 5e-4),): 50.0}
    for params in tune.single_changes():
        value = scores.get(tuple(sorted(params.items())), 80.0)
        for seed in tune.TUNING_SEEDS:
            _store(tmp_path, env_id, params, seed, value, value)
    # alpha and beta beat the defaults, the learning rate did not: stage 2 combines the first two
    assert tune.combination(env_id, tmp_path) == {"alpha": 0.99, "beta": 3.0}
    assert tune.configs_for(env_id, tmp_path)[-1] == {"alpha": 0.99, "beta": 3.0}
    path, chosen = tune.report([env_id], tmp_path, tmp_path)
    assert chosen == {env_id: {"alpha": 0.99}}  # the combination has no runs yet: best single change
    text = path.read_text()
    assert "| alpha=0.99 **(chosen)** | 2 | 150.0 +- 0.0 | yes |" in text and "'CartPole-v1': {'alpha': 0.99}," in text

    for seed in tune.TUNING_SEEDS:  # the combination ran and scored best
        _store(tmp_path, env_id, {"alpha": 0.99, "beta": 3.0}, seed, 200.0, 200.0)
    assert tune.report([env_id], tmp_path, tmp_path)[1] == {env_id: {"alpha": 0.99, "beta": 3.0}}


def test_no_combination_when_fewer_than_two_parameters_improve(tmp_path):
    env_id = "rivc/ArmReach-v0"
    for params in tune.single_changes():
        value = 20.0 if params == {"alpha": 0.5} else 10.0
        for seed in tune.TUNING_SEEDS:
            _store(tmp_path, env_id, params, seed, value, value)
    assert tune.combination(env_id, tmp_path) is None
    assert tune.configs_for(env_id, tmp_path) == tune.single_changes()


def test_a_change_within_seed_noise_does_not_replace_the_defaults(tmp_path):
    env_id = "CartPole-v1"
    for params in tune.single_changes():
        for seed, noise in zip(tune.TUNING_SEEDS, (-40.0, 40.0)):
            value = (120.0 if params == {"beta": 1.0} else 100.0) + noise  # +20 on average, spread 40
            _store(tmp_path, env_id, params, seed, value, value)
    path, chosen = tune.report([env_id], tmp_path, tmp_path)
    assert chosen == {env_id: {}}
    assert "| beta=1.0 | 2 | 120.0 +- 40.0 | no |" in path.read_text()
