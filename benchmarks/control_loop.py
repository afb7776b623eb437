"""The fixed-rate control loop on this machine: `rivc run` at 50 Hz on CartPole and ArmReach, with the policy on
the numpy emulation (snntorch backend) and on Akida's engine. Writes docs/CONTROL_LOOP.md.

    python benchmarks/control_loop.py [--rate 50] [--seconds 10]

The policies are trained briefly (the loop's timing does not depend on how well they act); the latency is the
time from a release of the loop to the action sent, which includes the env's step (the sink) as a robot's
actuator call would.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import recorded_page  # noqa: E402

TASKS = {"CartPole-v1": 3000, "rivc/ArmReach-v0": 3000}  # env id -> training steps


def main(argv: list[str] | None = None) -> int:
    import contextlib
    import io

    import gymnasium as gym

    import rivc.envs  # noqa: F401
    from rivc.agents.cli import main as rivc
    from rivc.neurochip import load_policy
    from rivc.neurochip.control import GymnasiumIO, run_loop

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    command = "python benchmarks/control_loop.py" + (" " + " ".join(argv) if argv else "")
    with tempfile.TemporaryDirectory() as tmp, recorded_page(
            "CONTROL_LOOP.md", f"The control loop at {args.rate:g} Hz on this machine", command,
            "Latency: from the loop's release to the action handed to the sink (the env's step included); policy: "
            "from the observation read to the action decided. The policies are 4-bit, target akida, trained "
            f"{'/'.join(str(s) for s in set(TASKS.values()))} steps (the timing does not depend on how well they act)."):
        for env_id, steps in TASKS.items():
            run = Path(tmp) / env_id.replace("/", "_")
            with contextlib.redirect_stdout(io.StringIO()):
                assert rivc(["train", "--env", env_id, "--timesteps", str(steps), "--hyperparams", "defaults",
                             "--eval-episodes", "1", "--out", str(run)]) == 0
            for backend in ("snntorch", "akida"):
                folder = run.with_name(run.name + "-" + backend)
                with contextlib.redirect_stdout(io.StringIO()):
                    assert rivc(["export", str(run), "--backend", backend, "--out", str(folder), "--episodes", "1"]) == 0
                policy = load_policy(folder)
                loop_io = GymnasiumIO(gym.make(env_id), seed=0)
                report = run_loop(policy, loop_io.source, loop_io.sink, args.rate, seconds=args.seconds)
                print(f"{env_id}, {backend} ({'numpy emulation' if backend == 'snntorch' else 'Akida engine'}), "
                      f"{args.seconds:g} s:\n{report.table()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
