"""NIR export of a rate-coded policy, and Sinabs as an independent simulator of the file.

NIR (Neuromorphic Intermediate Representation, PyPI ``nir``) is how a spiking network reaches
SynSense Speck/Xylo, SpiNNaker2, BrainScaleS-2 and Loihi 2 toolchains. The rate-coded target
(``target="rate"``) is NIR 1.0.4's integrate-and-fire neuron run in discrete time:

=====================  ======================================================================
node                   what it holds
=====================  ======================================================================
``input``              ``F + 1`` features a step: the observation's integer codes (every step),
                       then the onset, 1 at the first step only
``fc{i}`` (``Affine``)  hidden layer ``i``'s synapses (``gain * W``, the per-step bias) and, from
                       the onset, its start membrane
``if{i}`` (``IF``)      ``v += I``; a spike when ``v > v_threshold``, then ``v -= v_threshold``;
                       its last neuron fires at the first step only and relays the onset
``fc_out`` -> output   the Q-value currents: ``Q = q_scale * sum_t output_t / T`` (the host sums)
=====================  ======================================================================

Every weight, bias, threshold and start is an integer or a half-integer, so a float32 simulator
runs the file exactly while its membranes stay below ``2**23`` (:attr:`NIRExport.membrane_bound`
bounds them). Currents are integers and membranes start half-way between integers, so no membrane
ever equals a threshold: ``v > theta`` (NIR) and ``v >= theta`` (Sinabs) fire alike.

What a reader must run as NIR 1.0.4 specifies, and where known readers differ (checked in
``tests/test_nir.py``):

* Sinabs (``sinabs.from_nir``) runs ``IF`` with subtractive reset, but lets a neuron fire several
  spikes in one step and floors its membrane at ``-v_threshold``. Neither is in NIR; a saturated
  unit (current above the threshold) then fires more than once a step. :func:`load_sinabs` imports
  the file with Sinabs and sets one spike a step and no floor: then it equals our emulation spike
  for spike. ``import_mode="plain"`` keeps Sinabs's defaults, to measure what they cost.
* Norse (1.1.0) imports ``IF`` with reset to zero (NIR 1.0.6's reset to ``v_reset``, which ignores the
  file's ``v_reset`` too): it cannot run a subtractive reset, so it is not a reader of this file
  (``benchmarks/nir_readers.py`` measures what that costs).
* NIR 1.0.6 and later define ``IF`` as that reset to ``v_reset``: the export needs ``nir < 1.0.6``.
* The input is integer currents (codes up to ``2**(input_bits - 1)`` a step) and the weights are
  integers with the requantization scale folded in, not binary spikes and chip-width weights: a chip
  toolchain that takes spikes or narrow weights needs its own input encoding and weight mapping.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from rivc.chip import TargetError
from rivc.integer_net import IntegerNetwork
from rivc.neurochip.if_sim import membrane_start, prepare_layers
from rivc.neurochip.snntorch_backend import IFPolicy, check_timesteps

EXACT_HALF_INTEGERS = 2.0**23  # float32 holds every multiple of 1/2 below this magnitude
SEMANTICS = ("IF: v += I; a spike when v > v_threshold, at most one a step; then v -= v_threshold. Input: the "
             "observation's integer codes floor((clip(obs, input_low, input_high) - input_low) * input_inv_step + 1/2) - "
             "input_zero_point at every step and, last, the onset: 1 at the first step only. The last "
             "neuron of each IF layer relays the onset. Q = q_scale * sum over the T steps of the output / T")
NIR_INSTALL = "pip install 'rivc[nir]' (nir, and Sinabs to check the file)"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f"the NIR export needs the optional package {module!r}: {NIR_INSTALL}") from error


def _require_nir():
    """``nir`` of a version whose ``IF`` resets by subtraction (1.0.4, 1.0.5; 1.0.6 on reset to ``v_reset``)."""
    nir = _require("nir")
    version = tuple(int(part) for part in nir.__version__.split(".")[:3] if part.isdigit())
    if version >= (1, 0, 6):
        raise ImportError(f"nir {nir.__version__} defines IF as a reset to v_reset; the rate target's neuron resets by "
                          "subtraction, NIR 1.0.4's IF: pip install 'nir>=1.0.4,<1.0.6' (Sinabs 3.1 pins 1.0.4)")
    return nir


@dataclass(frozen=True)
class NIRExport:
    """A policy as a NIR graph, with what a reader needs beside it."""

    graph: Any  # nir.NIRGraph
    timesteps: int
    q_scale: np.ndarray  # [A]: Q = q_scale * (sum over steps of the output node's input) / T
    membrane_bound: float  # no hidden membrane or per-step current exceeds this magnitude

    @property
    def float32_exact(self) -> bool:
        """Whether a float32 simulator provably computes every membrane exactly."""
        return self.membrane_bound < EXACT_HALF_INTEGERS

    def summary(self) -> str:
        exact = ("exact in float32" if self.float32_exact else
                 f"NOT provably exact in float32: membranes may reach {self.membrane_bound:.3g} > 2**23")
        return f"NIR graph, {len(self.graph.nodes)} nodes, T = {self.timesteps} steps; {exact}"


ONSET_THRESHOLD, ONSET_WEIGHT = 1.0, 1.5  # the onset neuron fires at the first step only (1.5 > 1, then 0.5 < 1)


def to_nir(network: IntegerNetwork, timesteps: int | None = None) -> NIRExport:
    """The rate-coded ``network`` as a NIR graph that runs ``timesteps`` steps (default ``2**bits - 1``)."""
    nir = _require_nir()
    if not network.chip.rate_coded:
        raise TargetError(f"target {network.target!r} is exact layer by layer (one time window per layer), which NIR's "
                          "synchronous IF cannot express; train with target='rate' to export NIR")
    if any(layer.conv is not None for layer in network.layers):
        raise TargetError("the NIR export takes dense (MLP) policies; this network has conv layers")
    steps = check_timesteps(timesteps) or network.config.activation_levels
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([network.obs_dim + 1])})}
    edges, previous, bound = [], "input", 0.0
    for i, layer in enumerate(prepare_layers(network, steps)):
        synapses = layer.weights.T * layer.gain[:, None]  # [out, in], integers: the multiplier folded in
        units = layer.layer.units
        current = np.abs(synapses).sum(axis=1) * (float(network.input.max_code) if i == 0 else 1.0) + np.abs(layer.bias)
        bound = max(bound, float(current.max(initial=0.0)))  # the Affine's partial sums, every layer
        if layer.theta == 0.0:  # the output layer: the host integrates its currents
            weight = np.hstack([synapses, np.zeros((units, 1))])  # the onset neuron does not reach Q
            nodes["fc_out"] = nir.Affine(weight=weight, bias=layer.bias.astype(np.float64))
            nodes["output"] = nir.Output(output_type={"output": np.array([units])})
            edges += [(previous, "fc_out"), ("fc_out", "output")]
            break
        bound = max(bound, float(layer.theta + steps * current.max(initial=0.0)))
        weight = np.zeros((units + 1, synapses.shape[1] + 1))
        weight[:units, :-1] = synapses
        weight[:units, -1] = membrane_start(layer.theta)  # the start membrane, charged at the first step
        weight[units, -1] = ONSET_WEIGHT  # the onset neuron relays the onset to the next layer
        threshold = np.append(np.full(units, layer.theta), ONSET_THRESHOLD)
        nodes[f"fc{i}"] = nir.Affine(weight=weight, bias=np.append(layer.bias, 0.0))
        nodes[f"if{i}"] = nir.IF(r=np.ones(units + 1), v_threshold=threshold)
        edges += [(previous, f"fc{i}"), (f"fc{i}", f"if{i}")]
        previous = f"if{i}"
    q_scale = np.asarray(network.layers[-1].scale, dtype=np.float64)
    metadata = {
        "producer": "rivc", "target": network.target, "timesteps": steps, "q_scale": q_scale,
        "input_low": network.input.low, "input_high": network.input.high, "input_bits": network.input.bits,
        "input_inv_step": network.input.inv_step, "input_zero_point": network.input.zero_point,
        "semantics": SEMANTICS,
    }
    if network.head == "dueling":  # the output's rows are V, then each action's A: Q = V + A - mean A
        metadata["head"] = "dueling"
        metadata["head_semantics"] = "the output's rows are V, then A_1..A_n: Q_a = V + A_a - mean_b A_b"
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    return NIRExport(graph=graph, timesteps=steps, q_scale=q_scale, membrane_bound=bound)


def write_nir(network: IntegerNetwork, path: str | os.PathLike, timesteps: int | None = None) -> NIRExport:
    """Write ``network`` as a NIR file (HDF5), atomically: a failed write leaves any old file intact."""
    nir = _require_nir()
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder: give the NIR file's name, e.g. {os.path.join(path, 'policy.nir')}")
    export = to_nir(network, timesteps)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".nir.tmp")
    os.close(handle)
    try:
        nir.write(temporary, export.graph)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return export


def nir_inputs(network: IntegerNetwork, obs: np.ndarray, timesteps: int) -> np.ndarray:
    """The file's input for observations ``[B, F]``: ``[B, T, F + 1]``, codes at every step, the onset at the first."""
    codes = network.input_codes(np.asarray(obs).reshape(len(obs), -1)).astype(np.float64)
    inputs = np.zeros((codes.shape[0], timesteps, codes.shape[1] + 1))
    inputs[:, :, :-1] = codes[:, None, :]
    inputs[:, 0, -1] = 1.0
    return inputs


class SinabsPolicy:
    """A NIR file run by Sinabs: Q-values and each hidden layer's spike counts for observations."""

    def __init__(self, graph: Any, network: IntegerNetwork, timesteps: int, batch_size: int,
                 import_mode: str = "nir") -> None:
        sinabs, torch = _require("sinabs"), _require("torch")
        import sinabs.activation
        import sinabs.layers

        if import_mode not in ("nir", "plain"):
            raise ValueError(f"import_mode must be 'nir' (one spike a step, no floor) or 'plain', got {import_mode!r}")
        self.network, self.timesteps, self.batch_size, self._torch = network, timesteps, batch_size, torch
        self.model = sinabs.from_nir(graph, batch_size=batch_size)
        self.neurons = {name: module for name, module in self.model.named_modules()
                        if isinstance(module, sinabs.layers.IAFSqueeze)}
        for module in self.neurons.values():
            # the importer keeps NIR's float64 thresholds, which would turn the membranes float64: run float32
            module.spike_threshold = torch.nn.Parameter(module.spike_threshold.detach().float(), requires_grad=False)
            if import_mode == "nir":  # what NIR's IF is; Sinabs's importer does not set it
                module.spike_fn = sinabs.activation.SingleSpike
                module.min_v_mem = None
            elif module.min_v_mem is not None:
                module.min_v_mem = torch.nn.Parameter(module.min_v_mem.detach().float(), requires_grad=False)
        self._spikes: dict[str, Any] = {}
        for name, module in self.neurons.items():
            module.register_forward_hook(lambda _m, _i, out, name=name: self._spikes.__setitem__(name, out.detach()))
        self._q_scale = np.asarray(network.layers[-1].scale, dtype=np.float64)

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Q-values ``[B, A]`` and each hidden layer's total spike count ``[B, H]``."""
        torch, steps = self._torch, self.timesteps
        inputs = nir_inputs(self.network, obs, steps)
        q, counts = [], []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start:start + self.batch_size]
            batch = len(chunk)
            if batch < self.batch_size:  # Sinabs's squeezed layers take a fixed batch size
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - batch, *chunk.shape[1:]))])
            for module in self.neurons.values():
                module.reset_states()
            self._spikes.clear()
            with torch.no_grad():
                out, _ = self.model(torch.as_tensor(chunk.reshape(-1, chunk.shape[-1]), dtype=torch.float32))
            per_step = out.double().numpy().reshape(self.batch_size, steps, -1)[:batch]
            q.append(self.network.head_values(per_step.sum(axis=1) / steps * self._q_scale))
            counts.append([self._spikes[name].double().numpy().reshape(self.batch_size, steps, -1)[:batch, :, :-1].sum(axis=1)
                           for name in sorted(self._spikes, key=_layer_index)])  # the onset neuron left out
        return np.concatenate(q), [np.concatenate(layer) for layer in zip(*counts)]


def _layer_index(name: str) -> int:
    return int("".join(ch for ch in name if ch.isdigit()) or 0)


def load_sinabs(graph_or_path: Any, network: IntegerNetwork, timesteps: int | None = None, batch_size: int = 256,
                import_mode: str = "nir") -> SinabsPolicy:
    """Run a NIR graph (or file) with Sinabs; ``network`` supplies the input quantizer and Q scale."""
    nir = _require_nir()
    graph = nir.read(os.fspath(graph_or_path)) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    steps = timesteps or int(np.asarray(graph.metadata.get("timesteps", network.config.activation_levels)))
    return SinabsPolicy(graph, network, steps, batch_size, import_mode)


@dataclass(frozen=True)
class Agreement:
    """How a simulator's run of the file compares with our emulation on the same observations."""

    states: int
    counts_equal: float  # share of hidden neurons (over states) whose spike count is the same
    actions_equal: float  # share of states with the same greedy action
    max_abs_dq: float

    @property
    def exact(self) -> bool:
        return self.counts_equal == 1.0 and self.max_abs_dq == 0.0


def sinabs_agreement(graph_or_path: Any, network: IntegerNetwork, obs: np.ndarray, timesteps: int | None = None,
                     import_mode: str = "nir") -> Agreement:
    """Run the file with Sinabs and our emulation (:mod:`rivc.neurochip.if_sim`) on ``obs``; compare."""
    sinabs_policy = load_sinabs(graph_or_path, network, timesteps, import_mode=import_mode)
    ours = IFPolicy(network, sinabs_policy.timesteps)
    q, counts = ours.run(obs)
    q_sinabs, counts_sinabs = sinabs_policy.run(obs)
    equal = sum(int((c[-1] == s).sum()) for c, s in zip(counts, counts_sinabs))
    total = sum(s.size for s in counts_sinabs)
    return Agreement(states=len(obs), counts_equal=equal / max(total, 1),
                     actions_equal=float(np.mean(q.argmax(axis=1) == q_sinabs.argmax(axis=1))),
                     max_abs_dq=float(np.abs(q - q_sinabs).max(initial=0.0)))
