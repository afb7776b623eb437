"""How NIR simulators run an exported policy: `python benchmarks/nir_readers.py [RUN_DIR]`.

Exports a rate-target run (trains CartPole-v1 for 6,000 steps, seed 0, when no RUN_DIR is given) to NIR and
runs it on the states its policy visits with: Sinabs as NIR's IF (one spike a step, no floor), Sinabs with its
import defaults, and Norse (`pip install norse`; its IF resets to zero). Prints spike-count and greedy-action
agreement with our emulation.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy as np

from rivc.agents import RIVC
from rivc.agents.cli import _visited_states, main as rivc
from rivc.neurochip.nir_export import nir_inputs, sinabs_agreement, write_nir
from rivc.neurochip.snntorch_backend import IFPolicy


def norse_actions_equal(path: Path, network, observations: np.ndarray, timesteps: int) -> float:
    """Norse's run of the file, stepped through time: the share of states with our greedy action."""
    import nir
    import norse.torch
    import torch

    model = norse.torch.from_nir(nir.read(path))
    inputs = torch.as_tensor(nir_inputs(network, observations, timesteps), dtype=torch.float32)
    state, total = None, 0.0
    with torch.no_grad():
        for step in range(timesteps):
            out, state = model(inputs[:, step], state)
            total = total + out.double().numpy()
    q_ours = IFPolicy(network, timesteps).q_values(observations)
    q_norse = network.head_values(total / timesteps * network.layers[-1].scale)
    return float(np.mean(q_norse.argmax(axis=1) == q_ours.argmax(axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", nargs="?", help="a `rivc train --target rate` folder")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="rivc_nir_"))
    if not (run_dir / "model.zip").is_file():
        assert rivc(["train", "--target", "rate", "--timesteps", "6000", "--seed", "0", "--out", str(run_dir)]) == 0
    model = RIVC.load(run_dir / "model.zip")
    network, steps = model.spiking_policy.network, model.spiking_policy.timesteps
    export = write_nir(network, run_dir / "policy.nir", steps)
    states = _visited_states(model, args.episodes, 0)
    print(f"{model.env_id}, {export.summary()}; {len(states)} visited states\n")
    print("| simulator | spike counts equal | greedy actions equal | max abs dQ |\n|---|---:|---:|---:|")
    for mode, name in (("nir", "Sinabs 3.1, as NIR's IF (rivc.neurochip.nir_export.load_sinabs)"),
                       ("plain", "Sinabs 3.1, its import defaults (several spikes a step, floor -threshold)")):
        agreement = sinabs_agreement(run_dir / "policy.nir", network, states, steps, import_mode=mode)
        print(f"| {name} | {100 * agreement.counts_equal:.2f} % | {100 * agreement.actions_equal:.2f} % | "
              f"{agreement.max_abs_dq:.3g} |")
    if importlib.util.find_spec("norse") is None:
        print("| Norse | not installed | | |")
    else:
        equal = norse_actions_equal(run_dir / "policy.nir", network, states, steps)
        print(f"| Norse 1.1, IF reset to zero | - | {100 * equal:.2f} % | - |")


if __name__ == "__main__":
    main()
