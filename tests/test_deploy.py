import json
import subprocess
import sys

import numpy as np
import pytest

from rivc.agents import RIVC, VARIANTS
from rivc.agents.cli import build_parser, main
from rivc.neurochip import load_policy, save_policy
from rivc import CorruptFileError

FAST = dict(learning_starts=200, batch_size=32, target_update_interval=100, buffer_size=5000)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    model = RIVC("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.learn(1500)
    model.save(folder / "model.zip")
    return folder


def test_export_and_load_policy_snntorch_gives_the_agents_actions(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--backend", "snntorch", "--out", str(tmp_path / "snn"), "--steps", "300"]) == 0
    assert "action agreement" in capsys.readouterr().out
    policy = load_policy(tmp_path / "snn")
    model = RIVC.load(run_dir / "model.zip")
    obs = np.random.default_rng(0).normal(0, 0.5, (300, 4)).astype(np.float32)
    np.testing.assert_array_equal(policy.predict(obs), model.predict(obs, deterministic=True)[0])
    assert policy.metadata["env_id"] == "CartPole-v1"


def test_export_akida_writes_its_model_file_and_runs_exactly(run_dir, tmp_path):
    pytest.importorskip("akida")
    assert main(["export", str(run_dir), "--backend", "akida", "--out", str(tmp_path / "ak"), "--steps", "300"]) == 0
    assert (tmp_path / "ak" / "akida_model.fbz").stat().st_size > 0
    policy = load_policy(tmp_path / "ak")
    obs = np.random.default_rng(1).normal(0, 0.5, (300, 4)).astype(np.float32)
    np.testing.assert_array_equal(policy.q_values(obs), policy.network.q_values(obs))


@pytest.mark.parametrize("backend", ["snntorch", "akida"])
def test_deploy_runs_without_torch(run_dir, tmp_path, backend, capsys):
    if backend == "akida":
        pytest.importorskip("akida")
    assert main(["export", str(run_dir), "--backend", backend, "--out", str(tmp_path / "p"), "--steps", "200"]) == 0
    if backend == "akida":
        assert "TwoNodesIPv2: fits=" in capsys.readouterr().out
        assert "hardware_layers" in json.loads((tmp_path / "p" / "policy.json").read_text())["mapping"]
    code = (
        "import sys; from rivc.agents.cli import main; rc = main(['deploy', sys.argv[1], '--episodes', '2']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"CartPole-v1: deployed {backend} policy return" in done.stdout and "ms per action" in done.stdout


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


def test_save_policy_refuses_a_network_the_backend_cannot_run(tmp_path):
    pytest.importorskip("akida")
    from conftest import random_network
    from rivc.neurochip.akida_backend import AkidaConversionError

    with pytest.raises(AkidaConversionError):
        save_policy(tmp_path / "p", random_network().export(), backend="akida")
    assert not (tmp_path / "p").exists()


def test_cli_variants_match_the_agent():
    parser = build_parser()
    choices = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "variant").choices
    assert list(choices) == list(VARIANTS)
