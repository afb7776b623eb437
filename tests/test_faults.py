"""Faults while a run or policy folder is written: kill -9 and a full disk (ENOSPC) at each write, two writers
at once. After each, the folder is the old complete unit or the new one, or it is refused with a clear error."""

import errno
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rivc import IntegerNetwork
from rivc.agents.cli import main
from rivc.files import FolderError, folder_unit
from rivc.neurochip import load_policy

FAST = ["--timesteps", "600", "--eval-episodes", "1", "--hyperparams", "defaults"]

# a subprocess running the CLI whose K-th file write (rivc.integer_net.atomic_write_bytes, or akida's model file)
# ends the process with SIGKILL before the write: a kill -9 at that exact point
KILLER = textwrap.dedent("""
    import os, signal, sys
    import rivc.integer_net, rivc.neurochip.deploy, rivc.agents.persistence, rivc.agents.cli
    point, calls, write = int(sys.argv[1]), [0], rivc.integer_net.atomic_write_bytes
    def killing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == point:
            os.kill(os.getpid(), signal.SIGKILL)
        return write(*args, **kwargs)
    for module in (rivc.integer_net, rivc.neurochip.deploy, rivc.agents.persistence, rivc.agents.cli):
        module.atomic_write_bytes = killing
    sys.exit(rivc.agents.cli.main(sys.argv[2:]))
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two trained runs (an old and a new policy) and the old one's policy folder."""
    root = tmp_path_factory.mktemp("faults")
    for name, seed in (("old", "0"), ("new", "1")):
        assert main(["train", "--out", str(root / name), "--seed", seed, *FAST]) == 0
    assert main(["export", str(root / "old"), "--out", str(root / "policy"), "--episodes", "1"]) == 0
    return root


def unit_of(folder, runs) -> str:
    """Which complete run the policy folder holds, as a reader sees it ('old' or 'new'); fails on a mix."""
    policy = load_policy(folder)  # validates every file it reads, and that they agree
    for name in ("old", "new"):
        trained = IntegerNetwork.load(runs / name / "policy.npz")
        if all(np.array_equal(a, b) for a, b in zip(policy.network.to_arrays().values(), trained.to_arrays().values())):
            return name
    raise AssertionError(f"{folder} holds neither run's policy whole")


def test_kill_9_at_every_write_of_an_export_leaves_the_old_unit(runs, tmp_path):
    outcomes = {}
    for point in (1, 2, 3):  # the network's write, policy.json's, and none (the export completes)
        target = tmp_path / f"policy{point}"
        subprocess.run(["cp", "-r", str(runs / "policy"), str(target)], check=True)
        done = subprocess.run([sys.executable, "-c", KILLER, str(point), "export", str(runs / "new"), "--out",
                               str(target), "--episodes", "1", "--force"], capture_output=True, text=True)
        outcomes[point] = (done.returncode, unit_of(target, runs))
    assert outcomes == {1: (-9, "old"), 2: (-9, "old"), 3: (0, "new")}


def test_a_full_disk_at_every_write_of_an_export_leaves_the_old_unit(runs, tmp_path, monkeypatch):
    import rivc.integer_net as integer_net
    import rivc.neurochip.deploy as deploy

    real = integer_net.atomic_write_bytes
    for point in (1, 2):
        target = tmp_path / f"policy{point}"
        subprocess.run(["cp", "-r", str(runs / "policy"), str(target)], check=True)
        calls = [0]

        def full_disk(*args, **kwargs):
            calls[0] += 1
            if calls[0] == point:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        for module in (deploy, integer_net):  # the network's write and policy.json's
            monkeypatch.setattr(module, "atomic_write_bytes", full_disk)
        with pytest.raises(OSError, match="No space left"):
            deploy.save_policy(target, integer_net.IntegerNetwork.load(runs / "new" / "policy.npz"), force=True)
        assert unit_of(target, runs) == "old"
        assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # staging removed


def test_kill_9_while_a_run_saves_leaves_the_old_run(runs, tmp_path):
    target = tmp_path / "run"
    subprocess.run(["cp", "-r", str(runs / "old"), str(target)], check=True)
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    for point in (1, 2, 3):  # model.zip's, policy.npz's and summary.json's writes
        done = subprocess.run([sys.executable, "-c", KILLER, str(point), "train", "--out", str(target), "--force",
                               "--seed", "3", *FAST], capture_output=True, text=True)
        assert done.returncode == -9, done.stderr
        assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    assert main(["evaluate", str(target), "--episodes", "1"]) == 0  # and the old run still loads


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(runs, tmp_path, capsys):
    target = tmp_path / "policy"
    with folder_unit(target) as staging:
        (staging / "x").write_text("x")
        assert main(["export", str(runs / "new"), "--out", str(target), "--episodes", "1", "--force"]) == 2
        assert "being written by another process" in capsys.readouterr().err
    assert (target / "x").is_file()
    lock = tmp_path / ".policy.lock"
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, signal
        fd = os.open({str(lock)!r}, os.O_CREAT | os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.kill(os.getpid(), signal.SIGKILL)  # a writer killed while it held the lock
    """)])
    assert killed.returncode == -9 and lock.exists()
    assert main(["export", str(runs / "new"), "--out", str(target), "--episodes", "1", "--force"]) == 0
    assert (target / "network.npz").is_file() and not (target / "x").exists()
    with pytest.raises(FolderError, match="exists and holds files"):
        with folder_unit(target):
            pass
    assert unit_of(target, runs) == "new"
    umask = os.umask(0o022)
    try:  # readable by others, as the umask says: the folder and its files
        assert main(["export", str(runs / "new"), "--out", str(tmp_path / "shared"), "--episodes", "1"]) == 0
        assert all(p.stat().st_mode & 0o044 == 0o044 for p in [tmp_path / "shared", *(tmp_path / "shared").iterdir()])
    finally:
        os.umask(umask)
