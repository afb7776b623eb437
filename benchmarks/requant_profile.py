"""The QAT forward's requantization of a conv feature map: the in-place path against the rule written out.

    python benchmarks/requant_profile.py

``rivc.chip.scale_shift_codes`` on a float64 tensor computes ``acc * (scale / 2**shift) + 1/2``, floored and
clipped, in place on one fresh tensor (the same codes, bit for bit: tests/test_chip_targets.py); the peer is the
rule as written, ``clip(floor((acc * scale + 2**(shift-1)) / 2**shift), 0, L)``, five tensor operations that each
allocate. Both are timed in turn in one process: on a 128x16x16x16 map (a camera batch's first conv layer), and as
a whole gradient step of RIVC's CnnPolicy on MobileReachCamera (its conversion included), with the peer patched in.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import rivc.requant  # noqa: E402
from benchmarks.common import print_table  # noqa: E402
from rivc.chip import scale_shift_codes  # noqa: E402


def written_out(acc, scale, shift, levels: int, acc_clip=None):
    """The rule as written on tensors: the peer (numpy arrays take the package's path, as before)."""
    if not torch.is_tensor(acc):
        return scale_shift_codes(acc, scale, shift, levels, acc_clip)
    if acc_clip is not None:
        acc = torch.minimum(acc, acc_clip)
    return ((acc * scale + 2.0 ** (shift - 1)) / 2.0**shift).floor().clamp(0, levels)


def timed(call, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return 1e3 * (time.perf_counter() - start) / repeats


def feature_map(rounds: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(0)
    acc = torch.randint(-5000, 5000, (128, 16, 16, 16), generator=generator).double()
    scale = torch.randint(1, 255, (16, 1, 1), generator=generator).double()
    assert torch.equal(scale_shift_codes(acc, scale, 12, 15), written_out(acc, scale, 12, 15))
    times = {"in place": [], "written out": []}
    for _ in range(rounds):
        times["in place"].append(timed(lambda: scale_shift_codes(acc, scale, 12, 15), 50))
        times["written out"].append(timed(lambda: written_out(acc, scale, 12, 15), 50))
    return statistics.median(times["in place"]), statistics.median(times["written out"])


def camera_step(rounds: int) -> tuple[float, float]:
    import rivc.envs  # noqa: F401
    from rivc.agents import RIVC

    model = RIVC("CnnPolicy", "rivc/MobileReachCamera-v0", seed=0, beta=3.0, learning_starts=500)
    model.learn(700)
    times = {"in place": [], "written out": []}
    for _ in range(rounds):
        for name, rule in (("in place", scale_shift_codes), ("written out", written_out)):
            rivc.requant.scale_shift_codes = rule
            times[name].append(timed(lambda: model.train(gradient_steps=10, batch_size=64), 1) / 10)
    rivc.requant.scale_shift_codes = scale_shift_codes
    return statistics.median(times["in place"]), statistics.median(times["written out"])


def main() -> int:
    torch.set_num_threads(1)
    rows = []
    for name, (ours, peer) in (("128x16x16x16 map (ms per call)", feature_map(5)),
                               ("camera gradient step (ms, conversion included)", camera_step(6))):
        rows.append([name, peer, ours, peer / ours])
    print_table("Requantization of a float64 tensor, median of rounds timed in turn",
                ["workload", "written out", "in place", "speed-up"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
