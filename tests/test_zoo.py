"""--hyperparams zoo: the RL Zoo's DQN settings (rl_zoo3's hyperparams/dqn.yml) mapped onto RIVC."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from rivc.agents import hyperparams
from rivc.agents.cli import main
from rivc.agents.config import CalibrationConfig
from rivc.agents.hyperparams import zoo_hyperparams

pytest.importorskip("rl_zoo3")


def zoo_table() -> dict:
    """The Zoo's file, read here independently of rivc."""
    return yaml.safe_load((Path(importlib.util.find_spec("rl_zoo3").origin).parent / "hyperparams" / "dqn.yml").read_text())


def test_a_listed_task_maps_every_setting():
    entry = zoo_table()["CartPole-v1"]
    settings = zoo_hyperparams("CartPole-v1")
    assert settings.timesteps == int(entry["n_timesteps"])
    for key, value in settings.kwargs.items():
        expected = {"net_arch": eval(entry["policy_kwargs"], {"dict": dict})["net_arch"]} if key == "policy_kwargs" \
            else entry[key]
        assert value == expected, key
    assert set(settings.kwargs) == (set(entry) - {"n_timesteps", "policy"})  # nothing dropped
    from rivc.agents import RIVC

    model = RIVC("MlpPolicy", "CartPole-v1", **settings.kwargs)  # fits the chip (akida's mapper ran)
    assert model.q_network.sizes[1:-1] == list(settings.kwargs["policy_kwargs"]["net_arch"])
    assert model.train_freq.frequency == entry["train_freq"] and model.gradient_steps == entry["gradient_steps"]


def test_cli_trains_with_the_zoo_settings(tmp_path, capsys):
    out = tmp_path / "zoo"
    assert main(["train", "--hyperparams", "zoo", "--timesteps", "1200", "--out", str(out), "--eval-episodes", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hyperparams_source"] == "zoo" and summary["hyperparams"]["train_freq"] == 256
    assert summary["conversions"] > 0


def test_an_unlisted_task_and_unsupported_settings_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="lists no DQN settings for 'rivc/ArmReach-v0'"):
        zoo_hyperparams("rivc/ArmReach-v0")
    fake = tmp_path / "hyperparams" / "dqn.yml"
    fake.parent.mkdir()
    fake.write_text("Pong-v5:\n  policy: CnnPolicy\n  frame_stack: 4\n  n_timesteps: 1e6\n")
    monkeypatch.setattr(hyperparams, "_zoo_file", lambda: fake)
    with pytest.raises(ValueError, match="frame_stack"):
        zoo_hyperparams("Pong-v5")


def test_a_missing_package_is_a_one_line_error(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rl_zoo3" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'rivc\[zoo\]'"):
        zoo_hyperparams("CartPole-v1")
    assert main(["train", "--hyperparams", "zoo", "--timesteps", "10"]) == 2
    assert "rivc[zoo]" in capsys.readouterr().err


def test_the_zoo_benchmark_runs_both_agents_on_one_seed_and_reports(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    monkeypatch.setattr(zoo, "EVAL_EPISODES", 2)
    monkeypatch.setattr(zoo, "CURVE_EPISODES", 1)
    task = zoo.Task("CartPole-v1", "zoo", timesteps=1500, seeds=(0,))
    rivc_kwargs, dqn_kwargs, steps = zoo.task_settings(task)
    assert rivc_kwargs == dqn_kwargs == zoo_hyperparams("CartPole-v1").kwargs and steps == 1500
    records = []
    for agent, kwargs in (("rivc", rivc_kwargs), ("dqn", dqn_kwargs)):
        spec = zoo.RunSpec("CartPole-v1", agent, 0, steps, json.dumps(dict(kwargs, learning_starts=500)))
        record = zoo.run_one(spec)
        assert record["agent"] == agent and len(record["final_returns"]) == 2 and record["steps_per_second"] > 0
        assert [point[0] for point in record["curve"]] == [150 * k for k in range(4 if agent == "rivc" else 1, 11)]
        records.append(record)
    assert records[0]["conversions"] > 0 and 0.0 <= records[0]["action_agreement"] <= 1.0
    assert records[0]["gap_clip"] == -10.0  # the default bound, as the record says it ran
    # the default range (fit): the cart's position, whose states span under 1/8 of its bounds (+-4.8) in so short a
    # run, is tracked; the pole's angle keeps its bounds; the velocities are data-calibrated (unbounded)
    input_range = records[0]["input_range"]
    assert len(input_range["clipped"]) == 4 and all(0.0 <= share <= 1.0 for share in input_range["clipped"])
    assert input_range["moves"] >= 1 and -4.8 < input_range["low"][0] < input_range["high"][0] < 4.8
    assert (input_range["low"][2], input_range["high"][2]) == pytest.approx((-0.41887903, 0.41887903))
    assert zoo.failed(dict(records[0], final_return=474.0)) and not zoo.failed(dict(records[0], final_return=475.0))


def test_a_held_out_mujoco_task_runs_in_its_action_bins_and_fails_below_gymnasiums_threshold():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo
    from rivc.envs import ActionBins

    for env_id, bins, actions in (("Reacher-v5@3", ActionBins(3), 9), ("Hopper-v5@3.per_joint", ActionBins(3, "per_joint"), 7)):
        env = zoo.make_task_env(env_id)
        assert ActionBins.of(env) == bins and env.action_space.n == actions
    spec = zoo.RunSpec("Reacher-v5@3", "rivc", 0, 600, json.dumps(dict(learning_starts=200, batch_size=32)))
    record = zoo.run_one(spec)
    assert record["env_id"] == "Reacher-v5@3" and len(record["final_returns"]) == zoo.EVAL_EPISODES
    assert record["reward_scale"] is None  # "auto" (the default), not measured: fewer than 1,000 rewards in 600 steps
    assert zoo.solved_at("Reacher-v5@3") == -3.75 and zoo.solved_at("rivc/ArmReach-v0") is None
    assert zoo.failed(dict(record, final_return=-3.8)) and not zoo.failed(dict(record, final_return=-3.7))


def test_the_zoo_sweep_stops_at_once_on_an_env_it_cannot_make():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.zoo import RunSpec, check_envs

    check_envs([RunSpec("CartPole-v1", "rivc", 0, 100, "{}")])
    with pytest.raises(SystemExit, match=r"NoSuchTask-v0 cannot be made here .*pip install 'rivc\[zoo\]'"):
        check_envs([RunSpec("CartPole-v1", "rivc", 0, 100, "{}"), RunSpec("NoSuchTask-v0", "dqn", 0, 100, "{}")])


def test_the_zoo_sweep_runs_seeds_beyond_its_five_and_reports_every_seed_stored(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    runs = zoo.grid(["CartPole-v1:zoo"], [7, 8])
    assert sorted((r.agent, r.seed) for r in runs) == [("dqn", 7), ("dqn", 8), ("rivc", 7), ("rivc", 8)]
    assert {r.seed for r in zoo.grid(["CartPole-v1:zoo"])} == set(zoo.SEEDS)
    monkeypatch.setattr(zoo, "RESULTS", tmp_path)
    assert zoo.stored_seeds() == list(zoo.SEEDS)
    (tmp_path / "CartPole-v1__rivc__seed12__50000__track.json").write_text("{}")
    assert zoo.stored_seeds() == [*zoo.SEEDS, 12]
    with pytest.raises(SystemExit) as exited:
        zoo.main(["--seed", "-1", "--report-only"])
    assert exited.value.code == 2


def test_the_zoo_sweep_runs_a_dqn_run_that_probes_share_once(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    ran = []
    monkeypatch.setattr(zoo, "RESULTS", tmp_path)
    monkeypatch.setattr(zoo, "run_sweep", lambda todo, *args: ran.extend(todo))
    runs = zoo.grid(["CartPole-v1:zoo", "CartPole-v1:zoo:track-bounded"], [0])
    assert len(runs) == 4  # the probe lists its task's DQN run again
    zoo.sweep(runs, workers=1)
    assert sorted((spec.agent, spec.tag) for spec in ran) == [("dqn", ""), ("rivc", ""), ("rivc", "track-bounded")]


def test_a_probes_options_of_one_setting_add_up():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    task = next(t for t in zoo.TASKS if zoo.task_name(t) == "LunarLander-v3:zoo:dueling-ema-track")
    extra = zoo.extra_settings(task)  # the tracked clips and the tracked range: both (the second replaced the first)
    assert extra["calibration"] == {"clip_decay": 0.99, "input_range": "track"}
    assert extra["policy_kwargs"] == {"head": "dueling"}
    settings = {"policy_kwargs": {"net_arch": [256, 256]}, "learning_rate": 1e-3}
    zoo.add_setting(settings, "policy_kwargs", {"head": "dueling"})
    zoo.add_setting(settings, "learning_rate", 5e-4)
    assert settings == {"policy_kwargs": {"net_arch": [256, 256], "head": "dueling"}, "learning_rate": 5e-4}


def test_the_quantization_delay_control_hands_over_at_half_the_zoos_budget():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    table = zoo_table()
    delayed = [t for t in zoo.TASKS if t.tag == "delay-fit"]
    assert {t.env_id for t in delayed} == set(zoo.ZOO_BUDGETS)
    for task in delayed:  # QuaRL's delay: QAT from half the budget (the Zoo's, read from its own file here)
        assert zoo.extra_settings(task) == {"quantization_delay": int(table[task.env_id]["n_timesteps"]) // 2,
                                            "reward_scale": 1.0, "gap_clip": None}  # (as it ran: before "auto" and
        # the bound were the defaults)
        assert zoo.task_settings(task)[2] == int(table[task.env_id]["n_timesteps"])
    # the other controls of the same sweep: the gap term's bound on the same three tasks (and since on the others),
    # 8 bits with tracked clips
    bounded = [t for t in zoo.TASKS if t.tag == "gapclip-fit"]
    zoos = [t for t in bounded if t.env_id in zoo.ZOO_BUDGETS]
    assert sorted(t.env_id for t in zoos) == ["Acrobot-v1", "CartPole-v1", "LunarLander-v3"]
    assert all(zoo.extra_settings(t) == {"gap_clip": -1.0, "reward_scale": 1.0} for t in zoos)  # (as they ran)
    # ... and since "auto": every other task but MountainCar on the defaults as they are, LunarLander again scaled
    assert {t.env_id for t in bounded} - set(zoo.ZOO_BUDGETS) == {t.env_id for t in zoo.HELD_OUT_TASKS} | {
        "rivc/ArmReach-v0", "rivc/MobileReach-v0"}
    assert all(zoo.extra_settings(t) == {"gap_clip": -1.0} for t in bounded if t not in zoos)
    scaled = [t for t in zoo.TASKS if t.tag == "gapclip-scaled-fit"]
    assert [(t.env_id, zoo.extra_settings(t)) for t in scaled] == [("LunarLander-v3", {"gap_clip": -1.0})]
    floats = {t.env_id: zoo.extra_settings(t) for t in zoo.TASKS if t.tag == "fpnn-gapclip-fit"}
    assert floats == {env: {"variant": "fpnn-gap", "gap_clip": -1.0}
                      for env in ("InvertedDoublePendulum-v5@5", "Humanoid-v5@3.per_joint")}
    # the bound at -10 is the default since 2026-12-07: the unbounded update (the defaults' before) on every task and
    # on every target the defaults have a row on; the float loop bounded where it failed
    unbounded = [t for t in zoo.TASKS if t.tag == "unbounded-fit"]
    assert {t.env_id for t in unbounded} == {t.env_id for t in (*zoo.DEFAULT_TASKS, *zoo.CAMERA_TASKS,
                                                                  *zoo.HELD_OUT_TASKS)}
    assert all(zoo.extra_settings(t) == {"gap_clip": None} for t in unbounded)
    floats10 = {t.env_id: zoo.extra_settings(t) for t in zoo.TASKS if t.tag == "fpnn-gapclip10-fit"}
    assert floats10 == {"InvertedDoublePendulum-v5@5": {"variant": "fpnn-gap", "gap_clip": -10.0}}
    others = {t.tag: zoo.extra_settings(t) for t in zoo.TASKS if t.tag.endswith("-unbounded-fit")}
    assert others == {"akd1000-unbounded-fit": {"target": "akd1000", "gap_clip": None},
                      "w8-unbounded-fit": {"quant": {"weight_bits": 8, "activation_bits": 8},
                                           "calibration": {"clip_decay": None}, "gap_clip": None}}
    for name in ("w8", "akd1000"):
        assert ({t.env_id for t in zoo.TASKS if t.tag == f"{name}-unbounded-fit"}
                == {t.env_id for t in zoo.TASKS if t.tag == f"{name}-fit"})
    # every other row ran before the bound was the default, and says the bound it ran (none, unless it names one)
    assert all("gap_clip" in zoo.extra_settings(t) for t in zoo.TASKS if t.tag not in zoo.BOUND_FOLLOWS_DEFAULTS)
    assert all("gap_clip" not in zoo.extra_settings(t) for t in zoo.TASKS if t.tag in zoo.BOUND_FOLLOWS_DEFAULTS)
    # Humanoid's 348 inputs do not fit AKD1000's input layer: no row asks for it; every row's name is its own
    assert "Humanoid-v5@3.per_joint:defaults:akd1000-fit" not in {zoo.task_name(t) for t in zoo.TASKS}
    assert len({zoo.task_name(t) for t in zoo.TASKS}) == len(zoo.TASKS)
    tracked = [t for t in zoo.TASKS if t.tag == "w8-ema-fit"]
    assert {t.env_id for t in tracked} == {"CartPole-v1", "LunarLander-v3", "rivc/ArmReach-v0", "rivc/MobileReach-v0",
                                           "rivc/MobileReachCamera-v0", "rivc/PanTrackState-v0", "Acrobot-v1",
                                           "MountainCar-v0", "InvertedDoublePendulum-v5@5", "Reacher-v5@3",
                                           "Hopper-v5@3.per_joint", "Pusher-v5@3.per_joint", "HalfCheetah-v5@3.per_joint",
                                           "Humanoid-v5@3.per_joint"}
    assert all(zoo.extra_settings(t) == {"gap_clip": None, "quant": {"weight_bits": 8, "activation_bits": 8},
                                         "calibration": {"clip_decay": 0.99, "input_range": "fit"}} for t in tracked)


def test_the_controls_table_reads_each_controls_first_tag_with_records_on_seeds_0_to_4():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    budgets = {"CartPole-v1:zoo": 50_000, "LunarLander-v3:zoo": 100_000, "Acrobot-v1:zoo": 100_000,
               "MountainCar-v0:zoo": 120_000}

    def record(env_id, agent, tag, seed, final, timesteps=None):
        return {"env_id": env_id, "agent": agent, "tag": tag, "seed": seed, "final_return": final,
                "timesteps": timesteps or budgets[f"{env_id}:zoo"], "curve": [[1, final], [2, final - 10.0]]}

    records = [record("CartPole-v1", "dqn", "", seed, 100.0 + seed) for seed in range(6)]
    records += [record("CartPole-v1", "rivc", "gapclip-fit", seed, 200.0 * (seed + 1)) for seed in (0, 1)]
    records += [record("CartPole-v1", "rivc", "gapclip-fit", 7, -1e6),  # beyond seeds 0-4: not read
                record("CartPole-v1", "rivc", "gapclip-obsunits", 0, -5e5),  # an older tag beside a -fit one: not read
                record("CartPole-v1", "dqn", "gapclip-fit", 2, -7e5),  # another agent's: not read
                record("LunarLander-v3", "rivc", "gapclip-obsunits", 0, 50.0),  # the older tag, where no -fit ran
                record("Acrobot-v1", "rivc", "gapclip-fit", 0, -80.0, timesteps=40_000)]  # another budget
    records[6]["curve"] = [[1, 200.0], [2, 190.0], [3, 180.0], [4, 170.0]]  # seed 0: every point counts, not seed means
    table = {line.split(" | ")[0]: line.split(" | ")[1:] for line in zoo.controls_table(records, budgets)
             if line.startswith("| ")}
    assert table["| SB3 DQN"][0] == "102.0 / 100.0, curve 97.0"
    gapclip = table["| the gap term bounded below at -1 (Munchausen-DQN's l0)"]
    assert gapclip[0] == "300.0 / 200.0, curve 255.0, 2 seeds (`gapclip-fit`)"  # (200+190+180+170+400+390) / 6
    assert gapclip[1] == "50.0 / 50.0, curve 45.0, 1 seed (`gapclip-obsunits`)"
    assert gapclip[2] == "not run" and gapclip[3].startswith("not run")


def test_a_record_that_no_row_reads_is_named(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    monkeypatch.setattr(zoo, "RESULTS", tmp_path)
    runs = zoo.grid(["CartPole-v1:zoo"], [0])
    (tmp_path / f"{runs[0].key}.json").write_text("{}")
    (tmp_path / "CartPole-v1__rivc__seed0__50000__gapclip10-fit.json").write_text("{}")  # a row renamed since
    assert zoo.unread_records(runs) == ["CartPole-v1__rivc__seed0__50000__gapclip10-fit.json"]


def test_the_zoo_report_sets_each_row_against_dqn_on_the_rows_own_seeds(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    monkeypatch.setattr(zoo, "RESULTS", tmp_path)
    monkeypatch.setattr(zoo, "DOCS", tmp_path)
    runs = zoo.grid(["CartPole-v1:zoo"], [0, 1, 2])
    returns = {("rivc", 0): 200.0, ("rivc", 1): 300.0, ("dqn", 0): 100.0, ("dqn", 1): 150.0, ("dqn", 2): 500.0}
    for spec in runs:
        if (spec.agent, spec.seed) in returns:  # RIVC's seed 2 is not stored
            record = {"env_id": spec.env_id, "agent": spec.agent, "seed": spec.seed, "timesteps": spec.timesteps,
                      "tag": spec.tag, "kwargs": json.loads(spec.kwargs), "final_return": returns[spec.agent, spec.seed],
                      "success_rate": None, "curve": [[1, 0.0]], "steps_per_second": 100.0, "gap_clip": -10.0}
            (tmp_path / f"{spec.key}.json").write_text(json.dumps(record))
    row = next(line for line in zoo.report(runs).read_text().splitlines() if line.startswith("| CartPole-v1 | zoo |"))
    assert "| 2 / 2 | 250.0 / 200.0 | 125.0 / 100.0 | 2.00 |" in row  # DQN's seed 2 (500) left out


def test_every_zoo_run_names_the_input_range_and_the_clip_rule_it_runs_with(capsys, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    # a record says which range ran: the defaults' rows read on when the default moves (as it did on 2026-12-06)
    ranges = {(spec.env_id, spec.tag): json.loads(spec.kwargs)["calibration"]["input_range"]
              for spec in zoo.grid(seeds=[0]) if spec.agent == "rivc"}
    assert ranges["LunarLander-v3", ""] == CalibrationConfig().input_range == "fit"
    assert ranges["LunarLander-v3", "space"] == ranges["LunarLander-v3", "w8-obsunits"] == "space"
    assert ranges["LunarLander-v3", "track-obsunits"] == "track" and ranges["LunarLander-v3", "w8-fit"] == "fit"
    # and every stored record is read as what it ran: none recorded with other settings than its run's now
    runs = zoo.grid(seeds=zoo.stored_seeds())
    records = zoo.load(runs)
    assert len(records) > 600 and "left out" not in capsys.readouterr().out
    assert zoo.unread_records(runs) == []  # and no record lies unread under a row renamed or removed since
    ran = {r["kwargs"]["calibration"]["input_range"] for r in records if r["agent"] == "rivc"}
    assert ran >= {"fit", "space", "track"}
    # the clip rule likewise, so that the rows that ran while tracked clips were the 8-bit default are not read as
    # learned ones
    rules = {(spec.env_id, spec.tag): json.loads(spec.kwargs)["calibration"]["clip_decay"]
             for spec in zoo.grid(seeds=[0]) if spec.agent == "rivc"}
    assert rules["LunarLander-v3", ""] is None and rules["LunarLander-v3", "w8-fit"] is None  # learned
    assert rules["LunarLander-v3", "w8-ema-fit"] == rules["Acrobot-v1", "w8-ema"] == 0.99
    assert rules["LunarLander-v3", "fpnn"] is None  # a float network: no clips to track
    assert {r["kwargs"]["calibration"]["clip_decay"] for r in records if r["agent"] == "rivc"} >= {None, 0.99}
    # the gap term's bound likewise (the default since 2026-12-07, -10; unbounded before; -1 in its controls)
    assert {r["gap_clip"] if "gap_clip" in r else r["kwargs"].get("gap_clip")
            for r in records if r["agent"] == "rivc"} == {None, -1.0, -10.0}
    # and the reward scale: "auto" on the rows that follow the defaults, 1.0 where a row ran before it was the default
    scales = {(spec.env_id, spec.tag): json.loads(spec.kwargs)["reward_scale"]
              for spec in zoo.grid(seeds=[0]) if spec.agent == "rivc"}
    assert scales["LunarLander-v3", ""] == scales["CartPole-v1", "akd1000-fit"] == scales["Reacher-v5@3", ""] == "auto"
    assert scales["LunarLander-v3", "rscale1-fit"] == scales["LunarLander-v3", "track-obsunits"] == 1.0
    assert scales["InvertedDoublePendulum-v5@5", "qat-fit"] == scales["CartPole-v1", "space"] == 1.0
    # ... and rows added since run on the defaults as they are
    assert scales["InvertedDoublePendulum-v5@5", "w8-ema-mse-fit"] == scales["Pusher-v5@3.per_joint", "qat-fit"] == "auto"
    assert ("InvertedDoublePendulum-v5@5", "akd1000-rscale1-fit") not in scales  # (never ran unscaled)
    assert {r["kwargs"]["reward_scale"] for r in records if r["agent"] == "rivc"} == {1.0, "auto"}
    w8_default = zoo.Task("CartPole-v1", "zoo", tag="w8-default", rivc_extra=(zoo.W8,))  # no rule named: the default
    monkeypatch.setattr(zoo, "TASKS", (w8_default,))
    assert json.loads(zoo.grid(seeds=[0])[0].kwargs)["calibration"]["clip_decay"] is None  # learned, written out


def test_the_recipe_sweep_refuses_a_file_of_runs_with_other_settings(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.recipe_seeds import check_records, gap_clip

    settings = {"target": "akida", "widths": ["--bits", "4"], "input_units": "observation", "input_range": "fit",
                "clip_decay": "learned", "gap_clip": "none"}
    record = {"seed": 3, "target": "akida", "widths": ["--bits", "4"], "input_units": "observation"}  # no range named
    with pytest.raises(SystemExit, match=r"seed 3 ran with \{'input_range': 'space'\}.*--records DIR"):
        check_records(tmp_path / "akida_b4.jsonl", [record], settings)
    check_records(tmp_path / "akida_b4.jsonl", [record], dict(settings, input_range="space"))
    check_records(tmp_path / "akida_b4.jsonl", [dict(record, input_range="fit")], settings)
    # nor a bound: the gap term unbounded, the default until 2026-12-07, not today's -10
    with pytest.raises(SystemExit, match=r"seed 3 ran with \{'gap_clip': 'none'\}"):
        check_records(tmp_path / "akida_b4.jsonl", [dict(record, input_range="fit")], dict(settings, gap_clip="-10"))
    check_records(tmp_path / "akida_b4.jsonl", [dict(record, input_range="fit", gap_clip="-10")],
                  dict(settings, gap_clip=gap_clip("-10.0")))
    assert gap_clip("NONE") == "none" and gap_clip("-1.0") == "-1"
    for bad in ("ten", "0.5", "0", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"\(or 'none'\)"):
            gap_clip(bad)


def test_the_camera_task_gives_both_agents_the_same_conv_and_dense_layers():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    specs = {spec.agent: spec for spec in zoo.grid(["rivc/MobileReachCamera-v0:tuned"], [0])}
    assert json.loads(specs["rivc"].kwargs)["beta"] == 3.0  # MobileReach's tuned value: the same task and reward
    rivc, dqn = (zoo.make_model(specs[agent]) for agent in ("rivc", "dqn"))
    assert type(rivc.policy).__name__ == "RIVCCnnPolicy" and type(dqn.policy).__name__ == "CnnPolicy"
    rivc_shapes = [tuple(p.shape) for p in rivc.q_network.layers.parameters()]
    dqn_shapes = [tuple(p.shape) for p in dqn.policy.q_net.parameters()]
    assert rivc_shapes == dqn_shapes and len(rivc_shapes) == 2 * (3 + 2)  # three conv layers, a hidden and a head
    # the report sets the camera's success beside the same task's from state, on the seeds both ran
    records = [{"env_id": env, "agent": "rivc", "seed": seed, "success_rate": rate}
               for env, rates in (("rivc/MobileReachCamera-v0", (0.5, 0.7, 0.9)), ("rivc/MobileReach-v0", (0.8, 1.0)))
               for seed, rate in enumerate(rates)]
    lines = zoo.pixels_against_state(records, lambda task, agent: [r for r in records if r["env_id"] == task.env_id])
    assert lines[-1] == ("From pixels against from state (RIVC, seeds 0, 1): rivc/MobileReachCamera-v0 60 % success, "
                         "rivc/MobileReach-v0 90 %: 0.67x (target: at least 0.9x).")


def test_a_run_at_reward_scale_1_is_read_as_the_auto_run_only_where_auto_measured_1_on_it():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    asked = {"learning_rate": 1e-3, "reward_scale": "auto"}
    ran = {"kwargs": {"learning_rate": 1e-3, "reward_scale": 1.0}, "gap_clip": -10.0}  # (the default bound, as it ran)
    assert zoo.ran_as_asked({**ran, "auto_reward_scale": 1.0}, asked)  # the same update, bit for bit
    assert not zoo.ran_as_asked({**ran, "auto_reward_scale": 0.31}, asked)  # "auto" would have scaled the rewards
    assert not zoo.ran_as_asked(ran, asked)  # not measured
    assert not zoo.ran_as_asked({"kwargs": {"learning_rate": 5e-4, "reward_scale": 1.0}, "auto_reward_scale": 1.0,
                                 "gap_clip": -10.0}, asked)
    assert not zoo.ran_as_asked({**ran, "auto_reward_scale": 1.0}, {**asked, "reward_scale": 0.5})
    assert not zoo.ran_as_asked({**ran, "auto_reward_scale": 1.0, "gap_clip": None}, asked)  # another bound
    assert zoo.ran_as_asked({"kwargs": asked, "gap_clip": -10.0}, asked)


def test_a_record_is_read_for_a_row_only_where_it_ran_the_bound_the_row_asks(monkeypatch):
    """A record says the gap term's bound it ran with; one that predates that ran the bound its settings named, or the
    default of its day (none): since the default moved to -10 the defaults' old runs are no longer its runs, and a
    run that named -10 is the defaults' run (the same update)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo
    from rivc.agents import RIVC

    asked = {"learning_rate": 1e-3}
    bounded, unbounded = {**asked, "gap_clip": -10.0}, {**asked, "gap_clip": None}
    assert not zoo.ran_as_asked({"kwargs": asked}, asked)  # an older record: unbounded, the default of its day
    assert zoo.ran_as_asked({"kwargs": asked}, unbounded) and zoo.ran_as_asked({"kwargs": unbounded}, unbounded)
    assert not zoo.ran_as_asked({"kwargs": asked, "gap_clip": None}, asked)
    assert zoo.ran_as_asked({"kwargs": asked, "gap_clip": -10.0}, asked)  # the default, as it ran
    assert zoo.ran_as_asked({"kwargs": bounded}, asked) and zoo.ran_as_asked({"kwargs": bounded, "gap_clip": -10.0}, asked)
    assert zoo.ran_as_asked({"kwargs": bounded}, bounded) and not zoo.ran_as_asked({"kwargs": bounded}, unbounded)
    assert not zoo.ran_as_asked({"kwargs": {**bounded, "learning_rate": 5e-4}}, asked)  # the rest must match still
    assert zoo.ran_as_asked({"kwargs": asked, "agent": "dqn"}, asked)  # DQN has no gap term
    # were the default to move again, the runs of today's default would no longer be its runs
    def init(self, *args, gap_clip: float | None = -3.0, **kwargs): ...
    monkeypatch.setattr(RIVC, "__init__", init)
    assert not zoo.ran_as_asked({"kwargs": asked, "gap_clip": -10.0}, asked)
    assert zoo.ran_as_asked({"kwargs": asked, "gap_clip": -3.0}, asked)


def test_the_factor_auto_takes_on_a_run_is_the_one_that_run_would_measure():
    """The run again with "auto", its own budget and schedules (updates start before the 1,000th reward here, so the
    exploration schedule decides which rewards those are), stopped once the factor is measured."""
    import sys
    from dataclasses import replace

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import zoo

    settings = dict(learning_starts=200, batch_size=32, policy_kwargs={"net_arch": [16, 16]})
    ran = zoo.RunSpec("Pendulum-v1@3", "rivc", 0, 1300, json.dumps({**settings, "reward_scale": 1.0}))
    auto = zoo.make_model(replace(ran, kwargs=json.dumps({**settings, "reward_scale": "auto"})))
    auto.learn(ran.timesteps)
    assert 0.05 < auto.reward_scale < 0.5  # Pendulum: -16..0 a step
    assert zoo.auto_reward_scale(ran) == auto.reward_scale
    assert zoo.auto_reward_scale(replace(ran, env_id="CartPole-v1")) == 1.0  # 1 a step
    assert zoo.auto_reward_scale(replace(ran, timesteps=900)) is None  # a run too short to measure it

