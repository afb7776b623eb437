import pytest

from benchmarks.bench_train import SHARED
from benchmarks.step_profile import PARTS, profile


@pytest.mark.parametrize("cycle", [dict(), dict(train_freq=4, gradient_steps=-1)])
def test_step_profile_times_every_part_of_each_update(cycle):
    kwargs = dict(SHARED, learning_starts=200, **cycle)
    for agent in ("dqn", "rivc-autograd", "rivc"):
        times = profile(agent, kwargs, steps=5)
        assert list(times) == list(PARTS) and all(t > 0 for t in times.values())


def test_the_busy_core_row_runs_each_agent_in_its_own_interpreter_and_stops_its_spinner(capsys, monkeypatch):
    import subprocess

    from benchmarks import bench_train

    spinners = []
    popen = subprocess.Popen
    monkeypatch.setattr(bench_train.subprocess, "Popen",
                        lambda *args, **kw: spinners.append(popen(*args, **kw)) or spinners[-1])
    bench_train.busy_machine("CartPole-v1", timesteps=1100, rounds=1)  # (past the warm-up: a few updates)
    rows = capsys.readouterr().out.strip().splitlines()[-3:]
    for row, name in zip(rows, ("SB3 DQN (torch on ", "RIVC (learn: torch and BLAS on blas_threads=1)",
                                "SB3 DQN, torch.set_num_threads(1) in the script (control)")):
        assert row.startswith(name)
    assert all(float(row.split()[-2]) > 0 for row in rows)
    assert len(spinners) == 4 and all(p.poll() is not None for p in spinners)  # the spinner, three runs: all ended
