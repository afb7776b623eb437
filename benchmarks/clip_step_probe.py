"""Does a learned activation clip stay low for want of step size? A diagnosis, not a setting.

Adam moves each parameter by about the learning rate per step whatever its scale, so a clip near 1 needs thousands
of updates to follow activations that grow past 100 (Acrobot's second hidden layer turns binary so). This probe
trains one run of the zoo sweep's defaults with each clip's Adam step multiplied by the clip after every update (a
step in log space, relative to the clip) and stores the zoo record (final return, curve, clips, unit shares):

    python benchmarks/clip_step_probe.py --env Acrobot-v1 --seed 0   # -> docs/results/probes/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import zoo  # noqa: E402
from rivc.integer_net import atomic_write_bytes  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "probes"


def with_relative_clip_steps(model):
    """``model`` whose optimizer scales each activation clip's step by the clip's value before the step."""
    import torch

    optimizer, clips = model.policy.optimizer, list(model.q_network.clips)
    step = optimizer.step

    def relative_step(*args, **kwargs):
        before = [clip.detach().clone() for clip in clips]
        result = step(*args, **kwargs)
        with torch.no_grad():
            for clip, old in zip(clips, before):
                clip.copy_(old + (clip - old) * old.abs())
        return result

    optimizer.step = relative_step
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Acrobot-v1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = next(s for s in zoo.grid([f"{args.env}:zoo"], [args.seed]) if s.agent == "rivc")
    make_model = zoo.make_model
    zoo.make_model = lambda spec: with_relative_clip_steps(make_model(spec))
    record = zoo.run_one(spec)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"clip_step_relative__{spec.key}.json"
    atomic_write_bytes(path, json.dumps(record).encode())
    print(f"{path.name}: final {record['final_return']:.1f}, clips {record['clips']}, "
          f"unit shares {record['unit_shares']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
