"""The installed distribution owns one import name, ``rivc`` (agents/, envs/ and neurochip/ install under it)."""

import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "rivc", "agents", "envs", "neurochip")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A regular (non-editable) wheel built from a copy of the sources, so the checkout stays clean."""
    source = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), str(source)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    return next(out.glob("rivc-*.whl"))


def test_the_wheel_provides_exactly_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["rivc"]
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"rivc"}
    for module in ("rivc/agents/cli.py", "rivc/envs/mobile_reach.py", "rivc/neurochip/akida_backend.py",
                   "rivc/envs/assets/mobile_reach.xml", "rivc/agents/zoo_hyperparams/rivc.yml"):
        assert module in names


def test_the_installed_distribution_owns_only_rivc():
    assert metadata.distribution("rivc").read_text("top_level.txt").split() == ["rivc"]
    script = next(e for e in metadata.distribution("rivc").entry_points if e.name == "rivc")
    assert script.value == "rivc.agents.cli:main"


def test_public_api_imports_from_outside_the_repository(tmp_path):
    code = (
        "import sys, gymnasium as gym\n"
        "from rivc.agents import RIVC\n"
        "import rivc.envs\n"
        "from rivc.neurochip import make_backend, load_policy\n"
        "assert '' not in sys.path and sys.argv[1] not in sys.path\n"
        "assert 'agents' not in sys.modules and 'envs' not in sys.modules and 'neurochip' not in sys.modules\n"
        "assert gym.make('rivc/ArmReach-v0').action_space.n == 9\n"
        "print(RIVC.__module__, make_backend('snntorch').name)\n"
    )
    # -I: isolated mode, neither the current directory nor PYTHONPATH is on sys.path
    done = subprocess.run([sys.executable, "-I", "-c", code, str(ROOT)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["rivc.agents.rivc_agent", "snntorch"]
    rivc_script = Path(sys.executable).with_name("rivc")
    assert subprocess.run([str(rivc_script), "--help"], cwd=tmp_path, capture_output=True).returncode == 0
