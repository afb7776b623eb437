"""Deterministic cost: CPU instructions per conversion (valgrind's callgrind), independent of machine load.

    python benchmarks/instructions.py            # export + convert of a 2x64 MLP (CartPole-sized), per target,
                                                 # a training step of RIVC's defaults against SB3's DQN, and
                                                 # the update alone (train() calls) at 64x64 and 256x256

Wall-clock timings on a shared 2-core machine swing 2x from minute to minute; an instruction count does not.
Each workload runs twice under callgrind, ``n`` times and not at all, and the difference over ``n`` is the cost of
one call, interpreter start and imports cancelled out. The conversions and the update alone (``train()`` calls)
repeat to a few thousand instructions in billions; the whole training loop's count per environment step has moved by
up to 5 % between runs of the same code (2026-12-07: 2,335 K and 2,447 K): compare its rows over larger changes only.

The exact path's int8 matrix product is switched off here (``rivc.fast_path.INT8_PRODUCTS``): valgrind emulates
no AVX-512, and under it torch's int8 product falls back to a scalar loop whose count says nothing of the VNNI
kernel that runs natively (docs/INSTRUCTIONS.md). The float32 product (exact on these codes, the path of CPUs
without int8 products) stands in.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import recorded_page  # noqa: E402

CONVERSION = """
import sys, numpy as np, torch
import rivc.fast_path
rivc.fast_path.INT8_PRODUCTS = False  # (the module docstring: valgrind has no AVX-512)
from gymnasium import spaces
from rivc import QuantConfig, QuantizedQNetwork
from rivc.neurochip import make_backend
torch.set_num_threads(1)
torch.manual_seed(0)
qnet = QuantizedQNetwork(spaces.Box(-1.0, 1.0, (4,), np.float32), 2, QuantConfig(4, 4, 8), hidden_sizes=(64, 64),
                         target=sys.argv[1])
backend = make_backend("snntorch")
for _ in range(int(sys.argv[2])):
    qnet.clear_quantization_cache()  # as after an update: nothing cached
    backend.convert(qnet.export(check=False))
"""

TRAINING = """
import sys, torch
import rivc.fast_path
rivc.fast_path.INT8_PRODUCTS = False  # (the module docstring: valgrind has no AVX-512)
from stable_baselines3 import DQN
from benchmarks.bench_train import SHARED
from rivc.agents import RIVC
torch.set_num_threads(1)
agent, settings, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
kwargs = dict(SHARED)
if settings == "zoo":  # the RL Zoo's CartPole-v1 settings: 256x256, 128 gradient steps every 256 env steps
    from rivc.agents.hyperparams import zoo_hyperparams
    kwargs = zoo_hyperparams("CartPole-v1").kwargs
(RIVC if agent == "rivc" else DQN)("MlpPolicy", "CartPole-v1", seed=0, **kwargs).learn(kwargs["learning_starts"] + steps)
"""
# train() calls past the warm-up, each on a new replay batch: the update alone, without the environment's steps, the
# acting and the SB3 loop (RIVC's calls convert too, and measure the conversion error on one in ConversionConfig.eval_every)
UPDATE = """
import sys, torch
import rivc.fast_path
rivc.fast_path.INT8_PRODUCTS = False  # (the module docstring: valgrind has no AVX-512)
from stable_baselines3 import DQN
from benchmarks.bench_train import SHARED
from rivc.agents import RIVC
torch.set_num_threads(1)
agent, width, gradient_steps, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
kwargs = dict(SHARED, policy_kwargs=dict(net_arch=[width, width]))
model = (RIVC if agent == "rivc" else DQN)("MlpPolicy", "CartPole-v1", seed=0, **kwargs)
model.learn(kwargs["learning_starts"] + 10)
for _ in range(calls):
    model.train(gradient_steps, kwargs["batch_size"])
"""
UPDATE_STEPS = {64: 1, 256: 8}  # hidden width: gradient steps per train() call (64: one cycle of RIVC's defaults)
SETTINGS = {"defaults": "RIVC's defaults (benchmarks/bench_train.py SHARED: 64x64, train_freq 4)",
            "zoo": "the RL Zoo's CartPole settings (256x256, train_freq 256, gradient_steps 128)"}


def instructions(script: str, *args: str) -> int:
    """Total instructions (callgrind's Ir) of ``python -c script args``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {"OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", script,
                        *args], check=True, capture_output=True, cwd=ROOT, env=env)
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(errors="replace"), re.M)
        if match is None:
            raise RuntimeError(f"no instruction total in {out}")
        return int(match.group(1))


def per_call(script: str, n: int, *args: str) -> float:
    return (instructions(script, *args, str(n)) - instructions(script, *args, "0")) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="calls counted per workload (more: less of the start-up noise)")
    parser.add_argument("--target", action="append", help="chip targets (default: akida, akd1000, rate)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps counted past the warm-up (defaults)")
    parser.add_argument("--zoo-steps", type=int, default=520,
                        help="the same on the Zoo's settings (520: two update cycles of 128 gradient steps)")
    parser.add_argument("--update-steps", type=int, default=200,
                        help="gradient steps counted per agent and width, the update alone, in train() calls (0: none)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("benchmarks/instructions.py needs valgrind: apt-get install valgrind")
    with recorded_page("INSTRUCTIONS.md", "Instructions per conversion and per training step (deterministic)",
                       "python benchmarks/instructions.py" + (" " + " ".join(argv) if argv else ""),
                       "Counted by valgrind's callgrind, which a busy machine does not move; RIVC's exact path with its float32 "
                       "matrix product (valgrind has no AVX-512, under which the int8 one runs natively)."):
        print("Instructions per export + convert, 2x64 MLP, 4-bit (callgrind; deterministic)")
        for target in args.target or ("akida", "akd1000", "rate"):
            print(f"{target:8s} {per_call(CONVERSION, args.n, target) / 1e3:8.0f} K")
        for settings, about in SETTINGS.items():
            steps = args.zoo_steps if settings == "zoo" else args.steps
            if not steps:
                continue
            dqn, rivc = (per_call(TRAINING, steps, agent, settings) for agent in ("dqn", "rivc"))
            print(f"\nInstructions per environment step past the warm-up, CartPole-v1, {about}, {steps} steps\n"
                  f"SB3 DQN  {dqn / 1e3:8.0f} K\nRIVC     {rivc / 1e3:8.0f} K   throughput by count: {dqn / rivc:.2f}x DQN")
        for width, gradient_steps in UPDATE_STEPS.items() if args.update_steps else ():
            calls = max(1, args.update_steps // gradient_steps)
            dqn, rivc = (per_call(UPDATE, calls, agent, str(width), str(gradient_steps)) / gradient_steps
                         for agent in ("dqn", "rivc"))
            print(f"\nInstructions per gradient step of train({gradient_steps}) past the warm-up, CartPole-v1, "
                  f"{width}x{width} (benchmarks/bench_train.py SHARED, its batch), {calls} calls, RIVC's conversion after "
                  "each call included\n"
                  f"SB3 DQN  {dqn / 1e3:8.0f} K\nRIVC     {rivc / 1e3:8.0f} K   ratio by count: {dqn / rivc:.2f}x DQN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
