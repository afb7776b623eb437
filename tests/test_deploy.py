"""Trained == deployed: `rivc train --target T` -> `rivc export` -> `rivc deploy` (numpy + akida, no torch)
takes the training-time policy's action on every visited state and repeats its evaluation returns."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import random_network
from rivc import CorruptFileError, IntegerNetwork
from rivc.agents import VARIANTS
from rivc.agents.cli import build_parser, main
from rivc.neurochip import load_policy, save_policy

FAST = ["--timesteps", "1500", "--eval-episodes", "3", "--hyperparams", "defaults"]


# Akida 2.0 at mixed widths too: 8-bit weights and activations, then a 4-bit layer and head
WIDTHS = {"akida-mixed": ["--layer-bits", "8/8,8/4,4/32"]}


@pytest.fixture(scope="module", params=["akida", "akd1000", "rate", "akida-mixed"])
def run_dir(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"run_{request.param}")
    target = request.param.split("-")[0]
    assert main(["train", "--target", target, "--out", str(folder), *FAST, *WIDTHS.get(request.param, [])]) == 0
    return folder, target


def deployed_backends(target):
    return ["snntorch"] if target == "rate" else ["snntorch", "akida"]


def test_export_deploys_the_training_time_actions_and_returns(run_dir, tmp_path, capsys):
    folder, target = run_dir
    for backend in deployed_backends(target):
        if backend == "akida":
            pytest.importorskip("akida")
        out = tmp_path / backend
        assert main(["export", str(folder), "--backend", backend, "--out", str(out), "--episodes", "3"]) == 0
        printed = capsys.readouterr().out
        assert "identical actions to the training-time policy on 100.00 %" in printed
        meta = json.loads((out / "policy.json").read_text())
        assert meta["identical_actions"]["rate"] == 1.0 and meta["target"] == target
        if backend == "akida":
            assert f"{meta['fit']['device']}: hardware-resident" in printed and meta["fit"]["hardware_only"]
            assert (out / "akida_model.fbz").stat().st_size > 0
            assert main(["report", str(out), "--episodes", "1"]) == 0  # no board here: the energy is an estimate
            assert "no Akida board attached (akida.devices() is empty)" in capsys.readouterr().out
        code = ("import sys; from rivc.agents.cli import main; rc = main(['deploy', sys.argv[1], '--episodes', '3']); "
                "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
        done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert f"CartPole-v1: deployed {backend} policy return" in done.stdout
        assert "deployed returns equal it episode for episode" in done.stdout
        summary = json.loads((folder / "summary.json").read_text())
        assert meta["training_evaluation"]["returns"] == summary["evaluation"]["returns"]


def test_report_gives_the_cost_of_a_deployed_policy_without_torch(run_dir, tmp_path):
    folder, target = run_dir
    out = tmp_path / "policy"
    assert main(["export", str(folder), "--out", str(out), "--episodes", "1"]) == 0
    code = ("import sys; from rivc.agents.cli import main; rc = main(['report', sys.argv[1], '--episodes', '2', "
            "'--json', sys.argv[2]]); assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "cost.json")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert f"target {target}: per action" in done.stdout and "energy ESTIMATE (Horowitz 45 nm" in done.stdout
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert cost["target"] == target and cost["dense_macs"] == 4 * 64 + 64 * 64 + 64 * 2
    assert 0 < cost["accumulates"] and 0 <= cost["activation_sparsity"] <= 1 and cost["energy_pj"] < cost["float_energy_pj"]


def test_load_policy_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no deployable policy"):
        load_policy(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "policy.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        load_policy(tmp_path / "bad")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "policy.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CorruptFileError, match="not a rivc policy folder"):
        load_policy(tmp_path / "foreign")


def damaged(tmp_path, network, **changes):
    """The network's file with some arrays replaced, as a damaged or hand-edited file would hold them."""
    arrays = {**network.to_arrays(), **changes}
    path = tmp_path / "damaged.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("target", ["akida", "akd1000", "rate"])
def test_damaged_numbers_are_refused_when_a_network_loads(tmp_path, target):
    network = random_network(target=target).export()
    head = len(network.layers) - 1
    for name, value, problem in (
            (f"s{head}", np.full(network.n_actions, np.nan), f"layer {head}: the accumulator scales must be finite"),
            (f"s{head}", np.full(network.n_actions, np.inf), "scales must be finite and > 0"),
            ("s0", -network.layers[0].scale, "layer 0: the accumulator scales"),
            ("w1", network.layers[1].weights + 0.5, "'w1' holds values that are not whole numbers"),
            ("w1", np.where(network.layers[1].weights == 0, np.iinfo(np.int64).min, network.layers[1].weights),
             "layer 1: weight codes exceed"),  # a NaN float weight cast to int64
            ("b0", network.layers[0].bias.astype(np.float64) + np.nan, "'b0' holds values that are not whole")):
        with pytest.raises(CorruptFileError, match=problem):
            IntegerNetwork.load(damaged(tmp_path, network, **{name: value}))


def test_a_policy_runs_only_on_the_spaces_it_was_trained_for(run_dir, tmp_path, capsys):
    folder, _ = run_dir
    out = tmp_path / "policy"
    assert main(["export", str(folder), "--out", str(out), "--episodes", "1"]) == 0
    for command in ("deploy", "report"):
        assert main([command, str(out), "--env", "rivc/PanTrackState-v0", "--episodes", "1"]) == 2
        assert "the policy chooses among 2 actions" in capsys.readouterr().err
    assert main(["deploy", str(out), "--env", "Acrobot-v1", "--episodes", "1"]) == 2
    assert "chooses among 2 actions" in capsys.readouterr().err
    from types import SimpleNamespace

    from gymnasium import spaces
    from rivc.neurochip.deploy import check_env

    other_shape = SimpleNamespace(action_space=spaces.Discrete(2), observation_space=spaces.Box(-1, 1, (6,)))
    with pytest.raises(ValueError, match=r"reads observations of shape \(4,\), Six gives \(6,\)"):
        check_env(load_policy(out).network, other_shape, "Six")
    meta = json.loads((out / "policy.json").read_text())
    (out / "policy.json").write_text(json.dumps({**meta, "n_actions": 3}))
    with pytest.raises(CorruptFileError, match="disagree on the policy's spaces"):
        load_policy(out)


def test_save_policy_refuses_a_network_the_backend_cannot_run_and_writes_nothing(tmp_path):
    pytest.importorskip("akida")
    from rivc.neurochip.akida_backend import AkidaConversionError

    with pytest.raises(AkidaConversionError, match="target 'rate'"):
        save_policy(tmp_path / "p", random_network(target="rate").export(), backend="akida")
    assert not (tmp_path / "p").exists()


def test_export_of_a_rate_coded_run_to_akida_is_a_one_line_error(run_dir, tmp_path, capsys):
    folder, target = run_dir
    if target != "rate":
        pytest.skip("the Akida targets export to Akida")
    pytest.importorskip("akida")
    assert main(["export", str(folder), "--backend", "akida", "--out", str(tmp_path / "p")]) == 2
    assert "which Akida does not run" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_cli_variants_match_the_agent():
    parser = build_parser()
    choices = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "variant").choices
    assert list(choices) == list(VARIANTS)


def test_deployed_policy_matches_the_agent_on_random_states(run_dir, tmp_path):
    from rivc.agents import RIVC

    folder, target = run_dir
    assert main(["export", str(folder), "--out", str(tmp_path / "snn"), "--episodes", "1"]) == 0
    policy, model = load_policy(tmp_path / "snn"), RIVC.load(folder / "model.zip")
    obs = np.random.default_rng(0).normal(0, 0.5, (300, 4)).astype(np.float32)
    np.testing.assert_array_equal(policy.predict(obs), model.predict(obs, deterministic=True)[0])


def test_export_nir_writes_a_file_sinabs_runs_as_the_training_time_policy(run_dir, tmp_path, capsys):
    folder, target = run_dir
    out = tmp_path / "policy.nir"
    if target != "rate":
        assert main(["export", str(folder), "--format", "nir", "--out", str(out)]) == 2
        assert "train with target='rate' to export NIR" in capsys.readouterr().err and not out.exists()
        return
    assert main(["export", str(folder), "--format", "nir", "--backend", "akida", "--out", str(out)]) == 2
    assert "a NIR file (--format nir) has none" in capsys.readouterr().err
    assert main(["export", str(folder), "--format", "nir", "--out", str(tmp_path)]) == 2
    assert "is a folder: give the NIR file's name" in capsys.readouterr().err
    pytest.importorskip("sinabs")
    assert main(["export", str(folder), "--format", "nir", "--out", str(out), "--episodes", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: CartPole-v1 policy, NIR graph, 7 nodes, T = 15 steps;" in printed
    assert "Sinabs, NIR's IF (one spike a step, no floor), on" in printed
    assert "visited states: exact; spike counts equal 100.00 %, greedy actions equal 100.00 %, max |dQ| 0" in printed
