"""Run every benchmark and print its table, kept in docs/SPEED.md: `make bench` (or `python benchmarks/run.py`).

One thread for each library, so that RIVC (numpy and torch) and the peer (torch) are timed alike:
torch.set_num_threads(1), and OpenBLAS (numpy's matrix products) pinned before numpy loads.
"""

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks import bench_envs, bench_snn, bench_train, bench_vision  # noqa: E402
from benchmarks.common import recorded_page  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    with recorded_page("SPEED.md", "Speed: conversion, latency and training throughput against SB3's DQN", "make bench",
                       "Wall-clock times swing with the machine's load: compare the ratios, measured in the same run "
                       "(docs/INSTRUCTIONS.md has deterministic counts)."):
        bench_snn.main()
        bench_envs.main()
        bench_train.main()
        bench_vision.main()
