"""Command line: ``rivc train | evaluate | convert``. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MODEL_FILE, POLICY_FILE = "model.zip", "policy.npz"


class UserError(Exception):
    """A problem the user can fix; reported without a traceback."""


def _make_env(env_id: str):
    import gymnasium as gym

    import rivc.envs  # noqa: F401  (registers the rivc/ environments)

    try:
        return gym.make(env_id)
    except gym.error.Error as exc:
        raise UserError(f"cannot make environment {env_id!r}: {exc}") from exc


def _model_path(run_dir: str) -> Path:
    path = Path(run_dir)
    path = path / MODEL_FILE if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"no trained model at {path}: pass the --out folder of `rivc train`")
    return path


def evaluate_spiking_policy(model, env, episodes: int, seed: int = 1000) -> tuple[float, float, float]:
    """Mean and std of the episode return of the model's (spiking) greedy policy, and its
    mean per-action latency in milliseconds. ``model``: an agent or a deployed ``SpikingPolicy``."""
    from rivc.neurochip import SpikingPolicy

    if isinstance(model, SpikingPolicy):  # a deployed policy: greedy actions, batch of one
        act = lambda obs: model.predict(obs)[0]  # noqa: E731
    else:
        act = lambda obs: model.predict(obs, deterministic=True)[0]  # noqa: E731
    returns, latencies = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            start = time.perf_counter()
            action = act(obs)
            latencies.append(time.perf_counter() - start)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns)), 1e3 * float(np.mean(latencies))


def cmd_train(args: argparse.Namespace) -> int:
    from stable_baselines3.common.logger import configure

    from rivc.agents.hyperparams import tuned_hyperparams
    from rivc.agents.rivc_agent import RIVC
    from rivc import QuantConfig
    from rivc.integer_net import atomic_write_bytes

    env = _make_env(args.env)
    quant = QuantConfig(weight_bits=args.bits, activation_bits=args.activation_bits or args.bits, input_bits=args.input_bits)
    options = tuned_hyperparams(args.env) if args.hyperparams == "tuned" else {}
    options.update({k: v for k, v in (("alpha", args.alpha), ("beta", args.beta)) if v is not None})
    model = RIVC("MlpPolicy", env, backend=args.backend, quant=quant, variant=args.variant, seed=args.seed,
                 verbose=0, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    formats = ["csv", "tensorboard"] + (["stdout"] if args.verbose else [])
    model.set_logger(configure(str(out / "logs"), formats))
    print(f"training {args.variant} on {args.env}: {args.timesteps} steps, {args.backend} backend, "
          f"{quant.weight_bits}-bit weights / {quant.activation_bits}-bit activations, seed {args.seed}"
          + (f"; {', '.join(f'{k}={v}' for k, v in sorted(options.items()))}" if options else ""))
    start = time.perf_counter()
    model.learn(args.timesteps, progress_bar=args.progress_bar)
    seconds = time.perf_counter() - start
    model.save(out / MODEL_FILE)
    if model.spiking_policy is not None:
        model.spiking_policy.network.save(out / POLICY_FILE)
    mean, std, latency = evaluate_spiking_policy(model, _make_env(args.env), args.eval_episodes)
    summary = {
        "env": args.env, "variant": args.variant, "hyperparams": options, "timesteps": args.timesteps,
        "seconds": round(seconds, 1),
        "steps_per_second": round(args.timesteps / seconds, 1), "conversions": model.num_conversions,
        "eval_return_mean": mean, "eval_return_std": std, "eval_episodes": args.eval_episodes,
        "ms_per_action": round(latency, 3),
    }
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    print(f"trained in {seconds:.0f} s ({summary['steps_per_second']:.0f} steps/s), {model.num_conversions} conversions")
    actor = "SNN" if model.variant_spec.snn_acts else "float"
    print(f"{actor} policy return: {mean:.1f} +- {std:.1f} over {args.eval_episodes} episodes "
          f"({latency:.2f} ms per action); saved to {out}")
    return 0


def _load(run_dir: str):
    from rivc.agents.rivc_agent import RIVC

    model = RIVC.load(_model_path(run_dir))
    env_id = getattr(model, "env_id", None)
    if env_id is None:
        raise UserError("the saved model does not record its environment id")
    return model, env_id


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, env_id = _load(args.run_dir)
    mean, std, latency = evaluate_spiking_policy(model, _make_env(env_id), args.episodes, seed=args.seed)
    actor = "SNN" if model.variant_spec.snn_acts else "float"
    print(f"{env_id}: {actor} policy return {mean:.1f} +- {std:.1f} over {args.episodes} episodes "
          f"({latency:.2f} ms per action)")
    return 0


def _visited_states(model, env, steps: int, seed: int) -> np.ndarray:
    """Observations met by the model's exploring policy (for calibration and conversion checks)."""
    observations, (obs, _) = [], env.reset(seed=seed)
    for _ in range(steps):
        observations.append(obs)
        action, _ = model.predict(obs, deterministic=False)
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            obs, _ = env.reset()
    return np.asarray(observations, dtype=np.float32)


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert the saved network afresh and measure its conversion error on states the policy visits."""
    from rivc.metrics import network_conversion_error

    model, env_id = _load(args.run_dir)
    observations = _visited_states(model, _make_env(env_id), args.steps, args.seed)
    start = time.perf_counter()
    policy = model.backend.convert(model.q_network.export(calibration_obs=observations, **model.backend.export_options))
    ms = 1e3 * (time.perf_counter() - start)
    error = network_conversion_error(model.q_network, policy, observations)
    print(f"{env_id}: converted with {model.backend_name} in {ms:.2f} ms; on {len(observations)} visited states: "
          f"action agreement {100 * error.action_agreement:.2f} %, mean |dQ| {error.mean_abs_dq:.4g}, "
          f"{policy.spikes_per_action:.0f} spikes per action")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a deployable policy folder (integer network + JSON; Akida's .fbz too) for a backend."""
    from rivc.neurochip import make_backend, save_policy
    from rivc.metrics import network_conversion_error

    model, env_id = _load(args.run_dir)
    options = {k: v for k, v in (("timesteps", args.timesteps), ("schedule", args.schedule)) if v is not None}
    backend = make_backend(args.backend, **options)
    observations = _visited_states(model, _make_env(env_id), args.steps, args.seed)
    network = model.q_network.export(calibration_obs=observations, **backend.export_options)
    metadata = {"env_id": env_id, "variant": model.variant}
    if args.backend == "akida":
        from rivc.neurochip.akida_backend import mapping_report

        metadata["mapping"] = report = mapping_report(network, args.map_to)
        on_chip = ", ".join(report["hardware_layers"]) or "none"
        print(f"{args.map_to}: fits={report['fits']}, {report['nps']} NPs; on hardware: {on_chip}; in software: "
              f"{', '.join(report['software_layers']) or 'none'}" + (f" ({report['error']})" if report["error"] else ""))
    folder = save_policy(args.out, network, args.backend, options, metadata=metadata)
    error = network_conversion_error(model.q_network, backend.convert(network), observations)
    print(f"exported {env_id} policy for {args.backend} to {folder}: action agreement with the trained network "
          f"{100 * error.action_agreement:.2f} % on {len(observations)} visited states")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Run a deployed policy folder (numpy, and akida for Akida policies; no torch)."""
    from rivc.neurochip import load_policy

    policy = load_policy(args.policy_dir)
    env_id = args.env or (policy.metadata or {}).get("env_id")
    if env_id is None:
        raise UserError("the policy folder records no environment: pass --env ID")
    mean, std, latency = evaluate_spiking_policy(policy, _make_env(env_id), args.episodes, seed=args.seed)
    print(f"{env_id}: deployed {policy.metadata['backend']} policy return {mean:.1f} +- {std:.1f} over "
          f"{args.episodes} episodes, {latency:.3f} ms per action")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from rivc.neurochip import available_backends

    variants = ["rivc", "qat", "gap", "naive", "fpnn"]  # rivc.agents.VARIANTS, without importing torch

    parser = argparse.ArgumentParser(prog="rivc", description="Train RL policies that run as spiking neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent and save it")
    train.add_argument("--env", default="CartPole-v1", help="Gymnasium id (default CartPole-v1)")
    train.add_argument("--variant", default="rivc", choices=variants)
    train.add_argument("--backend", default="snntorch", choices=available_backends())
    train.add_argument("--bits", type=int, default=4, help="weight (and activation) bits, 1..8")
    train.add_argument("--activation-bits", type=int, default=None, help="activation bits if not --bits")
    train.add_argument("--input-bits", type=int, default=8)
    train.add_argument("--hyperparams", default="tuned", choices=["tuned", "defaults"],
                       help="tuned: the task's values from rivc.agents/hyperparams.py (docs/TUNING.md); defaults: RIVC's")
    train.add_argument("--alpha", type=float, default=None, help="gap-increasing strength in [0, 1)")
    train.add_argument("--beta", type=float, default=None, help="inverse temperature > 0")
    train.add_argument("--timesteps", type=int, default=20_000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/rivc", help="output folder (model, policy, logs)")
    train.add_argument("--eval-episodes", type=int, default=10)
    train.add_argument("--progress-bar", action="store_true")
    train.add_argument("--verbose", action="store_true", help="print SB3's training table")
    train.set_defaults(func=cmd_train)
    evaluate = sub.add_parser("evaluate", help="run episodes with a trained SNN policy")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--seed", type=int, default=1000)
    evaluate.set_defaults(func=cmd_evaluate)
    convert = sub.add_parser("convert", help="convert a trained network and report the conversion error")
    convert.add_argument("run_dir")
    convert.add_argument("--steps", type=int, default=2000, help="visited states to measure on")
    convert.add_argument("--seed", type=int, default=0)
    convert.set_defaults(func=cmd_convert)
    export = sub.add_parser("export", help="write a deployable policy folder for a neurochip backend")
    export.add_argument("run_dir")
    export.add_argument("--backend", default="snntorch", choices=available_backends())
    export.add_argument("--out", required=True, help="policy folder to write")
    export.add_argument("--timesteps", type=int, default=None, help="snntorch: time steps per window")
    export.add_argument("--schedule", default=None, choices=["synchronous", "layered"], help="snntorch schedule")
    export.add_argument("--steps", type=int, default=2000, help="visited states for calibration and the check")
    export.add_argument("--map-to", default="TwoNodesIPv2", help="akida: virtual device to report the fit on")
    export.add_argument("--seed", type=int, default=0)
    export.set_defaults(func=cmd_export)
    deploy = sub.add_parser("deploy", help="run a deployed policy folder on an environment (no torch)")
    deploy.add_argument("policy_dir")
    deploy.add_argument("--env", default=None, help="Gymnasium id (default: the one the policy was trained on)")
    deploy.add_argument("--episodes", type=int, default=10)
    deploy.add_argument("--seed", type=int, default=1000)
    deploy.set_defaults(func=cmd_deploy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rivc.integer_net import CorruptFileError

    try:
        return args.func(args)
    except (UserError, CorruptFileError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"rivc {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
