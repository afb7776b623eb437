"""`rivc push` / `rivc pull` against a local mock of the Hugging Face Hub's API (no network here): the mock keeps
each repository as a folder and implements the three calls rivc makes (create_repo, upload_folder,
snapshot_download) with huggingface_hub's signatures."""

import importlib.util
import inspect
import json
import shutil
from pathlib import Path

import pytest

from rivc.agents import hub
from rivc.agents.cli import main

FAST = ["--timesteps", "600", "--eval-episodes", "1", "--hyperparams", "defaults"]


def _as_the_hub_takes_it(method: str, **kwargs) -> None:
    """Each call rivc makes must fit huggingface_hub's own signature of that method (where it is installed)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    inspect.signature(getattr(huggingface_hub.HfApi, method)).bind(None, **kwargs)


class LocalHub:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create_repo(self, **kwargs) -> str:
        _as_the_hub_takes_it("create_repo", **kwargs)
        folder = self.root / kwargs["repo_id"]
        if folder.exists() and not kwargs.get("exist_ok"):
            raise FileExistsError(kwargs["repo_id"])
        folder.mkdir(parents=True, exist_ok=True)
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs) -> None:
        _as_the_hub_takes_it("upload_folder", **kwargs)
        repo = self.root / kwargs["repo_id"]
        if kwargs.get("delete_patterns") == "*":  # the remote files not in the folder go
            shutil.rmtree(repo)
        shutil.copytree(kwargs["folder_path"], repo, dirs_exist_ok=True)

    def snapshot_download(self, **kwargs) -> str:
        _as_the_hub_takes_it("snapshot_download", **kwargs)
        repo, local_dir = self.root / kwargs["repo_id"], kwargs["local_dir"]
        if not repo.is_dir():
            raise FileNotFoundError(f"404: no repository {kwargs['repo_id']}")
        shutil.copytree(repo, local_dir, dirs_exist_ok=True)
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)  # as huggingface_hub does
        return str(local_dir)


@pytest.fixture
def local_hub(tmp_path, monkeypatch) -> LocalHub:
    mock = LocalHub(tmp_path / "hub")
    monkeypatch.setattr(hub, "_api", lambda token=None: mock)
    return mock


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("share")
    assert main(["train", "--out", str(root / "run"), *FAST]) == 0
    backend = "akida" if importlib.util.find_spec("akida") else "snntorch"  # (the .fbz is shared too)
    assert main(["export", str(root / "run"), "--backend", backend, "--out", str(root / "run" / "policy"),
                 "--episodes", "1"]) == 0
    return root / "run"


def test_push_then_pull_round_trips_a_run_with_its_policy_and_card(run, local_hub, tmp_path, capsys):
    assert main(["push", str(run), "--repo-id", "someone/cartpole-rivc"]) == 0
    repo = local_hub.root / "someone" / "cartpole-rivc"
    card = (repo / "README.md").read_text()
    assert "library_name: rivc" in card and "- CartPole-v1" in card and "mean_reward" in card
    assert "target (chip arithmetic) | `akida`" in card and "identical actions" in card
    assert main(["pull", "someone/cartpole-rivc", "--out", str(tmp_path / "shared")]) == 0
    shared = tmp_path / "shared"
    assert (shared / "model.zip").read_bytes() == (run / "model.zip").read_bytes()
    assert (shared / "policy" / "akida_model.fbz").is_file() == (importlib.util.find_spec("akida") is not None)
    for name in (run / "policy").iterdir():
        assert (shared / "policy" / name.name).read_bytes() == name.read_bytes()
    assert not (shared / ".cache").exists()
    assert main(["deploy", str(shared / "policy"), "--episodes", "1"]) == 0


def test_pull_refuses_a_damaged_share_and_leaves_the_folder_as_it_was(run, local_hub, tmp_path, capsys):
    assert main(["push", str(run), "--repo-id", "someone/damaged"]) == 0
    network = local_hub.root / "someone" / "damaged" / "policy" / "network.npz"
    network.write_bytes(network.read_bytes()[:-10] + b"0123456789")  # a changed file
    assert main(["pull", "someone/damaged", "--out", str(tmp_path / "shared")]) == 2
    err = capsys.readouterr().err
    assert "policy/network.npz" in err and "do not match" in err and err.count("\n") == 1
    assert not (tmp_path / "shared").exists()
    (local_hub.root / "someone" / "damaged" / "rivc_manifest.json").unlink()
    assert main(["pull", "someone/damaged", "--out", str(tmp_path / "shared")]) == 2
    assert "not a rivc share" in capsys.readouterr().err
    assert main(["pull", "someone/missing", "--out", str(tmp_path / "shared")]) == 2
    assert "404" in capsys.readouterr().err


def test_push_needs_a_policy_folder(run, local_hub, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "model.zip", bare / "model.zip")
    assert main(["push", str(bare), "--repo-id", "someone/bare"]) == 2
    assert "rivc export" in capsys.readouterr().err
    assert not (local_hub.root / "someone" / "bare").exists()  # nothing uploaded


def test_a_second_push_replaces_the_share_whole(run, local_hub, tmp_path):
    nir_file = tmp_path / "extra.nir"
    nir_file.write_bytes(b"an earlier push's NIR file")
    assert main(["push", str(run), "--repo-id", "someone/twice", "--nir", str(nir_file)]) == 0
    assert main(["push", str(run), "--repo-id", "someone/twice"]) == 0  # without it now
    assert not (local_hub.root / "someone" / "twice" / "policy.nir").exists()
    assert main(["pull", "someone/twice", "--out", str(tmp_path / "shared")]) == 0


def test_push_refuses_a_policy_folder_of_another_run(run, local_hub, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(["train", "--out", str(other), "--seed", "5", *FAST]) == 0
    assert main(["export", str(other), "--out", str(other / "policy"), "--episodes", "1"]) == 0
    assert main(["push", str(run), "--repo-id", "someone/mixed", "--policy", str(other / "policy")]) == 2
    assert "does not hold" in capsys.readouterr().err and not (local_hub.root / "someone" / "mixed").exists()
    # a share edited by hand so that its manifest agrees with another run's policy folder: pull refuses it too
    assert main(["push", str(run), "--repo-id", "someone/edited"]) == 0
    repo = local_hub.root / "someone" / "edited"
    shutil.rmtree(repo / "policy")
    shutil.copytree(other / "policy", repo / "policy")
    (repo / "rivc_manifest.json").write_text(json.dumps({"format": "rivc.share", "version": 1,
                                                          "files": hub._shared_files(repo)}))
    assert main(["pull", "someone/edited", "--out", str(tmp_path / "shared")]) == 2
    assert "does not hold its model's network" in capsys.readouterr().err and not (tmp_path / "shared").exists()


def test_the_card_says_how_a_continuous_task_was_made_discrete():
    policy = {"env_id": "Pendulum-v1", "target": "akida", "action_bins": {"bins": 5, "mode": "grid"},
              "quant": {"weight_bits": 4, "activation_bits": 4, "input_bits": 8}}
    card = hub.model_card(policy, {}, ["policy/network.npz"], "user/pendulum")
    assert "| actions | continuous, in bins `5:grid` (`rivc train --action-bins 5:grid`" in card
    assert "| actions |" not in hub.model_card({**policy, "action_bins": None}, {}, [], "user/pendulum")
