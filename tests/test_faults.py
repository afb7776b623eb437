"""Faults while a run or policy folder is written: kill -9 and a full disk (ENOSPC) at each write, two writers
at once. After each, the folder is the old complete unit or the new one, or it is refused with a clear error."""

import errno
import importlib.util
import json
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


# the same, at the K-th Python or C function call counted from the first file write on: any point of a save,
# between writes, inside numpy's and zipfile's, the swap into place and the clean-up (K past the end: none)
KILLER_ANYWHERE = textwrap.dedent("""
    import os, signal, sys
    import rivc.integer_net, rivc.neurochip.deploy, rivc.agents.persistence, rivc.agents.cli
    point, calls, write = int(sys.argv[1]), [0], rivc.integer_net.atomic_write_bytes
    def count(frame, event, arg):
        if event in ("call", "c_call"):
            calls[0] += 1
            if calls[0] == point:
                os.kill(os.getpid(), signal.SIGKILL)
    def counting(*args, **kwargs):
        sys.setprofile(count)
        return write(*args, **kwargs)
    for module in (rivc.integer_net, rivc.neurochip.deploy, rivc.agents.persistence, rivc.agents.cli):
        module.atomic_write_bytes = counting
    code = rivc.agents.cli.main(sys.argv[2:])
    sys.setprofile(None)
    sys.stderr.write(f"calls {calls[0]}\\n")
    sys.exit(code)
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


def _killed_anywhere(point: int, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILLER_ANYWHERE, str(point), *argv], capture_output=True, text=True)


def test_kill_9_at_random_points_of_saves_leaves_the_old_unit_or_the_new(runs, tmp_path):
    """Seeded random kill points over everything a save does, for an export (emulation and Akida's .fbz) and a
    training run's save; each folder is then the old unit or the new one."""
    from concurrent.futures import ThreadPoolExecutor

    backends = ["snntorch"] + (["akida"] if importlib.util.find_spec("akida") else [])
    export = {b: ["export", str(runs / "new"), "--episodes", "1", "--force", "--backend", b] for b in backends}
    train = ["train", "--force", "--seed", "3", *FAST]
    calls = {name: int(_killed_anywhere(10**9, [*argv, "--out", str(tmp_path / f"count-{name}")]).stderr.split()[-1])
             for name, argv in [*export.items(), ("train", train)]}
    rng = np.random.default_rng(20261204)
    cases = [(name, int(point)) for name in calls  # over the whole save, and over its last tenth (swap, clean-up)
             for point in [*rng.integers(1, calls[name] + 1, size=2), *rng.integers(calls[name] * 9 // 10, calls[name] + 1, size=2)]]

    def run(case):
        name, point = case
        target = tmp_path / f"{name}-{point}"
        source = runs / ("old" if name == "train" else "policy")
        subprocess.run(["cp", "-r", str(source), str(target)], check=True)
        done = _killed_anywhere(point, [*(train if name == "train" else export[name]), "--out", str(target)])
        return name, point, done.returncode, target

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, cases))
    outcomes = []
    for name, point, code, target in results:
        assert code == -9, f"{name}: the kill at call {point} of {calls[name]} did not happen"
        if name == "train":  # the old run whole (a kill before the swap), or the new one (after it)
            old = IntegerNetwork.load(runs / "old" / "policy.npz").to_arrays()
            summary = json.loads((target / "summary.json").read_text())
            network = IntegerNetwork.load(target / "policy.npz").to_arrays()
            is_old = all(np.array_equal(a, b) for a, b in zip(network.values(), old.values()))
            assert is_old == (summary["seed"] == 0), (point, summary["seed"])  # policy and summary of one run
            assert main(["evaluate", str(target), "--episodes", "1"]) == 0
            outcomes.append((name, point, calls[name], "old" if is_old else "new"))
        else:
            outcomes.append((name, point, calls[name], unit_of(target, runs)))
            assert outcomes[-1][-1] in ("old", "new")
    print("\nkill -9 at call K of N after the first write:", outcomes)


def _in_small_tmpfs(script: str, size_kib: int) -> subprocess.CompletedProcess | None:
    """Run ``script`` (sh) with ``$T`` a fresh tmpfs of ``size_kib`` KiB (a user and mount namespace); None where the
    machine does not allow one."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    if probe.returncode != 0:
        return None
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           f"T=$(mktemp -d) && mount -t tmpfs -o size={size_kib}k tmpfs $T && {script}"],
                          capture_output=True, text=True)


def test_a_really_full_disk_during_an_export_and_a_train_leaves_the_old_unit(runs, tmp_path):
    """A small tmpfs, the old unit in it and the rest filled to several levels: the write fails with one line
    (exit 2) and the old unit is left whole, or the new unit fits."""
    cli = f"{sys.executable} -m rivc.agents.cli"
    outcomes = []
    for free_kib in (0, 8, 24, 400):
        script = (f"cp -r {runs / 'policy'} $T/policy && cp -r {runs / 'old'} $T/run && "
                  f"head -c $(( $(df --output=avail -k $T | tail -1) * 1024 - {free_kib * 1024} )) /dev/zero > $T/fill"
                  f" 2>/dev/null; {cli} export {runs / 'new'} --out $T/policy --episodes 1 --force; echo export=$?; "
                  f"{cli} train --out $T/run --force --seed 1 {' '.join(FAST)} --eval-episodes 1; echo train=$?; "
                  f"rm -f $T/fill; cp -r $T/policy {tmp_path}/policy-{free_kib} && cp -r $T/run {tmp_path}/run-{free_kib}")
        done = _in_small_tmpfs(script, 2048)
        if done is None:
            pytest.skip("this machine does not allow a tmpfs in a user namespace")
        codes = dict(line.split("=") for line in done.stdout.splitlines() if line.startswith(("export=", "train=")))
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert all(line.startswith("rivc ") and "No space left" in line for line in errors), errors  # one line each
        policy = unit_of(tmp_path / f"policy-{free_kib}", runs)
        run = IntegerNetwork.load(tmp_path / f"run-{free_kib}" / "policy.npz").to_arrays()
        old = IntegerNetwork.load(runs / "old" / "policy.npz").to_arrays()
        run_unit = "old" if all(np.array_equal(a, b) for a, b in zip(run.values(), old.values())) else "new"
        assert (codes["export"] == "0") == (policy == "new") and (codes["train"] == "0") == (run_unit == "new")
        outcomes.append((free_kib, policy, run_unit))
    print("\nfree KiB, policy folder, run folder:", outcomes)
    assert outcomes[0][1:] == ("old", "old") and outcomes[-1][1:] == ("new", "new"), outcomes


def test_resume_trains_on_as_one_unit_and_refuses_other_settings(runs, tmp_path, capsys):
    target = tmp_path / "run"
    assert main(["train", "--out", str(target), "--save-replay-buffer", "--eval-freq", "300", *FAST,
                 "--timesteps", "1500"]) == 0  # (past the defaults' 1,000-step warm-up: evaluations)
    kept = json.loads((target / "summary.json").read_text())["kept_step"]
    assert kept is not None and (target / "last_model.zip").is_file() and (target / "best_model.zip").is_file()
    assert main(["train", "--out", str(target), *FAST]) == 2  # an existing run is not replaced without being asked
    assert "--force" in capsys.readouterr().err
    assert main(["train", "--out", str(target), "--resume", "--bits", "8"]) == 2
    assert "leave out --bits" in capsys.readouterr().err
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    done = subprocess.run([sys.executable, "-c", KILLER, "2", "train", "--out", str(target), "--resume",
                           "--timesteps", "300", "--eval-episodes", "1"], capture_output=True, text=True)
    assert done.returncode == -9 and {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    assert main(["train", "--out", str(target), "--resume", "--timesteps", "300", "--eval-episodes", "1"]) == 0
    summary = json.loads((target / "summary.json").read_text())
    assert (summary["resumed_at"], summary["num_timesteps"], summary["hyperparams_source"]) == (1500, 1800, "defaults")
    assert summary["seed"] == 0 + 1500  # the resumed stretch's own random stream, as recorded
    assert (target / "best_model.zip").is_file()  # the earlier steps' best is kept
    from rivc.agents.rivc_agent import RIVC

    model = RIVC.load(target / "model.zip", env="CartPole-v1")
    model.load_replay_buffer(target / "replay_buffer.npz")  # the old transitions and the new ones
    assert model.num_timesteps == 1800 and model.replay_buffer.pos == 1800  # from the last model, not the best
    assert sorted(p.name for p in (target / "logs").iterdir() if p.suffix == ".csv") == [
        "progress.csv", "progress.to-step-1500.csv"]


def test_a_background_writer_failing_keeps_the_old_run_and_is_one_line(runs, tmp_path, monkeypatch, capsys):
    """TensorBoard writes its events in a thread; a full disk there must not commit the run nor print a traceback."""
    import threading

    import stable_baselines3.common.logger as sb3_logger

    target = tmp_path / "run"
    subprocess.run(["cp", "-r", str(runs / "old"), str(target)], check=True)
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    configure = sb3_logger.configure

    def failing_configure(*args, **kwargs):
        logger = configure(*args, **kwargs)
        close = logger.close

        def close_with_a_failed_flush():
            close()
            def flush():  # noqa: E306
                raise OSError(errno.ENOSPC, "No space left on device")
            thread = threading.Thread(target=flush)
            thread.start()
            thread.join()
        logger.close = close_with_a_failed_flush
        return logger

    monkeypatch.setattr(sb3_logger, "configure", failing_configure)
    assert main(["train", "--out", str(target), "--force", "--seed", "3", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left" in err and "unchanged" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
