"""Command line: ``rivc train | evaluate | convert | export | deploy | run | report | precision | push | pull``.
User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

from rivc.agents.rollout import RolloutResult, rollout
from rivc.agents.config import (AUTO, CLIP_GRADIENTS, CLIP_STATISTICS, DEFAULT_GAP_CLIP, DEFAULT_MAX_LEARNING_RATE,
                                 INPUT_RANGES, TRACKING_RANGES, CalibrationConfig)
from rivc.agents.variants import VARIANTS
from rivc.chip import DEFAULT_TARGET, TARGETS
from rivc.config import ACTIVATION_STEPS, HEADS, INPUT_UNITS
from rivc.neurochip.deploy import check_env

MODEL_FILE, POLICY_FILE, SUMMARY_FILE, BEST_FILE = "model.zip", "policy.npz", "summary.json", "best_model.zip"
PRECISION_DIR = "precision"  # `rivc precision --finetune`: the fine-tuned model at the chosen widths
DEFAULT_TIMESTEPS = 20_000


class UserError(Exception):
    """A problem the user can fix; reported without a traceback."""


def _make_env(env_id: str, action_bins=None, bins_from: str = "--action-bins"):
    """The task, its actions made discrete as ``action_bins`` (``rivc.envs.ActionBins``; ``bins_from`` says where
    they came from) says."""
    import gymnasium as gym

    import rivc.envs  # noqa: F401  (registers the rivc/ environments)

    try:
        env = gym.make(env_id)
    except gym.error.Error as exc:
        raise UserError(f"cannot make environment {env_id!r}: {exc}") from exc
    if action_bins is None:
        return env
    try:
        return action_bins.wrap(env)
    except ValueError as exc:
        raise UserError(f"{bins_from} {action_bins.describe()} do not fit {env_id}: {exc}") from exc


def _model_env(model):
    """The task a saved model trained on, made as it was (its actions' bins too)."""
    return _make_env(model.env_id, model.action_bins, "the model's action bins")


def _model_path(run_dir: str) -> Path:
    path = Path(run_dir)
    path = path / MODEL_FILE if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"no trained model at {path}: pass the --out folder of `rivc train`")
    return path


def _load(run_dir: str):
    from rivc.agents.rivc_agent import RIVC

    model = RIVC.load(_model_path(run_dir))
    if getattr(model, "env_id", None) is None:
        raise UserError("the saved model does not record its environment id")
    if model.spiking_policy is None:
        raise UserError(f"{run_dir} holds no converted policy (variant {model.variant!r} acts with the float network)")
    return model


def _evaluation(result: RolloutResult, seed: int) -> dict:
    """What ``summary.json`` and ``policy.json`` record of an evaluation, to compare deployments with."""
    return {"returns": result.returns, "seed": seed, "mean": result.mean_return, "std": result.std_return,
            "success_rate": result.success_rate}


def _quant_config(args: argparse.Namespace):
    """The bit widths: ``--layer-bits`` (per layer), or ``--bits`` / ``--activation-bits`` (the same everywhere)."""
    from rivc import QuantConfig

    input_bits = getattr(args, "input_bits", 8)
    if args.layer_bits:
        if args.bits is not None or args.activation_bits is not None:
            raise UserError("--layer-bits gives every layer's widths: leave out --bits and --activation-bits")
        return QuantConfig.parse_layers(args.layer_bits, input_bits=input_bits)
    bits = 4 if args.bits is None else args.bits
    return QuantConfig(weight_bits=bits, activation_bits=args.activation_bits or bits, input_bits=input_bits)


RESUME_FILE, REPLAY_FILE = "last_model.zip", "replay_buffer.npz"  # what `train --resume` continues from
# the options that define a run: `train --resume` continues with the saved run's own
RUN_SETTINGS = ("env", "variant", "target", "backend", "bits", "policy", "activation_bits", "layer_bits", "input_bits",
                "hyperparams", "alpha", "gap_clip", "quantization_delay", "beta", "learning_rate", "max_learning_rate",
                "clip_decay", "clip_statistic", "clip_gradient", "input_range", "input_quantile", "input_units",
                "activation_steps", "head", "action_bins", "reward_scale")


def _new_model(args: argparse.Namespace, env):
    """A fresh agent as the arguments describe it; returns it with its hyperparameters and step budget."""
    from rivc.agents.config import to_dict
    from rivc.agents.hyperparams import tuned_hyperparams, zoo_hyperparams
    from rivc.agents.rivc_agent import RIVC

    quant = _quant_config(args)
    timesteps = args.timesteps or DEFAULT_TIMESTEPS
    if args.hyperparams == "zoo":
        zoo = zoo_hyperparams(args.env)
        options, timesteps = zoo.kwargs, args.timesteps or zoo.timesteps
    else:
        options = tuned_hyperparams(args.env) if args.hyperparams == "tuned" else {}
    options.update({k: v for k, v in (("alpha", args.alpha), ("beta", args.beta),
                                      ("quantization_delay", args.quantization_delay),
                                      ("learning_rate", args.learning_rate), ("reward_scale", args.reward_scale))
                    if v is not None})
    for key in ("gap_clip", "max_learning_rate"):  # "none": the gap term unbounded (the paper's update); no cap
        if (value := getattr(args, key)) is not None:
            options[key] = None if value == "none" else value
    calibration_options = {} if args.input_range is None else {"input_range": args.input_range}
    if args.clip_decay is not None:
        try:
            calibration_options["clip_decay"] = None if args.clip_decay == "learned" else float(args.clip_decay)
        except ValueError:
            raise ValueError(f"--clip-decay takes a decay in [0, 1) (e.g. 0.99: clips that follow the activations) or "
                             f"'learned', got {args.clip_decay!r}") from None
    for option in ("clip_statistic", "clip_gradient"):
        if getattr(args, option) is not None:
            calibration_options[option] = getattr(args, option)
    if args.input_quantile is not None:
        if (args.input_range or CalibrationConfig().input_range) not in TRACKING_RANGES:
            raise ValueError(f"--input-quantile is the share of states a tracked input range leaves out; "
                             f"--input-range {args.input_range} tracks none: drop it (fit, the default, tracks) or use "
                             "--input-range track")
        calibration_options["quantile"] = args.input_quantile
    if calibration_options:
        calibration = options.get("calibration") or {}
        options["calibration"] = {**(calibration if isinstance(calibration, dict) else to_dict(calibration)),
                                  **calibration_options}
    for option in ("input_units", "activation_steps", "head"):
        if getattr(args, option) is not None:
            options["policy_kwargs"] = {**(options.get("policy_kwargs") or {}), option: getattr(args, option)}
    policy = args.policy
    if policy == "auto":  # camera frames (3-dimensional uint8) take the conv policy
        policy = "CnnPolicy" if len(env.observation_space.shape or ()) == 3 else "MlpPolicy"
    model = RIVC(policy, env, target=args.target, backend=args.backend, quant=quant, variant=args.variant,
                 blas_threads=args.threads, seed=args.seed, verbose=0, **options)
    return model, options, timesteps


def _resumed_model(args: argparse.Namespace):
    """The run in ``--out`` as it ended (its last model and, where it was saved, its replay buffer), to train
    ``--timesteps`` more steps with its own settings."""
    from rivc.agents.rivc_agent import RIVC

    given = [name for name, default in args.run_defaults.items() if getattr(args, name) != default]
    if given:
        raise UserError(f"--resume continues the run in {args.out} with its own settings: leave out "
                        f"{', '.join('--' + name.replace('_', '-') for name in given)}")
    run = Path(args.out)
    last = run / RESUME_FILE if (run / RESUME_FILE).is_file() else _model_path(args.out)
    model = RIVC.load(last, blas_threads=args.threads)
    if model.env_id is None:
        raise UserError(f"{last} does not record its environment id: it cannot be resumed")
    model.set_env(_model_env(model))
    if (run / REPLAY_FILE).is_file():
        model.load_replay_buffer(run / REPLAY_FILE)
        args.save_replay_buffer = True  # and the resumed run keeps it, for the next --resume
    else:
        print(f"note: {run} keeps no replay buffer (train with --save-replay-buffer): it starts empty")
    args.seed += model.num_timesteps  # a random stream of its own, reproducible
    model.set_random_seed(args.seed)
    summary = json.loads((run / SUMMARY_FILE).read_text()) if (run / SUMMARY_FILE).is_file() else {}
    args.resumed_selection = (summary.get("kept_step"), summary.get("selection_curve") or [])
    args.env, args.variant, args.target, args.backend = model.env_id, model.variant, model.target, model.backend_name
    args.action_bins = model.action_bins
    args.hyperparams = summary.get("hyperparams_source", "saved")
    return model, summary.get("hyperparams", {}), args.timesteps or DEFAULT_TIMESTEPS


def _carry_earlier_steps(run: Path, out: Path, step: int) -> None:
    """A resumed run keeps what the steps before it made: the best model kept so far (a later evaluation may
    replace it), TensorBoard's event files as they are (the steps go on), ``progress.csv`` renamed after the step
    it ends at (SB3 starts a new one)."""
    if (run / BEST_FILE).is_file():
        shutil.copy2(run / BEST_FILE, out / BEST_FILE)
    if (run / "logs").is_dir():
        shutil.copytree(run / "logs", out / "logs")
        if (out / "logs" / "progress.csv").is_file():
            os.replace(out / "logs" / "progress.csv", out / "logs" / f"progress.to-step-{step}.csv")


def cmd_train(args: argparse.Namespace) -> int:
    from stable_baselines3.common.logger import configure

    from rivc.agents.policies import RIVCCnnPolicy
    from rivc.agents.rivc_agent import RIVC
    from rivc.files import folder_unit
    from rivc.integer_net import atomic_write_bytes

    import torch

    torch.set_num_threads(args.threads)
    if not (args.resume or args.force) and Path(args.out).is_dir() and any(Path(args.out).iterdir()):
        raise UserError(f"{args.out} exists and holds files: pass --resume to train its run further, --force to "
                        "replace it, or choose another --out")
    if args.resume:
        model, options, timesteps = _resumed_model(args)
        env, resumed_at = model.get_env(), model.num_timesteps
    else:
        env = _make_env(args.env, args.action_bins)
        model, options, timesteps = _new_model(args, env)
        resumed_at = None
    quant, policy = model.quant, "CnnPolicy" if isinstance(model.policy, RIVCCnnPolicy) else "MlpPolicy"
    # the run folder appears whole when the run has ended (Ctrl-C keeps what was written, and says where)
    with folder_unit(args.out, force=args.force or args.resume, keep_on_interrupt=True) as out:
        if args.resume:
            _carry_earlier_steps(Path(args.out), out, resumed_at)
            print(f"resuming {args.out} at step {resumed_at}")
        bins = f" (actions in bins {args.action_bins.describe()})" if args.action_bins else ""
        print(f"training {args.variant} ({policy}) on {args.env}{bins} for target {args.target} "
              f"({model.q_network.target.chip}): {timesteps} steps, {args.backend} backend, {quant.describe()}, seed "
              f"{args.seed}"
              + (f", activation clips {model.calibration.describe_clips()}" if model.variant_spec.qat else "")
              + (f"; {', '.join(f'{k}={v}' for k, v in sorted(options.items()))}" if options else ""))
        logger = configure(str(out / "logs"), ["csv", "tensorboard"] + (["stdout"] if args.verbose else []))
        model.set_logger(logger)
        callback = None
        if args.eval_freq:
            from rivc.agents.callbacks import BestPolicyCallback

            callback = BestPolicyCallback(_make_env(args.env, args.action_bins), out / BEST_FILE, eval_freq=args.eval_freq,
                                          episodes=args.select_episodes, seed=args.select_seed)
            kept, curve = getattr(args, "resumed_selection", (None, []))
            if kept is not None and (out / BEST_FILE).is_file():  # the selection goes on from the earlier steps'
                callback.history = [tuple(point) for point in curve]
                callback.best_timestep, callback.best_return = kept, dict(callback.history).get(kept)
        start = time.perf_counter()
        model.learn(timesteps, progress_bar=args.progress_bar, callback=callback, reset_num_timesteps=not args.resume)
        seconds, conversions = time.perf_counter() - start, model.num_conversions
        if args.save_replay_buffer:
            model.save_replay_buffer(out / REPLAY_FILE)
        final = None
        if callback is not None and callback.best_timestep is not None:
            model.save(out / RESUME_FILE)  # the last model, which --resume continues (model.zip is the best)
            final = rollout(model, _make_env(args.env, args.action_bins), args.eval_episodes, seed=args.eval_seed)
            print(f"final policy (step {model.num_timesteps}): SNN policy {final.describe()}")
            model = RIVC.load(out / BEST_FILE, env=env)
            print(f"kept the best of {len(callback.history)} evaluations: step {callback.best_timestep}, return "
                  f"{callback.best_return:.1f} on selection episodes (seeds {args.select_seed}..."
                  f"{args.select_seed + args.select_episodes - 1})")
        model.save(out / MODEL_FILE)
        if model.spiking_policy is not None:
            model.spiking_policy.network.save(out / POLICY_FILE)
        result = rollout(model, _make_env(args.env, args.action_bins), args.eval_episodes, seed=args.eval_seed)
        summary = {
            "env": args.env, "action_bins": args.action_bins and args.action_bins.to_dict(), "variant": args.variant,
            "target": args.target, "backend": args.backend,
            "hyperparams": options, "hyperparams_source": args.hyperparams, "timesteps": timesteps, "seed": args.seed,
            "resumed_at": resumed_at, "num_timesteps": model.num_timesteps,
            "seconds": round(seconds, 1),
            "steps_per_second": round(timesteps / seconds, 1), "conversions": conversions,
            "kept_step": None if callback is None else callback.best_timestep, "policy": policy,
            "selection_curve": None if callback is None else callback.history,
            "eval_return_mean": result.mean_return, "eval_return_std": result.std_return,
            "eval_episodes": args.eval_episodes, "evaluation": _evaluation(result, args.eval_seed),
            "ms_per_action": round(result.ms_per_action, 3),
            "final_return_mean": None if final is None else final.mean_return,
            "snn_acting_from_step": model.snn_from_step if model.quantization_delay else None,
            "activation_clips": model.calibration.describe_clips() if model.variant_spec.qat else None,
            "reward_scale": {"asked": model.reward_scale_asked, "factor": model.reward_scale},
            # the gap term's lower bound as it ran (None: unbounded, or a variant without the term)
            "gap_clip": model.gap_clip if model.variant_spec.gap_increasing else None,
            "learning_rate": {"given": float(model.lr_schedule(1.0)),  # the cap, where the network trains quantized
                              "max": model.max_learning_rate if model.variant_spec.qat else None},
            "input_range": {"mode": model.calibration.input_range if model._input_range_may_move else "given",
                            "low": model.q_network.obs_low.tolist(), "high": model.q_network.obs_high.tolist(),
                            "moves": model.input_range_moves, "first_layer_units": model.q_network.input_units,
                            **({} if model._fitted_inputs is None else {"tracked_inputs": np.flatnonzero(
                                model._fitted_inputs).tolist()})}
            if not model.q_network.is_image else None,
        }
        atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
        logger.close()  # (TensorBoard's writer flushes in its thread: a failure there is checked next)
        _check_background_writes()
    print(f"trained in {seconds:.0f} s ({summary['steps_per_second']:.0f} steps/s), {conversions} conversions")
    tracked = (summary["input_range"] or {}).get("tracked_inputs")
    if tracked:
        inputs = f"input {tracked[0]} follows" if len(tracked) == 1 else f"inputs {', '.join(map(str, tracked))} follow"
        moves = model.input_range_moves
        print(f"input range: the space's bounds, but {inputs} the replay data (states spanning under 1/8 of the "
              f"bounds; {moves} move{'' if moves == 1 else 's'})")
    if model.reward_scale not in (None, 1.0):
        print(f"rewards scaled by {model.reward_scale:.4g} in the value target (reward_scale {model.reward_scale_asked}"
              + (": 1 / mean |r| over the first 1,000 rewards" if model.reward_scale_asked == AUTO else "") + ")")
    actor = "SNN" if model.snn_acting else "float"
    print(f"{actor} policy {result.describe()}; saved to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rivc.agents.rivc_agent import RIVC

    model = RIVC.load(_model_path(args.run_dir))
    if getattr(model, "env_id", None) is None:
        raise UserError("the saved model does not record its environment id")
    env = _model_env(model)
    check_env(model.q_network, env, model.env_id)
    result = rollout(model, env, args.episodes, seed=args.seed)
    actor = "SNN" if model.snn_acting else "float"
    print(f"{model.env_id}: {actor} policy {result.describe()}")
    return 0


def _visited_states(model, episodes: int, seed: int) -> np.ndarray:
    """States the training-time acting policy visits in greedy episodes."""
    states = rollout(model.spiking_policy, _model_env(model), episodes, seed=seed, record_states=True)
    return np.asarray(states.observations)  # the env's dtype (uint8 frames), as deployed


def _identical_actions(reference, policy, observations: np.ndarray) -> float:
    return float(np.mean(reference.predict(observations) == policy.predict(observations)))


def _export_nir(model, network, args: argparse.Namespace) -> int:
    """Write the rate-coded policy as a NIR file; where Sinabs is installed, run the file with it and compare."""
    import importlib.util

    from rivc.neurochip.nir_export import sinabs_agreement, write_nir

    timesteps = model.spiking_policy.timesteps
    export = write_nir(network, args.out, timesteps)
    print(f"wrote {args.out}: {model.env_id} policy, {export.summary()}")
    if importlib.util.find_spec("sinabs") is None:
        print("Sinabs is not installed (pip install 'rivc[nir]'): the file was not run by another simulator")
        return 0
    observations = _visited_states(model, args.episodes, args.seed)
    for mode, text in (("nir", "NIR's IF (one spike a step, no floor)"), ("plain", "Sinabs's import defaults")):
        agreement = sinabs_agreement(args.out, network, observations, timesteps, import_mode=mode)
        verdict = "exact" if agreement.exact else "NOT exact"
        print(f"Sinabs, {text}, on {agreement.states} visited states: {verdict}; spike counts equal "
              f"{100 * agreement.counts_equal:.2f} %, greedy actions equal {100 * agreement.actions_equal:.2f} %, "
              f"max |dQ| {agreement.max_abs_dq:.3g}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert the trained network afresh on a backend: the same actions as the acting policy?"""
    from rivc.neurochip import make_backend

    model = _load(args.run_dir)
    observations = _visited_states(model, args.episodes, args.seed)
    network = model.q_network.export(calibration_obs=observations if not model.variant_spec.qat else None)
    start = time.perf_counter()
    policy = make_backend(args.backend).convert(network)
    ms = 1e3 * (time.perf_counter() - start)
    error = model.conversion_error(observations) if args.backend == model.backend_name else None
    identical = _identical_actions(model.spiking_policy, policy, observations)
    ptq = "" if model.variant_spec.qat else " (post-training quantized afresh on these states, not as in training)"
    print(f"{model.env_id}: target {network.target}, converted with {args.backend} in {ms:.2f} ms{ptq}; on "
          f"{len(observations)} visited states: identical actions to the training-time policy {100 * identical:.2f} %"
          + (f", greedy agreement with the trained network {100 * error.action_agreement:.2f} %, mean |dQ| "
             f"{error.mean_abs_dq:.4g}, {error.spikes_per_action:.0f} spikes per action" if error else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a deployable policy folder of the training-time acting policy; check the chip fit and the actions."""
    from rivc.neurochip import make_backend, save_policy

    model = _load(args.run_dir)
    network = model.spiking_policy.network  # what acted during training, bit for bit
    if args.format == "nir":
        if args.backend is not None or args.map_to is not None:
            raise UserError("--backend and --map-to choose a policy folder's backend; a NIR file (--format nir) has none")
        return _export_nir(model, network, args)
    args.backend = args.backend or "snntorch"
    metadata = {"env_id": model.env_id, "variant": model.variant, "target": network.target}
    if model.action_bins is not None:  # deploy, run and report make the task as it was trained
        metadata["action_bins"] = model.action_bins.to_dict()
    if args.backend == "akida":
        from rivc.neurochip.akida_backend import fit_report, format_fit

        report = fit_report(network, args.map_to)
        metadata["fit"] = {k: v for k, v in report.items() if k != "summary"}
        print(format_fit(report))
    observations = _visited_states(model, args.episodes, args.seed)
    deployed = make_backend(args.backend).convert(network)
    identical = _identical_actions(model.spiking_policy, deployed, observations)
    metadata["identical_actions"] = {"rate": identical, "states": len(observations)}
    summary = Path(args.run_dir) / SUMMARY_FILE
    if summary.is_file():
        metadata["training_evaluation"] = json.loads(summary.read_text()).get("evaluation")
    folder = save_policy(args.out, network, args.backend, metadata=metadata, force=args.force)
    print(f"exported {model.env_id} policy ({network.target} target) for {args.backend} to {folder}: identical actions "
          f"to the training-time policy on {100 * identical:.2f} % of {len(observations)} visited states")
    if identical < 1.0 and network.chip.exact:
        print("rivc export: error: the deployed policy differs from the training-time policy on an exact target",
              file=sys.stderr)
        return 1
    return 0


def _policy_env(policy, env_id: str | None):
    """``(env_id, env)``: ``--env`` or the environment a policy folder records, made as it was trained (the
    actions' bins the folder records)."""
    from rivc.envs import ActionBins

    meta = policy.metadata or {}
    env_id = env_id or meta.get("env_id")
    if env_id is None:
        raise UserError("the policy folder records no environment: pass --env ID")
    bins = ActionBins.from_dict(meta.get("action_bins"))  # (checked by load_policy)
    return env_id, _make_env(env_id, bins, "the policy folder's action bins")


def cmd_deploy(args: argparse.Namespace) -> int:
    """Run a deployed policy folder (numpy, and akida for Akida policies; no torch)."""
    from rivc.neurochip import load_policy

    policy = load_policy(args.policy_dir)
    meta = policy.metadata or {}
    env_id, env = _policy_env(policy, args.env)
    check_env(policy.network, env, env_id)
    result = rollout(policy, env, args.episodes, seed=args.seed)
    print(f"{env_id}: deployed {meta['backend']} policy {result.describe()}")
    trained = meta.get("training_evaluation")
    if trained and trained["seed"] == args.seed and len(trained["returns"]) == args.episodes and env_id == meta.get("env_id"):
        same = trained["returns"] == result.returns
        print(f"training-time evaluation on the same episodes: return {trained['mean']:.1f}; deployed returns "
              + ("equal it episode for episode" if same else "DIFFER"))
        if not same and policy.network.chip.exact:
            return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """A deployed policy in a fixed-rate control loop on an environment (numpy, and akida; no torch); Ctrl-C or
    SIGTERM stops it cleanly, with the table."""
    import signal

    from rivc.neurochip import load_policy
    from rivc.neurochip.control import GymnasiumIO, run_loop

    policy = load_policy(args.policy_dir)
    env_id, env = _policy_env(policy, args.env)
    check_env(policy.network, env, env_id)
    io = GymnasiumIO(env, seed=args.seed)
    stop = threading.Event()
    handlers = {number: signal.signal(number, lambda *_: stop.set()) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = run_loop(policy, io.source, io.sink, args.rate, seconds=args.seconds, stop=stop)
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    print(f"{env_id}: {(policy.metadata or {}).get('backend', '?')} policy at {args.rate:g} Hz for {report.seconds:.1f} s")
    print(report.table())
    if io.returns:
        print(f"episodes ended: {len(io.returns)}, mean return {np.mean(io.returns):.1f}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Share a run on the Hugging Face Hub: model, policy folder (with its .fbz), NIR file, manifest, model card."""
    from rivc.agents.hub import push

    files = push(args.run_dir, args.repo_id, policy_dir=args.policy, nir=args.nir, private=args.private)
    print(f"pushed {len(files)} files to https://huggingface.co/{args.repo_id}: {', '.join(files)}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """Download a shared run into a folder (one unit), every file checked against its manifest, then loaded."""
    from rivc.agents.hub import pull

    out = pull(args.repo_id, args.out, force=args.force, revision=args.revision)
    print(f"pulled {args.repo_id} into {out}: deploy it with `rivc deploy {out}/policy`")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """What a deployed policy folder's SNN costs per action, on the states it visits (rivc.neurochip.cost)."""
    from rivc.integer_net import atomic_write_bytes
    from rivc.neurochip import load_policy
    from rivc.neurochip.cost import policy_cost

    policy = load_policy(args.policy_dir)
    env_id, env = _policy_env(policy, args.env)
    check_env(policy.network, env, env_id)
    states = rollout(policy, env, args.episodes, seed=args.seed, record_states=True)
    cost = policy_cost(policy.network, np.asarray(states.observations))
    print(f"{env_id}, {len(states.observations)} visited states: {cost.describe()}")
    figures = cost.as_dict()
    from rivc.neurochip.akida_backend import AkidaPolicy, measure_on_board  # numpy only until a policy runs

    if isinstance(policy, AkidaPolicy):  # a board measures its power, the software engine cannot
        if policy.device is None:
            print("no Akida board attached (akida.devices() is empty): the energy above is an estimate, not a measurement")
        else:
            board = measure_on_board(policy, np.asarray(states.observations))
            print(board.describe())
            figures["board"] = dataclasses.asdict(board)
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(figures, indent=2).encode())
    return 0


def cmd_convert_model(args: argparse.Namespace) -> int:
    """Convert a float Q-network (SB3 DQN zip) for a target; optionally fine-tune it with RIVC."""
    from rivc.agents.convert_model import agreement_with_float, convert_float_model, float_visited_states, finetune

    if args.out and not args.finetune:
        raise UserError("--out saves the fine-tuned model: add --finetune N")
    quant = _quant_config(args)
    env = _make_env(args.env, args.action_bins)
    before = convert_float_model(args.model, env, target=args.target, quant=quant, episodes=args.episodes)
    print(f"{args.env}: post-training quantized, {before.describe()}")
    if not args.finetune:
        return 0
    model = finetune(args.model, env, args.finetune, target=args.target, quant=quant, seed=args.seed)
    after = rollout(model, _make_env(args.env, args.action_bins), args.episodes, seed=1000)
    states = float_visited_states(args.model, _make_env(args.env, args.action_bins), args.episodes)
    error = agreement_with_float(args.model, model.spiking_policy, states)
    print(f"{args.env}: after {args.finetune} steps of RIVC fine-tuning: SNN {after.describe()}; greedy agreement "
          f"with the float network {100 * error.action_agreement:.1f} % on its {len(states)} visited states")
    if args.out:
        out = Path(args.out)
        model.save(out / MODEL_FILE)
        print(f"saved to {out} (`rivc export {out} --out POLICY_DIR` deploys it)")
    return 0


def cmd_precision(args: argparse.Namespace) -> int:
    """Per-layer sensitivity of a trained policy and the cheapest legal widths that keep its greedy actions."""
    from rivc.agents.precision import collect_transitions, finetune_at, format_table, memory_bits, search_precision
    from rivc.files import folder_unit
    from rivc.integer_net import atomic_write_bytes

    folder = _model_path(args.run_dir).parent  # the run folder (RUN may name its model.zip)
    model = _load(args.run_dir)
    data = collect_transitions(model, _model_env(model), args.episodes, args.seed)
    budget = None if args.max_memory is None else int(args.max_memory * memory_bits(model.q_network, model.q_network.config))
    result, chosen = search_precision(model, data, args.agreement, budget, args.widths)
    result.returns["trained"] = rollout(model, _model_env(model), args.eval_episodes, seed=args.eval_seed).mean_return
    if chosen is not None:
        requantized = model.backend.convert(model.q_network.with_config(chosen).export())
        result.returns["chosen, requantized"] = rollout(requantized, _model_env(model), args.eval_episodes,
                                                        seed=args.eval_seed).mean_return
        if args.finetune:
            tuned = finetune_at(_model_path(args.run_dir), _model_env(model), chosen, args.finetune, args.seed)
            result.returns[f"chosen, fine-tuned {args.finetune} steps"] = rollout(
                tuned, _model_env(model), args.eval_episodes, seed=args.eval_seed).mean_return
            with folder_unit(folder / PRECISION_DIR, force=True) as out:  # rivc precision's own output
                tuned.save(out / MODEL_FILE)
                tuned.spiking_policy.network.save(out / POLICY_FILE)
    table = format_table(result)
    print(f"{model.env_id}, target {model.target}:\n{table}")
    atomic_write_bytes(folder / "precision.json", json.dumps(result.as_dict(), indent=2).encode())
    atomic_write_bytes(folder / "precision.md", (table + "\n").encode())
    where = f"; the fine-tuned model in {folder / PRECISION_DIR}" if chosen is not None and args.finetune else ""
    print(f"written to {folder / 'precision.md'} and precision.json{where}")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported in one line (what is wrong and the fix) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def count(minimum: int):
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}: give {minimum} or more")
        return value
    return parse


def real(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite number in the range ``low..high`` (each end open or closed)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not math.isfinite(value) or not inside:
            if math.isinf(high):
                wanted = f"{'>' if low_open else '>='} {low:g}"
            elif math.isinf(low):
                wanted = f"{'<' if high_open else '<='} {high:g}"
            else:
                wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"{text} is not a finite number {wanted}: give one")
        return value
    return parse


def real_or_none(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """:func:`real`, or ``"none"`` (returned as it is)."""
    number = real(low, high, low_open, high_open)

    def parse(text: str) -> float | str:
        if text.strip().lower() == "none":
            return "none"
        try:
            return number(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (or 'none')") from None
    return parse


def bit_widths(text: str) -> tuple[int, ...]:
    """An argparse type: bit widths separated by commas."""
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--widths takes bit widths separated by commas (e.g. 2,4,8), got {text!r}") \
            from None


def reward_scale(text: str) -> float | str:
    """An argparse type: ``auto`` or a finite factor > 0."""
    if text == AUTO:
        return AUTO
    try:
        return real(0.0, low_open=True)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or 'auto')") from None


def action_bins(text: str):
    """An argparse type: ``rivc.envs.ActionBins`` (``5``, ``3,5``, ``3:per_joint``)."""
    from rivc.envs import ActionBins

    try:
        return ActionBins.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def path(text: str) -> str:
    """An argparse type: a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty: name a file or folder")
    return text


POSITIVE, NON_NEGATIVE = count(1), count(0)


def build_parser() -> argparse.ArgumentParser:
    from rivc.neurochip import available_backends

    parser = Parser(prog="rivc", description="Train RL policies that run as spiking neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent and save it")
    train.add_argument("--env", default="CartPole-v1", help="Gymnasium id (default CartPole-v1)")
    train.add_argument("--action-bins", type=action_bins, default=None, metavar="N[,N...][:per_joint]",
                       help="a continuous-action task's actions made discrete: N levels per dimension, every "
                            "combination (grid) or one joint at a time (per_joint, N odd); saved with the model")
    train.add_argument("--variant", default="rivc", choices=list(VARIANTS))
    train.add_argument("--target", default=DEFAULT_TARGET, choices=list(TARGETS),
                       help="chip arithmetic to train and deploy: akida (Akida 2.0), akd1000 (AKD1000/AKD1500), "
                            "rate (rate-coded IF)")
    train.add_argument("--backend", default="snntorch", choices=available_backends(),
                       help="where the SNN acts while training: snntorch (emulation) or akida (Akida's engine)")
    train.add_argument("--bits", type=int, default=None,
                       help="weight (and activation) bits, default 4: akida 1, 2, 4, 8; akd1000 2, 4; rate 1..8")
    train.add_argument("--policy", default="auto", choices=["auto", "MlpPolicy", "CnnPolicy"],
                       help="auto: CnnPolicy for camera frames, MlpPolicy for vectors")
    train.add_argument("--activation-bits", type=int, default=None, help="activation bits if not --bits")
    train.add_argument("--layer-bits", default=None, metavar="W/A,...,W/32",
                       help="each layer's weight/activation bits, the Q-value head last (e.g. 8/8,8/4,4/32); in place "
                            "of --bits and --activation-bits")
    train.add_argument("--input-bits", type=int, default=8)
    train.add_argument("--hyperparams", default="tuned", choices=["tuned", "defaults", "zoo"],
                       help="tuned: the task's values from agents/hyperparams.py (docs/TUNING_SWEEP.md); defaults: RIVC's; "
                            "zoo: the RL Zoo's DQN settings and budget (needs rl-zoo3)")
    train.add_argument("--alpha", type=real(0.0, 1.0, high_open=True), default=None,
                       help="gap-increasing strength in [0, 1)")
    train.add_argument("--gap-clip", type=real_or_none(-math.inf, 0.0, high_open=True), default=None,
                       metavar="L0|none",
                       help="a lower bound L0 < 0 on the gap term in the scaled rewards' units, as Munchausen-DQN "
                            f"clips it (its L0 = -1); default: {DEFAULT_GAP_CLIP:g}; none: unbounded, the paper's update "
                            "(docs/zoo_notes.md)")
    train.add_argument("--quantization-delay", type=int, default=None, metavar="STEPS",
                       help="train and act with the float network for the first STEPS steps, then QAT and the SNN "
                            "(QuaRL's quantization delay; the summary records the step the SNN took over)")
    train.add_argument("--beta", type=real(0.0, low_open=True), default=None, help="inverse temperature > 0")
    train.add_argument("--reward-scale", type=reward_scale, default=None, metavar="auto|FACTOR",
                       help="the factor on the rewards in the value target; auto (default): 1 / max(1, mean |r|) "
                            "over the first 1,000 rewards, 1 where they are at most 1 a step; a number: that "
                            "factor (1: the rewards as they are) (docs/zoo_notes.md)")
    train.add_argument("--learning-rate", type=real(0.0, low_open=True), default=None,
                       help="overrides the settings' (4-bit RIVC on the Zoo's CartPole settings learned best at 5e-4, "
                            "docs/zoo_notes.md)")
    train.add_argument("--max-learning-rate", type=real_or_none(0.0, low_open=True), default=None, metavar="RATE|none",
                       help="the largest rate of quantization-aware training: a higher one is capped (default "
                            f"{DEFAULT_MAX_LEARNING_RATE:g}, "
                            "the rate RIVC's defaults were tuned at; docs/zoo_notes.md); none: the given rate as it is")
    train.add_argument("--clip-decay", default=None, metavar="DECAY|learned",
                       help="the activation clips follow a moving average (this decay per update, e.g. 0.99) of each "
                            "hidden layer's largest pre-activation; 'learned' (default): PACT's learned clips, at every "
                            "width (docs/zoo_notes.md)")
    train.add_argument("--clip-statistic", default=None, choices=list(CLIP_STATISTICS),
                       help="with --clip-decay: what the clips follow, max (each batch's largest pre-activation; "
                            "default) or mse (the clip that quantizes the batch's activations with the least error)")
    train.add_argument("--clip-gradient", default=None, choices=list(CLIP_GRADIENTS),
                       help="how the learned activation clips get their gradient: pact (default; from the activations "
                            "they clip) or lsq (also the rounding error of the others, LSQ's step-size gradient)")
    train.add_argument("--input-range", default=None, choices=list(INPUT_RANGES),
                       help="what the input codes span: fit (the observation space's bounds, the data's where "
                            "unbounded, tracked only where the states span less than 1/8 of them; default), space (the "
                            "space's bounds, fixed), data (the warm-up's states' range, fixed), track (the replay "
                            "data's range, moved as the policy's states move); docs/zoo_notes.md says where each helps")
    train.add_argument("--input-quantile", type=real(0.0, 0.5, high_open=True), default=None, metavar="Q",
                       help="with --input-range fit (default) or track: the share of states on each side left out "
                            "of a tracked range (default "
                            "0.01); 0 keeps every state (CartPole ended higher so, LunarLander lower: docs/zoo_notes.md)")
    train.add_argument("--input-units", default=None, choices=list(INPUT_UNITS),
                       help="the units the first layer's weights train in: observation (the observation's own, as a "
                            "float DQN's; default), normalised (the input codes' scale, as until 2026-12)")
    train.add_argument("--activation-steps", default=None, choices=list(ACTIVATION_STEPS),
                       help="a hidden layer's activation steps: layer (one clip per layer; default) or unit (one per "
                            "unit, folded into the next layer's weights; dense networks)")
    train.add_argument("--head", default=None, choices=list(HEADS),
                       help="what the Q-network's last layer computes: q (a Q-value per action; default) or dueling (a "
                            "value and an advantage per action, Q = V + A - mean A: each advantage on its own scale)")
    train.add_argument("--timesteps", type=POSITIVE, default=None,
                       help=f"training steps (default {DEFAULT_TIMESTEPS}, or the Zoo's budget with --hyperparams zoo)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=path, default="runs/rivc", help="output folder (model, policy, logs)")
    train.add_argument("--force", action="store_true", help="replace --out if it exists and holds files")
    train.add_argument("--resume", action="store_true",
                       help="train the run in --out --timesteps more steps, with its settings and saved replay buffer")
    train.add_argument("--save-replay-buffer", action="store_true",
                       help="also save the replay buffer (replay_buffer.npz), for --resume")
    train.add_argument("--eval-episodes", type=POSITIVE, default=10)
    train.add_argument("--eval-seed", type=int, default=1000, help="seed of the first evaluation episode")
    train.add_argument("--eval-freq", type=NON_NEGATIVE, default=0,
                       help="every N steps, evaluate the SNN policy on selection episodes and keep the best "
                            "(0: keep the last)")
    train.add_argument("--select-episodes", type=POSITIVE, default=5, help="episodes per selection evaluation")
    train.add_argument("--select-seed", type=int, default=500,
                       help="seed of the first selection episode (apart from --eval-seed's)")
    train.add_argument("--threads", type=POSITIVE, default=1,
                       help="torch and BLAS threads; small policies train fastest on one (2.3x faster than two from "
                            "camera frames on a 2-core machine, where the renderer needs the other), and seeds run "
                            "side by side do not wait for each other's threads")
    train.add_argument("--progress-bar", action="store_true")
    train.add_argument("--verbose", action="store_true", help="print SB3's training table")
    train.set_defaults(func=cmd_train, run_defaults={name: train.get_default(name) for name in RUN_SETTINGS})
    evaluate = sub.add_parser("evaluate", help="run episodes with a trained SNN policy")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=POSITIVE, default=10)
    evaluate.add_argument("--seed", type=int, default=1000)
    evaluate.set_defaults(func=cmd_evaluate)
    for name, func, text in (("convert", cmd_convert, "convert the trained network afresh and compare its actions"),
                             ("export", cmd_export, "write a deployable policy folder for a neurochip backend")):
        command = sub.add_parser(name, help=text)
        command.add_argument("run_dir")
        command.add_argument("--backend", default="snntorch" if name == "convert" else None,
                             choices=available_backends(), help="default: snntorch")
        command.add_argument("--episodes", type=POSITIVE, default=5, help="greedy episodes whose states are compared")
        command.add_argument("--seed", type=int, default=0)
        command.set_defaults(func=func)
        if name == "export":
            command.add_argument("--out", type=path, required=True,
                                 help="policy folder (or, with --format nir, file) to write")
            command.add_argument("--force", action="store_true", help="replace --out if it exists and holds files")
            command.add_argument("--format", default="folder", choices=("folder", "nir"),
                                 help="folder: a policy folder for --backend; nir: a NIR graph (rate target) for "
                                      "Sinabs, Norse, Rockpool and the chips they reach")
            command.add_argument("--map-to", default=None,
                                 help="akida: virtual device for the fit (default the target's: TwoNodesIPv2 / AKD1000)")
    convert_model = sub.add_parser("convert-model", help="convert a float DQN (Stable-Baselines3 .zip) into an SNN policy")
    convert_model.add_argument("model", help="a Stable-Baselines3 DQN .zip (MlpPolicy)")
    convert_model.add_argument("--env", required=True, help="Gymnasium id the model was trained on")
    convert_model.add_argument("--action-bins", type=action_bins, default=None, metavar="N[,N...][:per_joint]",
                               help="the bins the float model's task was made discrete with")
    convert_model.add_argument("--target", default=DEFAULT_TARGET, choices=list(TARGETS))
    convert_model.add_argument("--bits", type=int, default=None, help="weight (and activation) bits, default 4")
    convert_model.add_argument("--activation-bits", type=int, default=None)
    convert_model.add_argument("--layer-bits", default=None, metavar="W/A,...,W/32",
                               help="each layer's weight/activation bits, the head last (e.g. 8/8,8/4,4/32)")
    convert_model.add_argument("--episodes", type=POSITIVE, default=10, help="greedy episodes per comparison")
    convert_model.add_argument("--finetune", type=NON_NEGATIVE, default=0, help="then train with RIVC for N steps")
    convert_model.add_argument("--seed", type=int, default=0)
    convert_model.add_argument("--out", type=path, default=None, help="folder for the fine-tuned model")
    convert_model.set_defaults(func=cmd_convert_model)
    deploy = sub.add_parser("deploy", help="run a deployed policy folder on an environment (no torch)")
    deploy.add_argument("policy_dir")
    deploy.add_argument("--env", default=None, help="Gymnasium id (default: the one the policy was trained on)")
    deploy.add_argument("--episodes", type=POSITIVE, default=10)
    deploy.add_argument("--seed", type=int, default=1000)
    deploy.set_defaults(func=cmd_deploy)
    push = sub.add_parser("push", help="share a run on the Hugging Face Hub (model, policy folder, model card)")
    push.add_argument("run_dir")
    push.add_argument("--repo-id", required=True, help="the Hub repository, user/name (created if missing)")
    push.add_argument("--policy", type=path, default=None, help="the policy folder to share (default: RUN/policy)")
    push.add_argument("--nir", type=path, default=None, help="a NIR file to share too (rivc export --format nir)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.set_defaults(func=cmd_push)
    pull = sub.add_parser("pull", help="download a shared run from the Hub into a folder, checked")
    pull.add_argument("repo_id")
    pull.add_argument("--out", type=path, required=True, help="the folder to write (one unit)")
    pull.add_argument("--force", action="store_true", help="replace --out if it exists and holds files")
    pull.add_argument("--revision", default=None, help="a branch, tag or commit of the repository")
    pull.set_defaults(func=cmd_pull)
    control = sub.add_parser("run", help="run a deployed policy folder in a fixed-rate control loop (no torch)")
    control.add_argument("policy_dir")
    control.add_argument("--env", default=None, help="Gymnasium id (default: the one the policy was trained on)")
    control.add_argument("--rate", type=real(0.0, low_open=True), default=50.0, help="actions per second (Hz)")
    control.add_argument("--seconds", type=real(0.0, low_open=True), default=10.0, help="how long to run")
    control.add_argument("--seed", type=int, default=1000, help="seed of the environment's first episode")
    control.set_defaults(func=cmd_run)
    precision = sub.add_parser("precision", help="per-layer sensitivity of a trained policy and the cheapest legal "
                                                 "per-layer bit widths that keep its greedy actions")
    precision.add_argument("run_dir")
    precision.add_argument("--agreement", type=real(0.0, 1.0, low_open=True), default=0.99,
                           help="share of greedy actions to keep, in (0, 1] (default 0.99)")
    precision.add_argument("--max-memory", type=real(0.0, low_open=True), default=None,
                           help="parameter-memory budget as a fraction of the trained policy's (e.g. 0.6)")
    precision.add_argument("--widths", type=bit_widths, default=None, help="bit widths to consider, e.g. 2,4,8 (default: the target's)")
    precision.add_argument("--episodes", type=POSITIVE, default=5, help="greedy episodes whose transitions are measured")
    precision.add_argument("--seed", type=int, default=2000, help="seed of the first measured episode")
    precision.add_argument("--finetune", type=NON_NEGATIVE, default=0,
                           help="then train the chosen widths with RIVC for N steps")
    precision.add_argument("--eval-episodes", type=POSITIVE, default=10)
    precision.add_argument("--eval-seed", type=int, default=1000)
    precision.set_defaults(func=cmd_precision)
    report = sub.add_parser("report", help="what a deployed policy costs per action: operations, spikes, memory, "
                                           "an energy estimate (no torch)")
    report.add_argument("policy_dir")
    report.add_argument("--env", default=None, help="Gymnasium id (default: the one the policy was trained on)")
    report.add_argument("--episodes", type=POSITIVE, default=3, help="greedy episodes whose states are measured")
    report.add_argument("--seed", type=int, default=1000)
    report.add_argument("--json", type=path, default=None, help="also write the figures to this JSON file")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad argument (exit 2, its one line already printed), or --help (0)
        return int(exc.code or 0)
    from rivc.integer_net import CorruptFileError

    failed_threads = BACKGROUND_WRITE_ERRORS
    failed_threads.clear()
    try:
        with _thread_write_errors_kept(failed_threads):
            code = args.func(args)
    except (UserError, CorruptFileError, ValueError, OSError, ImportError, RuntimeError) as exc:  # (OSError: a full disk,
        # a read-only or missing folder, a file where a folder should be)
        print(f"rivc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if failed_threads:  # a background writer failed and the command did not hear of it
        print(f"rivc {args.command}: error: a background write failed: {failed_threads[0]}", file=sys.stderr)
        return 2
    return code


# write errors of background threads while a command runs (TensorBoard's event writer on a full disk): a command
# that writes a folder checks it before the folder is committed; main reports any in one line
BACKGROUND_WRITE_ERRORS: list[BaseException] = []


def _check_background_writes() -> None:
    """Raise (inside a folder unit, so that the folder is not committed) if a background writer failed."""
    if BACKGROUND_WRITE_ERRORS:
        failure = BACKGROUND_WRITE_ERRORS[0]
        raise OSError(getattr(failure, "errno", None), f"{getattr(failure, 'strerror', None) or failure} (in a "
                      "background writer: TensorBoard's log)")


@contextlib.contextmanager
def _thread_write_errors_kept(failures: list[BaseException]):
    """A write error in a background thread is kept in ``failures`` (no traceback), for the command to check and
    report in one line."""
    previous = threading.excepthook

    def keep(hook_args) -> None:
        if issubclass(hook_args.exc_type, OSError):
            failures.append(hook_args.exc_value)
        else:
            previous(hook_args)

    threading.excepthook = keep
    try:
        yield
    finally:
        threading.excepthook = previous


if __name__ == "__main__":
    sys.exit(main())
