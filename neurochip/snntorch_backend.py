"""The default backend: integrate-and-fire emulation with snntorch semantics.

``exact_reference=False`` (default) runs the vectorised numpy path of :mod:`rivc.neurochip.if_sim`;
``exact_reference=True`` steps ``snntorch.Leaky`` neurons (beta=1, reset by subtraction)
through time. Both produce the same spikes and Q-values, bit for bit.
"""

from __future__ import annotations

import numpy as np

from rivc.neurochip.base import Backend, SpikingPolicy, as_integer_network
from rivc.neurochip.if_sim import (
    IFLayer,
    Workspace,
    integration_offset,
    membrane_start,
    prepare_layers,
    run_fast,
    run_layered,
)
from rivc.integer_net import IntegerNetwork


def check_timesteps(timesteps: int | None) -> int | None:
    """Validate the number of SNN time steps (``None``: the default, ``2**activation_bits - 1``)."""
    if timesteps is None:
        return None
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive integer (default 2**activation_bits - 1), got {timesteps!r}")
    return int(timesteps)


SCHEDULES = ("synchronous", "layered")


def check_schedule(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    return schedule


class IFPolicy(SpikingPolicy):
    """Spiking policy on the fast path (numpy only: what a deployed policy runs)."""

    def __init__(
        self,
        network: IntegerNetwork,
        timesteps: int | None = None,
        schedule: str = "synchronous",
        workspace: Workspace | None = None,
    ) -> None:
        self.network = network
        self.timesteps = check_timesteps(timesteps) or network.config.activation_levels
        self.schedule = check_schedule(schedule)
        self.layers: list[IFLayer] = prepare_layers(network, self.timesteps)
        self.workspace = workspace or Workspace()

    @property
    def latency_steps(self) -> int:
        """Time steps from input to Q-values."""
        windows = max(1, len(self.layers) - 1) if self.schedule == "layered" else 1
        return self.timesteps * windows

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Output membrane ``[B, A]`` and cumulative hidden spike counts ``[T, B, H]`` per layer
        (each over its own firing window). The count arrays are reused by the next call."""
        simulate = run_layered if self.schedule == "layered" else run_fast
        return simulate(self.layers, self.network.input.codes(obs), self.timesteps, self.workspace)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        membrane, counts = self.run(obs)
        self.spikes_per_action = float(sum(c[-1].sum() for c in counts)) / membrane.shape[0]
        return membrane / self.timesteps * self.network.layers[-1].scale


class SnnTorchReferencePolicy(IFPolicy):
    """Steps ``snntorch.Leaky`` integrate-and-fire neurons through time (slow; the reference)."""

    def __init__(self, network: IntegerNetwork, timesteps: int | None = None, schedule: str = "synchronous",
                 workspace: Workspace | None = None) -> None:
        super().__init__(network, timesteps, schedule, workspace)
        import snntorch
        import torch

        self._torch = torch
        self.neurons = []
        for layer in self.layers:
            if layer.theta > 0:  # hidden: integrate-and-fire, reset by subtraction
                neuron = snntorch.Leaky(beta=1.0, threshold=torch.tensor(layer.theta, dtype=torch.float64),
                                        reset_mechanism="subtract")
            else:  # output: integrates, never spikes
                neuron = snntorch.Leaky(beta=1.0, threshold=torch.tensor(float("inf"), dtype=torch.float64),
                                        reset_mechanism="none")
            self.neurons.append(neuron)
        self.weights = [torch.as_tensor(layer.weights * layer.gain) for layer in self.layers]
        self.biases = [torch.as_tensor(layer.bias) for layer in self.layers]
        self.offsets = [torch.as_tensor(integration_offset(layer, self.timesteps)) for layer in self.layers]

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        torch = self._torch
        codes = torch.as_tensor(self.network.input.codes(obs))
        batch, n_hidden, layered = codes.shape[0], len(self.layers) - 1, self.schedule == "layered"
        membranes = []
        for i, (w, layer) in enumerate(zip(self.weights, self.layers)):
            start = membrane_start(layer.theta) - (self.offsets[i] if layered and 0 < i < n_hidden else 0.0)
            membranes.append(torch.zeros(batch, w.shape[1], dtype=torch.float64) + start)
        counts = [torch.zeros_like(m) for m in membranes[:-1]]
        history: list[list[np.ndarray]] = [[] for _ in counts]
        first_current = codes @ self.weights[0] + self.biases[0]  # the input does not spike
        # synchronous: every layer steps in one window; layered: window w fires layer w, integrates w + 1
        windows = [range(len(self.layers))] if not layered else [
            range(w, w + 2) for w in range(max(1, n_hidden))]
        with torch.no_grad():
            for active in windows:
                for step in range(self.timesteps):
                    spikes = None
                    for i in active:
                        if i == 0:
                            current = first_current
                        elif spikes is not None:  # driven by the previous layer's spikes
                            current = spikes @ self.weights[i] + self.biases[i]
                        else:  # layered: the layer's own firing window, its offset released once
                            current = (self.offsets[i] if step == 0 else 0.0) + torch.zeros_like(membranes[i])
                        out, membranes[i] = self.neurons[i](current, membranes[i])
                        firing = not layered or i == active.start  # layered: layer w + 1 only integrates
                        if i < n_hidden and firing:
                            spikes = out.to(torch.float64)
                            counts[i] += spikes
                            history[i].append(counts[i].numpy().copy())
        return membranes[-1].numpy(), [np.stack(h) for h in history]


class SnnTorchBackend(Backend):
    """Integrate-and-fire emulation.

    timesteps: steps per window, default ``2**activation_bits - 1`` (exact first layer).
    schedule: ``"synchronous"`` (all layers run in the same ``T`` steps; later layers approximate
        their codes) or ``"layered"`` (each layer integrates, then fires in its own window: exact
        at every layer, latency ``T`` per hidden layer).
    exact_reference: step ``snntorch.Leaky`` neurons in time instead of the vectorised fast path.
    """

    name = "snntorch"

    def __init__(self, timesteps: int | None = None, schedule: str = "synchronous", exact_reference: bool = False) -> None:
        self.timesteps = check_timesteps(timesteps)
        self.schedule = check_schedule(schedule)
        self.exact_reference = exact_reference
        self.workspace = Workspace()  # shared by the policies this backend converts (one per update)

    def convert(self, network) -> IFPolicy:
        network = as_integer_network(network)
        policy_cls = SnnTorchReferencePolicy if self.exact_reference else IFPolicy
        return policy_cls(network, self.timesteps, self.schedule, self.workspace)
