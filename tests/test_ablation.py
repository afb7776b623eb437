import pytest

from benchmarks.ablation import RunSpec, executor, grid, load_records, report, run_one, run_sweep, sweep


def test_grid_shapes():
    quick, full = grid(quick=True, seeds=3), grid(quick=False, seeds=3)
    assert len(quick) == 3 * 5 * 3  # tasks x variants x seeds, 4-bit only
    # 2 and 4 bits for the quantized variants, 8 bits for rivc and naive, fpnn (float) once
    assert len(full) == 3 * (4 + 5 + 2) * 3
    assert len({spec.key for spec in full}) == len(full)


def test_one_run_and_report(tmp_path):
    record = run_one(RunSpec("CartPole-v1", "rivc", 4, 0, 1600))
    # the SNN exists from the end of warm-up (1,000 steps): the curve's 8 points start after it
    assert [point[0] for point in record["curve"]] == [1200, 1400, 1600]
    assert record["agreement_curve"] and 0 <= record["final_agreement"] <= 1
    fpnn = run_one(RunSpec("CartPole-v1", "fpnn", 4, 0, 1600))
    assert fpnn["final_agreement"] is None and not fpnn["agreement_curve"]
    path = report([record, fpnn], tmp_path, "smoke")
    text = path.read_text()
    assert "| rivc | 4 | 1 |" in text and "| fpnn | 4 | 1 |" in text
    ratio = record["final_return"] / fpnn["final_return"]
    assert f"| CartPole-v1 | {record['final_return']:.1f} / {fpnn['final_return']:.1f} = {ratio:.0%} | - |" in text
    assert (tmp_path / "curves_CartPole-v1.png").stat().st_size > 1000


def test_failure_modes_diagnosis(tmp_path):
    from benchmarks.failure_modes import diagnose, main

    record = diagnose("rivc:4:0", timesteps=1500, episodes=2)
    assert sum(record["ends"].values()) == 2 and record["return"] > 0
    assert 0 <= record["saturated"] <= 1 and len(record["saturated_dims"]) == 4
    assert record["action_gap"] >= 0 and record["mean_abs_dq"] >= 0 and 0 <= record["agreement"] <= 1
    out = tmp_path / "failure_modes.md"
    assert main(["--runs", "fpnn:4:0", "--timesteps", "1200", "--episodes", "1", "--workers", "1", "--out", str(out)]) == 0
    assert "| fpnn:4:0 |" in out.read_text()


def test_sweep_on_a_local_dask_cluster_resumes_without_redoing_runs(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    runs = [RunSpec("CartPole-v1", "fpnn", 4, seed, 400) for seed in (0, 1)]
    results = tmp_path / "results"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", processes=True,
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        sweep(runs[:1], results, workers=1, cluster=address)  # interrupted after the first run
        first = results / f"{runs[0].key}.json"
        stored, stored_ns = first.read_bytes(), first.stat().st_mtime_ns
        sweep(runs, results, workers=1, cluster=address)  # resumed
    printed = capsys.readouterr().out
    assert f"2 runs, 1 already stored, 1 to go on the Dask cluster at {address}" in printed
    assert first.read_bytes() == stored and first.stat().st_mtime_ns == stored_ns  # not redone
    records = load_records(results, runs)
    assert [r["seed"] for r in records] == [0, 1] and all(r["final_return"] > 0 for r in records)
    assert not list(results.glob(".*tmp"))  # atomic writes leave no temp files


def test_a_cluster_without_distributed_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'rivc\[distributed\]'"):
        with executor(1, "tcp://127.0.0.1:8786"):
            pass


class _Spec:
    def __init__(self, key: str) -> None:
        self.key = key


def _run_or_fail(spec: _Spec) -> dict:
    if spec.key == "bad":
        raise RuntimeError("no Box2D here")
    return {"key": spec.key}


def test_a_failing_run_keeps_the_others_records(capsys):
    stored = []
    with pytest.raises(SystemExit, match=r"1 of 3 runs failed \(bad\); the others are stored"):
        run_sweep([_Spec("a"), _Spec("bad"), _Spec("c")], _run_or_fail, lambda spec, record: stored.append(record),
                  lambda spec, record: spec.key, workers=1)
    assert sorted(record["key"] for record in stored) == ["a", "c"]
    assert "bad failed: RuntimeError: no Box2D here" in capsys.readouterr().out
