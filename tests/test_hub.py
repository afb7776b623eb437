"""`rivc push` / `rivc pull` against a local mock of the Hugging Face Hub's API (no network here): the mock keeps
each repository as a folder and implements the three calls rivc makes (create_repo, upload_folder,
snapshot_download) with huggingface_hub's signatures."""

import importlib.util
import shutil
from pathlib import Path

import pytest

from rivc.agents import hub
from rivc.agents.cli import main

FAST = ["--timesteps", "600", "--eval-episodes", "1", "--hyperparams", "defaults"]


class LocalHub:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create_repo(self, repo_id: str, *, exist_ok: bool = False, private: bool = False, **_) -> str:
        folder = self.root / repo_id
        if folder.exists() and not exist_ok:
            raise FileExistsError(repo_id)
        folder.mkdir(parents=True, exist_ok=True)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id: str, folder_path, commit_message: str | None = None, **_) -> None:
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)

    def snapshot_download(self, repo_id: str, *, revision: str | None = None, local_dir=None, **_) -> str:
        if not (self.root / repo_id).is_dir():
            raise FileNotFoundError(f"404: no repository {repo_id}")
        shutil.copytree(self.root / repo_id, local_dir, dirs_exist_ok=True)
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
