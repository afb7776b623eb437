"""The default backend: integrate-and-fire emulation of a chip target with snntorch semantics.

The target of the integer network picks the schedule. Rate-coded target: every layer runs in the
same ``T`` steps (synchronous; later layers approximate their codes). Exact targets (Akida 2.0,
AKD1000): each hidden layer integrates its input for a window of ``T = L`` steps, then fires its
activation code as a burst, so every spike count equals the chip's activation.

``exact_reference=False`` (default) runs the vectorised numpy paths of :mod:`rivc.neurochip.if_sim`;
``exact_reference=True`` steps ``snntorch.Leaky`` neurons (beta=1, reset by subtraction) through
time. Both produce the same spikes and Q-values, bit for bit.
"""

from __future__ import annotations

import numpy as np

from rivc.integer_net import IntegerNetwork
from rivc.neurochip.base import Backend, SpikingPolicy, as_integer_network
from rivc.neurochip.if_sim import IFLayer, Workspace, membrane_start, prepare_layers, run_exact, run_fast


def check_timesteps(timesteps: int | None) -> int | None:
    """Validate the number of SNN time steps (``None``: the default, ``2**activation_bits - 1``)."""
    if timesteps is None:
        return None
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive integer (default 2**activation_bits - 1), got {timesteps!r}")
    return int(timesteps)


class IFPolicy(SpikingPolicy):
    """Spiking policy on the fast path (numpy only: what a deployed policy runs)."""

    def __init__(self, network: IntegerNetwork, timesteps: int | None = None, workspace: Workspace | None = None) -> None:
        self.network = network
        self.rate_coded = network.chip.rate_coded
        # exact targets: each hidden layer fires its code in a window of T = L steps (its own L)
        self.windows = [] if self.rate_coded else [layer.requant.levels for layer in network.hidden_layers]
        levels = network.config.activation_levels if self.rate_coded or not self.windows else max(self.windows)
        if not self.rate_coded and timesteps is not None and set(self.windows) != {timesteps}:
            raise ValueError(
                f"target {network.target!r} is exact: each layer's neurons fire their activation code in T = L steps "
                f"(here {', '.join(map(str, self.windows))}); timesteps={timesteps} applies only to the rate-coded target")
        self.timesteps = check_timesteps(timesteps) or levels
        self.layers: list[IFLayer] = prepare_layers(network, self.timesteps) if self.rate_coded else []
        self.workspace = workspace or Workspace()

    @property
    def latency_steps(self) -> int:
        """Time steps from input to Q-values."""
        return self.timesteps if self.rate_coded else max(sum(self.windows), 1)

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Q-values ``[B, A]`` and each hidden layer's spike counts ``[B, H]``. Rate-coded targets
        give cumulative counts ``[T, B, H]`` (reused by the next call: copy them to keep them)."""
        codes = self.network.input_codes(obs)
        if self.rate_coded:
            membrane, counts = run_fast(self.layers, codes, self.timesteps, self.workspace)
            return self.network.head_values(membrane / self.timesteps * self.network.layers[-1].scale), counts
        membrane, counts = run_exact(self.network, codes)
        return self.network.head_values(membrane * self.network.layers[-1].scale), counts

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        return self.run(obs)[0]  # (the spikes uncounted: the agent acts on this once an env step)

    def q_values_and_spikes(self, obs: np.ndarray) -> tuple[np.ndarray, float]:
        """Q-values and the mean number of hidden-layer spikes per observation."""
        q, counts = self.run(obs)
        final = [c[-1] if self.rate_coded else c for c in counts]
        return q, float(sum(c.sum() for c in final)) / q.shape[0]


class SnnTorchReferencePolicy(IFPolicy):
    """Steps ``snntorch.Leaky`` integrate-and-fire neurons through time (slow; the reference). The
    synapses (dense, or conv over NHWC maps) are the integer layers' own maps."""

    def __init__(self, network: IntegerNetwork, timesteps: int | None = None, workspace: Workspace | None = None) -> None:
        super().__init__(network, timesteps, workspace)
        import snntorch
        import torch

        self._torch, self._snntorch = torch, snntorch
        integrator = dict(beta=1.0, threshold=torch.tensor(float("inf"), dtype=torch.float64), reset_mechanism="none")
        if self.rate_coded:
            self.neurons = [snntorch.Leaky(beta=1.0, threshold=torch.tensor(layer.theta, dtype=torch.float64),
                                           reset_mechanism="subtract") if layer.theta > 0 else snntorch.Leaky(**integrator)
                            for layer in self.layers]
        self.integrator = snntorch.Leaky(**integrator)  # exact targets: the integrating half of a window

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        return self._run_synchronous(obs) if self.rate_coded else self._run_exact(obs)

    def _current(self, layer: IFLayer, spikes: np.ndarray):
        """A rate-coded layer's input current for one step's spikes (or the constant input codes)."""
        return self._torch.as_tensor(layer.layer.synaptic_input(spikes) * layer.gain + layer.bias)

    def _run_synchronous(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        torch = self._torch
        first_current = self._current(self.layers[0], self.network.input_codes(obs))  # the input does not spike
        batch = first_current.shape[0]
        membranes = [torch.zeros(batch, *layer.out_shape, dtype=torch.float64) + membrane_start(layer.theta)
                     for layer in self.layers]
        counts = [torch.zeros_like(m) for m in membranes[:-1]]
        history: list[list[np.ndarray]] = [[] for _ in counts]
        with torch.no_grad():
            for _ in range(self.timesteps):
                spikes = None
                for i, neuron in enumerate(self.neurons):
                    current = first_current if i == 0 else self._current(self.layers[i], spikes.numpy())
                    out, membranes[i] = neuron(current, membranes[i])
                    if i < len(counts):
                        spikes = out.to(torch.float64)
                        counts[i] += spikes
                        history[i].append(counts[i].numpy().copy())
        q = self.network.head_values(membranes[-1].numpy() / self.timesteps * self.network.layers[-1].scale)
        return q, [np.stack(h) for h in history]

    def _run_exact(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Window by window: a layer integrates the previous layer's spike train (the input codes for
        the first layer), a pooling layer charges each neuron with the largest membrane of its window,
        then its neurons, charged to the target's membrane, fire for ``T`` steps."""
        torch = self._torch
        spike_train = self.network.input_codes(obs)[None]  # the input: one step of codes
        history = []
        with torch.no_grad():
            for i, layer in enumerate(self.network.layers):
                acc = None
                for spikes in spike_train:  # integrate: the output never fires in this half
                    current = torch.as_tensor(layer.synaptic_input(spikes))
                    if acc is None:
                        acc = torch.zeros_like(current) + torch.as_tensor(layer.bias * 1.0)
                    _, acc = self.integrator(current, acc)
                acc = layer.pool(acc.numpy())
                if layer.is_output:
                    return self.network.head_values(acc * layer.scale), history
                membrane, theta = layer.requant.firing_membrane(acc)
                neuron = self._snntorch.Leaky(beta=1.0, threshold=torch.as_tensor(theta, dtype=torch.float64),
                                              reset_mechanism="subtract")
                charge, steps = torch.as_tensor(membrane), []
                membrane = torch.zeros_like(charge)
                for step in range(self.windows[i]):  # fire: the charge arrives at once and leaves as spikes
                    spikes, membrane = neuron(charge if step == 0 else torch.zeros_like(charge), membrane)
                    steps.append(spikes.to(torch.float64))
                spike_train = torch.stack(steps).numpy()
                history.append(spike_train.sum(0))
        raise ValueError("the network has no output layer")


class SnnTorchBackend(Backend):
    """Integrate-and-fire emulation of the network's chip target.

    timesteps: rate-coded target only: steps per action, default ``2**activation_bits - 1``.
    exact_reference: step ``snntorch.Leaky`` neurons in time instead of the vectorised fast path.
    """

    name = "snntorch"

    def __init__(self, timesteps: int | None = None, exact_reference: bool = False) -> None:
        self.timesteps = check_timesteps(timesteps)
        self.exact_reference = exact_reference
        self.workspace = Workspace()  # shared by the policies this backend converts (one per update)

    def convert(self, network) -> IFPolicy:
        network = as_integer_network(network)
        policy_cls = SnnTorchReferencePolicy if self.exact_reference else IFPolicy
        return policy_cls(network, self.timesteps, self.workspace)
