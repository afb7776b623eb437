from benchmarks.ablation import RunSpec, grid, report, run_one


def test_grid_shapes():
    quick, full = grid(quick=True, seeds=3), grid(quick=False, seeds=3)
    assert len(quick) == 3 * 5 * 3  # tasks x variants x seeds, 4-bit only
    # 2 and 4 bits for the quantized variants, 8 bits for rivc and naive, fpnn (float) once
    assert len(full) == 3 * (4 + 5 + 2) * 3
    assert len({spec.key for spec in full}) == len(full)


def test_one_run_and_report(tmp_path):
    record = run_one(RunSpec("CartPole-v1", "rivc", 4, 0, 1600))
    assert len(record["curve"]) == 8 and record["agreement_curve"] and 0 <= record["final_agreement"] <= 1
    fpnn = run_one(RunSpec("CartPole-v1", "fpnn", 4, 0, 1600))
    assert fpnn["final_agreement"] is None and not fpnn["agreement_curve"]
    path = report([record, fpnn], tmp_path, "smoke")
    text = path.read_text()
    assert "| rivc | 4 | 1 |" in text and "| fpnn | 4 | 1 |" in text
    assert (tmp_path / "curves_CartPole-v1.png").stat().st_size > 1000
