"""What a spiking policy costs per action: synaptic operations, spikes, activation sparsity, parameter
memory at the target's bit widths, and an energy ESTIMATE against the float network on a CPU (numpy only).

Counting rules (NeuroBench's SynapticOperations and ActivationSparsity count the same; tests/test_cost.py
checks it against NeuroBench itself):

* an operation is one (non-zero input, non-zero weight) pair; biases are not counted;
* the observation enters through multiplies (multi-bit codes): the input layer's *MACs*; a rate-coded
  (time-stepped) chip presents it at every one of its ``T`` steps, an Akida layer once;
* a spike costs one *accumulate* per non-zero outgoing weight (exact targets fire a unit's activation
  code as that many spikes; the rate-coded target's spikes over ``T`` steps);
* the float network on a CPU computes every multiply-accumulate (``dense_macs``).

Energy: Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm: int8 multiply 0.2 pJ, int32 add 0.1 pJ,
fp32 multiply 3.7 pJ, fp32 add 0.9 pJ. Arithmetic only: no memory access, no control, no I/O. It is an
ESTIMATE for comparing the two networks' arithmetic, not a measurement of any chip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rivc.chip import ChipTarget
from rivc.integer_net import IntegerNetwork
from rivc.neurochip.snntorch_backend import IFPolicy
from rivc.requant import UNKNOWN_WIDTH_BITS, Requantization

# Horowitz, ISSCC 2014, 45 nm (pJ per operation)
PJ_INT8_MULTIPLY, PJ_INT32_ADD, PJ_FP32_MULTIPLY, PJ_FP32_ADD = 0.2, 0.1, 3.7, 0.9
FLOAT_BITS = 32


@dataclass(frozen=True)
class PolicyCost:
    """Cost of one action (mean over the observations it was measured on)."""

    target: str
    input_macs: float  # multiplies of the observation's codes by the input layer's weights
    accumulates: float  # spikes x non-zero outgoing weights
    spikes: float  # hidden-layer spikes
    activation_sparsity: float  # fraction of hidden activations (spike counts) that are 0
    dense_macs: int  # the float network's multiply-accumulates
    memory_bits: int  # parameters at the target's widths
    float_memory_bits: int  # the same parameters as float32
    energy_pj: float  # ESTIMATE, arithmetic only (module docstring)
    float_energy_pj: float  # ESTIMATE: dense_macs float32 multiply-adds

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    def describe(self) -> str:
        return (f"target {self.target}: per action {self.input_macs:.0f} input MACs + {self.accumulates:.0f} "
                f"accumulates ({self.spikes:.1f} spikes, activation sparsity {100 * self.activation_sparsity:.1f} %) "
                f"vs {self.dense_macs} float MACs; parameters {self.memory_bits / 8192:.2f} KiB vs "
                f"{self.float_memory_bits / 8192:.2f} KiB as float32; energy ESTIMATE (Horowitz 45 nm, arithmetic "
                f"only) {self.energy_pj:.0f} pJ vs {self.float_energy_pj:.0f} pJ "
                f"({self.float_energy_pj / max(self.energy_pj, 1e-12):.1f}x less)")


def spike_counts(network: IntegerNetwork, observations: np.ndarray, timesteps: int | None = None) -> list[np.ndarray]:
    """Each hidden layer's spike counts ``[B, units]`` per observation, as the snntorch emulation fires them."""
    _, counts = IFPolicy(network, timesteps).run(np.asarray(observations))
    return [np.array(c[-1] if network.chip.rate_coded else c) for c in counts]


def parameter_bits(network: IntegerNetwork) -> int:
    """Parameter memory at the target's widths: weights at their bit width; biases at the target's bias
    mantissa bits (32 where it holds any integer); per-unit requantization scales at the target's scale bits
    (Akida 2.0 and rate-coded: 8); AKD1000's threshold and step at 32 bits each. Akida's bias shifts and
    accumulator clips are not counted: an estimate, below akida's own program-memory figure's detail."""
    return sum(layer_parameter_bits(network.chip, layer.weights.size, layer.units, precision.weight_bits,
                                    layer.requant) for layer, precision in zip(network.layers, network.precision))


def layer_parameter_bits(chip: ChipTarget, weights: int, units: int, weight_bits: int,
                         requant: Requantization | None) -> int:
    """One layer's share of :func:`parameter_bits`."""
    bits = int(weights) * weight_bits + units * (chip.bias_bits or UNKNOWN_WIDTH_BITS)
    return bits + (0 if requant is None else requant.parameter_bits(units, chip))


def policy_cost(network: IntegerNetwork, observations: np.ndarray, timesteps: int | None = None) -> PolicyCost:
    """The cost of ``network``'s spiking policy per action, measured on ``observations`` (an MLP policy)."""
    if network.is_image:
        raise ValueError("policy_cost counts an MLP's synaptic operations; conv policies report MACs only "
                         "(IntegerNetwork.macs)")
    codes = network.input_codes(observations)
    counts = spike_counts(network, observations, timesteps)
    fan_out = [(layer.weights != 0).sum(axis=0) for layer in network.layers]  # non-zero weights per input
    presentations = (timesteps or network.config.activation_levels) if network.chip.rate_coded else 1
    input_macs = presentations * float(((codes != 0) * fan_out[0]).sum(axis=1).mean())
    accumulates = float(sum((c * out).sum(axis=1).mean() for c, out in zip(counts, fan_out[1:])))
    spikes = float(sum(c.sum(axis=1).mean() for c in counts))
    sparsity = float(np.mean(np.concatenate([(c == 0).ravel() for c in counts]))) if counts else 0.0
    dense = int(sum(layer.weights.size for layer in network.layers))
    float_bits = FLOAT_BITS * int(sum(layer.weights.size + layer.units for layer in network.layers))
    return PolicyCost(
        target=network.target, input_macs=input_macs, accumulates=accumulates, spikes=spikes,
        activation_sparsity=sparsity, dense_macs=dense, memory_bits=parameter_bits(network),
        float_memory_bits=float_bits,
        energy_pj=input_macs * (PJ_INT8_MULTIPLY + PJ_INT32_ADD) + accumulates * PJ_INT32_ADD,
        float_energy_pj=dense * (PJ_FP32_MULTIPLY + PJ_FP32_ADD))
