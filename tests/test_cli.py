import json
import subprocess
import sys

import pytest

from rivc.agents import RIVC
from rivc.agents.cli import main
from rivc.agents.hyperparams import tuned_hyperparams
from rivc import CorruptFileError
from rivc.envs import ActionBins
from rivc.neurochip import load_policy


def test_train_evaluate_convert(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--timesteps", "1500", "--out", str(out), "--eval-episodes", "2", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "SNN policy return" in printed and "conversions" in printed and "for target akida" in printed
    assert (out / "model.zip").is_file() and (out / "policy.npz").is_file() and (out / "logs" / "progress.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conversions"] > 0 and summary["eval_episodes"] == 2
    assert summary["hyperparams"] == tuned_hyperparams("CartPole-v1")  # the task's tuned values by default
    assert summary["learning_rate"] == {"given": 1e-3, "max": 1e-3}
    assert summary["input_range"]["first_layer_units"] == "observation"
    assert summary["reward_scale"] == {"asked": "auto", "factor": 1.0} and "rewards scaled" not in printed  # 1 a step

    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    assert "CartPole-v1: SNN policy return" in capsys.readouterr().out
    assert main(["convert", str(out), "--episodes", "2"]) == 0
    printed = capsys.readouterr().out
    assert "identical actions to the training-time policy 100.00 %" in printed and "greedy agreement" in printed


def test_train_records_the_learning_rate_cap_and_none_lifts_it(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--timesteps", "300", "--out", str(out), "--eval-episodes", "1", "--learning-rate", "2e-3",
                 "--max-learning-rate", "none", "--eval-freq", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["learning_rate"] == {"given": 2e-3, "max": None} and summary["hyperparams"]["max_learning_rate"] is None
    assert summary["input_range"]["first_layer_units"] == "observation"
    model = RIVC.load(out / "model.zip")
    assert (model.max_learning_rate, model.learning_rate) == (None, 2e-3)
    assert model.gap_clip == -10.0 and summary["gap_clip"] == -10.0  # the default bound, as it ran


def test_train_gap_clip_none_trains_the_papers_unbounded_update(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--timesteps", "300", "--out", str(out), "--eval-episodes", "1", "--gap-clip", "none",
                 "--eval-freq", "0"]) == 0
    assert json.loads((out / "summary.json").read_text())["gap_clip"] is None
    assert RIVC.load(out / "model.zip").gap_clip is None


def test_train_help_states_the_agents_defaults(capsys):
    import inspect

    defaults = inspect.signature(RIVC.__init__).parameters
    assert main(["train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"default: {defaults['gap_clip'].default:g};" in help_text
    assert f"(default {defaults['max_learning_rate'].default:g}," in help_text


def test_user_errors_exit_2_without_traceback(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "rivc.agents.cli", *args], capture_output=True, text=True)

    missing = run("evaluate", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no trained model" in missing.stderr and "Traceback" not in missing.stderr
    bad_env = run("train", "--env", "NoSuchEnv-v0", "--timesteps", "10", "--out", str(tmp_path / "x"))
    assert bad_env.returncode == 2 and "cannot make environment" in bad_env.stderr
    continuous = run("train", "--env", "Pendulum-v1", "--timesteps", "10", "--out", str(tmp_path / "y"))
    assert continuous.returncode == 2 and "DiscretizeAction" in continuous.stderr
    bits = run("train", "--bits", "9", "--timesteps", "10", "--out", str(tmp_path / "z"))
    assert bits.returncode == 2 and "weight_bits=9" in bits.stderr and "Traceback" not in bits.stderr
    akd1000 = run("train", "--target", "akd1000", "--bits", "8", "--timesteps", "10", "--out", str(tmp_path / "w"))
    assert akd1000.returncode == 2 and "target 'akd1000'" in akd1000.stderr and "weight_bits=8" in akd1000.stderr
    assert "Traceback" not in akd1000.stderr and not (tmp_path / "w").exists()  # nothing written
    narrow_inputs = run("train", "--bits", "8", "--activation-bits", "4", "--timesteps", "10", "--out", str(tmp_path / "v"))
    assert narrow_inputs.returncode == 2 and "layer 1 has 8-bit weights on 4-bit inputs" in narrow_inputs.stderr
    both = run("train", "--bits", "8", "--layer-bits", "8/8,8/8,8/32", "--timesteps", "10", "--out", str(tmp_path / "u"))
    assert both.returncode == 2 and "leave out --bits" in both.stderr
    count = run("train", "--layer-bits", "8/8,8/32", "--timesteps", "10", "--out", str(tmp_path / "t"))
    assert count.returncode == 2 and "gives 2 layer(s)" in count.stderr and "Traceback" not in count.stderr
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "model.zip").write_bytes(b"garbage")
    corrupt = run("evaluate", str(tmp_path / "corrupt"))
    assert corrupt.returncode == 2 and "not a readable RIVC model" in corrupt.stderr


@pytest.mark.parametrize("args,problem", [
    (["train", "--timesteps", "0"], "--timesteps: 0 is below 1"), (["train", "--timesteps", "-5"], "--timesteps: -5"),
    (["train", "--timesteps", "x"], "not a whole number"), (["train", "--beta", "inf"], "--beta: inf is not a finite"),
    (["train", "--alpha", "1"], "--alpha: 1 is not a finite number in [0, 1)"),
    (["train", "--learning-rate", "nan"], "--learning-rate: nan"), (["train", "--out", ""], "--out: the path is empty"),
    (["train", "--eval-episodes", "0"], "--eval-episodes"), (["train", "--threads", "0"], "--threads"),
    (["evaluate", "x", "--episodes", "0"], "--episodes: 0 is below 1"), (["deploy", "x", "--episodes", "-1"], "--episodes"),
    (["convert-model", "m", "--env", "CartPole-v1", "--finetune", "-5"], "--finetune: -5 is below 0"),
    (["report", "x", "--json", ""], "--json: the path is empty"), (["export", "x", "--out", " "], "--out"),
    (["precision", "x", "--agreement", "1.5"], "--agreement"), (["precision", "x", "--max-memory", "0"], "--max-memory"),
    (["train", "--gap-clip", "0.5"], "--gap-clip: 0.5 is not a finite number < 0: give one (or 'none')"),
    (["train", "--gap-clip", "0"], "--gap-clip: 0 is not a finite number < 0"),
    (["train", "--gap-clip", "nan"], "--gap-clip: nan"), (["train", "--gap-clip", "abc"], "'abc' is not a number (or 'none')"),
])
def test_bad_numbers_and_paths_are_refused_by_the_parser_in_one_line(args, problem, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_eight_bit_akida_trains_and_saves_its_widths(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--bits", "8", "--timesteps", "300", "--out", str(out), "--eval-episodes", "1"]) == 0
    assert "8-bit weights / 8-bit activations" in capsys.readouterr().out
    model = RIVC.load(out / "model.zip")
    assert (model.quant.weight_bits, model.quant.activation_bits) == (8, 8)
    assert [p.levels for p in model.spiking_policy.network.precision[:-1]] == [127, 127]  # Akida's signed 8-bit ReLU
    assert main(["train", "--layer-bits", "8/8,8/4,4/32", "--timesteps", "300", "--out", str(out), "--eval-episodes",
                 "1", "--force"]) == 0
    assert "8/8,8/4,4/32, seed 0" in capsys.readouterr().out
    assert RIVC.load(out / "model.zip").quant.describe() == "8/8,8/4,4/32"


def test_a_run_folder_is_one_unit_and_is_replaced_only_when_asked(tmp_path, capsys):
    out = tmp_path / "run"
    first = ["train", "--timesteps", "1200", "--out", str(out), "--eval-episodes", "1", "--eval-freq", "600"]
    assert main(first) == 0 and (out / "best_model.zip").is_file()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["train", "--timesteps", "200", "--out", str(out), "--eval-episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "exists and holds files" in err and "--force" in err and "--resume" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched
    assert main(["train", "--timesteps", "200", "--out", str(out), "--eval-episodes", "1", "--force"]) == 0
    assert not (out / "best_model.zip").exists()  # the new run whole, nothing of the old one beside it
    assert json.loads((out / "summary.json").read_text())["timesteps"] == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]  # no staging folder left behind
    (tmp_path / "file").write_text("x")
    assert main(["train", "--timesteps", "200", "--out", str(tmp_path / "file"), "--force"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "link").symlink_to(out)
    assert main(["export", str(out), "--out", str(tmp_path / "link"), "--force"]) == 2
    assert "symbolic link" in capsys.readouterr().err


def test_hyperparams_defaults_and_overrides(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--timesteps", "200", "--out", str(out), "--eval-episodes", "1", "--hyperparams", "defaults", "--force"]
    assert main([*args, "--alpha", "0.5", "--learning-rate", "5e-4"]) == 0
    assert json.loads((out / "summary.json").read_text())["hyperparams"] == {"alpha": 0.5, "learning_rate": 5e-4}
    assert "alpha=0.5" in capsys.readouterr().out
    assert RIVC.load(out / "model.zip").learning_rate == 5e-4
    assert main([*args, "--clip-decay", "0.95"]) == 0
    assert RIVC.load(out / "model.zip").calibration.clip_decay == 0.95
    assert main([*args, "--clip-decay", "learned"]) == 0
    assert RIVC.load(out / "model.zip").calibration.clip_decay is None
    capsys.readouterr()
    assert main([*args, "--bits", "8"]) == 0  # the default clip rule: learned at every width
    assert RIVC.load(out / "model.zip").calibration.clip_decay is None
    assert "activation clips learned (pact)" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["activation_clips"] == "learned (pact)"
    assert main([*args, "--bits", "8", "--clip-decay", "0.99"]) == 0
    assert RIVC.load(out / "model.zip").calibration.clip_decay == 0.99
    assert "activation clips tracked (decay 0.99, following each batch's max)" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["activation_clips"].startswith("tracked (decay 0.99")
    assert main([*args, "--clip-decay", "auto"]) == 2  # the rule decided by the widths is gone: one line says so
    assert "--clip-decay takes a decay in [0, 1) (e.g. 0.99: clips that follow the activations) or 'learned', got 'auto'" in (
        capsys.readouterr().err)
    assert main([*args, "--clip-gradient", "lsq"]) == 0
    assert RIVC.load(out / "model.zip").calibration.clip_gradient == "lsq"
    assert main([*args, "--clip-gradient", "lsq", "--clip-decay", "0.9"]) == 2
    assert "leave clip_decay None for learned clips" in capsys.readouterr().err
    assert main([*args, "--clip-statistic", "mse"]) == 2
    assert "set clip_decay" in capsys.readouterr().err
    assert main([*args, "--clip-statistic", "mse", "--clip-decay", "0.9"]) == 0
    assert RIVC.load(out / "model.zip").calibration.clip_statistic == "mse"
    assert main([*args, "--activation-steps", "unit"]) == 0
    assert RIVC.load(out / "model.zip").q_network.activation_steps == "unit"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hyperparams"]["policy_kwargs"] == {"activation_steps": "unit"}
    assert main([*args, "--head", "dueling"]) == 0
    assert RIVC.load(out / "model.zip").q_network.head == "dueling"
    for untracked in ("space", "data"):  # the quantile belongs to a tracked range
        assert main([*args, "--input-range", untracked, "--input-quantile", "0.01"]) == 2
        assert f"--input-range {untracked} tracks none: drop it" in capsys.readouterr().err
    assert main([*args, "--input-quantile", "0.03"]) == 0  # the default range (fit) takes it
    calibration = RIVC.load(out / "model.zip").calibration
    assert (calibration.input_range, calibration.quantile) == ("fit", 0.03)
    assert main([*args, "--input-range", "track", "--input-quantile", "0"]) == 0
    assert RIVC.load(out / "model.zip").calibration.quantile == 0.0
    assert main([*args, "--input-range", "track", "--input-quantile", "0.5"]) == 2
    # a short run ends exploring while the cart is still near the centre: its position (bounds +-4.8) is tracked
    short = ["train", "--timesteps", "3000", "--out", str(out), "--eval-episodes", "1", "--force"]
    assert main(short) == 0
    assert "input 0 follows the replay data" in capsys.readouterr().out
    input_range = json.loads((out / "summary.json").read_text())["input_range"]
    assert input_range["mode"] == "fit" and input_range["tracked_inputs"] == [0] and input_range["high"][0] < 4.8
    assert main([*short, "--input-range", "space"]) == 0
    assert "input range" not in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["input_range"]["mode"] == "space"
    assert main([*args, "--input-range", "fit", "--input-quantile", "0.02"]) == 0
    assert RIVC.load(out / "model.zip").calibration.input_range == "fit"
    assert RIVC.load(out / "model.zip").calibration.quantile == 0.02


def test_train_takes_the_first_layers_units_and_resume_keeps_them(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--timesteps", "300", "--out", str(out), "--eval-episodes", "1", "--input-units", "normalised",
                 "--eval-freq", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_range"]["first_layer_units"] == "normalised"
    assert summary["hyperparams"]["policy_kwargs"]["input_units"] == "normalised"
    assert RIVC.load(out / "model.zip").q_network.input_units == "normalised"
    assert main(["train", "--resume", "--timesteps", "100", "--out", str(out), "--eval-episodes", "1",
                 "--eval-freq", "0"]) == 0
    assert json.loads((out / "summary.json").read_text())["input_range"]["first_layer_units"] == "normalised"


def test_a_continuous_task_trains_in_action_bins_and_every_command_makes_it_so(tmp_path, capsys):
    """`--action-bins` makes Pendulum's torque discrete; the model and the policy folder record the bins, and
    evaluate, resume, export and deploy make the task as it trained (a damaged record: one line, exit 2)."""
    out, policy = tmp_path / "run", tmp_path / "policy"
    args = ["train", "--env", "Pendulum-v1", "--action-bins", "5", "--timesteps", "600", "--out", str(out),
            "--eval-episodes", "2", "--eval-freq", "0", "--save-replay-buffer"]
    assert main(args) == 0
    assert "on Pendulum-v1 (actions in bins 5:grid)" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["action_bins"] == {"bins": 5, "mode": "grid"}
    model = RIVC.load(out / "model.zip")
    assert (model.env_id, model.action_bins, model.action_space.n) == ("Pendulum-v1", ActionBins(5), 5)
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    assert "Pendulum-v1: SNN policy return" in capsys.readouterr().out
    assert main(["train", "--out", str(out), "--resume", "--timesteps", "200", "--eval-episodes", "2"]) == 0
    assert RIVC.load(out / "model.zip").action_bins == ActionBins(5)
    assert main(["export", str(out), "--out", str(policy), "--episodes", "2"]) == 0
    assert json.loads((policy / "policy.json").read_text())["action_bins"] == {"bins": 5, "mode": "grid"}
    assert main(["deploy", str(policy), "--episodes", "2", "--seed", str(1000)]) == 0
    assert "Pendulum-v1: deployed snntorch policy return" in capsys.readouterr().out
    meta = json.loads((policy / "policy.json").read_text())
    (policy / "policy.json").write_text(json.dumps({**meta, "action_bins": {"bins": 1}}))
    assert main(["deploy", str(policy), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "policy.json is damaged: action bins must be an integer >= 2" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(CorruptFileError, match="action bins must be"):  # the Python API's loader too
        load_policy(policy)


@pytest.mark.parametrize("args,problem", [
    (["--env", "Pendulum-v1", "--action-bins", "1"], "action bins must be an integer >= 2"),
    (["--env", "Pendulum-v1", "--action-bins", "3,3"], "--action-bins 3,3:grid do not fit Pendulum-v1"),
    (["--env", "CartPole-v1", "--action-bins", "3"], "already discrete"),
    (["--env", "Pendulum-v1", "--action-bins", "4:per_joint"], "odd number of bins"),
])
def test_bad_action_bins_are_refused_in_one_line(args, problem, tmp_path, capsys):
    assert main(["train", *args, "--timesteps", "10", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_train_records_the_reward_scale_it_measured(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--env", "Pendulum-v1", "--action-bins", "3", "--timesteps", "1100",  # "auto": the default
                 "--out", str(out), "--eval-episodes", "1", "--eval-freq", "0"]) == 0
    recorded = json.loads((out / "summary.json").read_text())["reward_scale"]
    assert f"rewards scaled by {recorded['factor']:.4g} in the value target (reward_scale auto" in capsys.readouterr().out
    assert recorded["asked"] == "auto" and 0.05 < recorded["factor"] < 0.5  # Pendulum's rewards: -16..0 per step
    assert RIVC.load(out / "model.zip").reward_scale == recorded["factor"]
    assert main(["train", "--out", str(out), "--resume", "--timesteps", "100", "--eval-episodes", "1"]) == 0
    assert RIVC.load(out / "model.zip").reward_scale == recorded["factor"]  # measured once, kept
    assert main(["train", "--reward-scale", "often", "--out", str(tmp_path / "x")]) == 2
    assert "--reward-scale: 'often' is not a number (or 'auto')" in capsys.readouterr().err
