"""Integrate-and-fire simulation of an integer network, vectorised over time (numpy only).

Semantics (docs/DESIGN.md, "SNN semantics"; NIR 1.0.4's ``IF``). Hidden layer with shift ``sh``: threshold
``theta = L * 2**sh`` (even: ``sh >= 1``), membrane starts at ``theta / 2 + 1/2`` (half the threshold
plus half an integer unit, so that counts round half up), spikes when strictly above ``theta``,
at most one spike per step, reset by subtraction. Currents are integers, so a membrane never equals
a multiple of ``theta``: a simulator that fires at ``v >= theta`` (Sinabs) counts the same spikes.
Per-step input current (integers):

* first layer   ``J = multiplier * (W @ x + b)`` with ``x`` the constant input codes;
* later layers  ``J_t = multiplier * (L * W @ spikes_t + b)``;
* output layer  accumulates ``L * W @ spikes_t + b`` without spiking; ``Q = scale * membrane / T``.

A conv layer's synapses are its integer layer's map (:meth:`rivc.integer_net.IntegerLayer.synaptic_input`:
'same' padding, stride, NHWC): the same equations per output position. With ``T = L`` the first
layer's spike counts equal the integer reference's codes exactly.
Later layers see spike trains, not constant currents, so a neuron may fire early on input that
later inputs would have cancelled: this synchronous schedule is the rate-coded target, which
approximates them. Exact targets (Akida) run :func:`run_exact`: each layer integrates, then fires
its count, exact at every layer at the cost of ``T`` steps per layer.

Fast path: the cumulative input ``S_t = start + sum_{tau<=t} J_tau`` depends only on the
previous layer's cumulative spike counts, so one matrix product covers all time steps; a neuron
then spikes at step ``t`` exactly when ``S_t > (n_{t-1} + 1) * theta`` (``n`` its count so far),
a cheap elementwise recursion over ``T``. This holds for any current, also one above the
threshold (the neuron then fires every step and carries the excess). float64 holds exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rivc.chip import clip_codes
from rivc.integer_net import IntegerLayer, IntegerNetwork

EXACT_FLOAT = 2.0**52  # float64 holds every integer below this exactly
EXACT_FLOAT32 = 2.0**24  # and float32 every integer below this


def membrane_start(theta: float) -> float:
    """Initial membrane of a hidden neuron: ``theta / 2 + 1/2``. With integer currents and an even
    ``theta`` its spike count rounds half up, as the integer reference does, and no membrane equals a
    multiple of ``theta`` (so ``>`` and ``>=`` thresholds agree); 0 for the non-spiking output layer."""
    return theta / 2 + 0.5 if theta > 0 else 0.0


@dataclass
class IFLayer:
    """Precomputed constants of one layer of the spiking network.

    The per-step current of output ``j`` is ``gain_j * (W @ input)_j + bias_j``: ``gain`` folds the
    requantization multiplier and, for spike inputs, the spike's worth ``L`` into one factor.
    """

    layer: IntegerLayer  # the integer layer (its synaptic map: dense, or conv over NHWC maps)
    weights: np.ndarray  # [in, out] float64 weight codes (dense layers)
    weights32: np.ndarray | None  # float32 copy when every partial sum of spike counts stays exact
    gain: np.ndarray  # [out] float64
    bias: np.ndarray  # [out] float64, per-step bias current (already multiplied by the multiplier)
    theta: float  # threshold; 0 for the (non-spiking) output layer
    out_shape: tuple[int, ...]  # per observation: (units,) or (H, W, F)


def prepare_layers(network: IntegerNetwork, timesteps: int) -> list[IFLayer]:
    """Fold multipliers and the spike worth ``L`` into per-neuron gains; check exactness bounds."""
    levels = network.config.activation_levels  # the rate-coded target: one activation width (ChipTarget.check)
    prepared = []
    in_max = float(network.input.max_code)  # largest input code magnitude
    for i, layer in enumerate(network.layers):
        spike_input = i > 0
        fan_in = layer.abs_weight_sum.astype(np.float64)
        m, theta = (np.ones(layer.units), 0.0) if layer.is_output else layer.requant.rate_coding()
        gain = m * (levels if spike_input else 1)
        partial = fan_in.max(initial=0.0) * (timesteps if spike_input else in_max)
        bound = (fan_in * (1 if spike_input else in_max) * gain + np.abs(layer.bias * m)).max(initial=0.0)
        if theta * (timesteps + 2) + timesteps * bound >= EXACT_FLOAT:
            raise ValueError(f"layer {i}: membrane values could exceed 2**52 at T={timesteps}; use fewer time steps")
        weights = np.ascontiguousarray(layer.weights.reshape(layer.units, -1).T.astype(np.float64))
        dense_spikes = spike_input and layer.conv is None
        prepared.append(IFLayer(
            layer=layer, weights=weights,
            weights32=weights.astype(np.float32) if dense_spikes and partial < EXACT_FLOAT32 else None,
            gain=gain, bias=layer.bias * m, theta=theta, out_shape=layer.out_shape()))
    return prepared


class Workspace:
    """Reusable float64 buffers: fresh multi-megabyte arrays on every call cost page faults."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, np.ndarray] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
        buffer = self._buffers.get((key, dtype))
        if buffer is None or buffer.shape != shape:
            buffer = self._buffers[(key, dtype)] = np.empty(shape, dtype=dtype)
        return buffer


def spike_counts(cumulative_input: np.ndarray, theta: float, out: np.ndarray, work: Workspace) -> np.ndarray:
    """Cumulative spike counts ``[T, B, H]`` (into ``out``) of IF neurons with cumulative input ``S_t``.

    Spike at ``t`` iff ``S_t > (n_{t-1} + 1) * theta`` iff ``fl(S_t / theta) - 1 > n_{t-1}``: exact,
    since correctly rounded division and subtraction preserve that order for integers below 2**52.
    ``cumulative_input`` is overwritten.
    """
    excess = cumulative_input
    excess /= theta
    excess -= 1.0
    spiked = work.get("spiked", excess.shape[1:], bool)
    np.greater(excess[0], 0.0, out=spiked)
    np.copyto(out[0], spiked)
    for t in range(1, excess.shape[0]):
        np.greater(excess[t], out[t - 1], out=spiked)
        np.add(out[t - 1], spiked, out=out[t])
    return out


def _synaptic_input(counts: np.ndarray, layer: IFLayer, out: np.ndarray, work: Workspace) -> np.ndarray:
    """``gain * (W @ counts)`` into ``out`` for counts ``[T, B, ...]``; a dense product runs in float32
    where that is exact (faster)."""
    steps, batch = counts.shape[:2]
    if layer.layer.conv is not None:
        product = layer.layer.synaptic_input(counts.reshape(steps * batch, *counts.shape[2:]))
        np.multiply(product.reshape(out.shape), layer.gain, out=out)
        return out
    counts = counts.reshape(steps, batch, -1)
    if layer.weights32 is not None:
        counts32 = work.get("counts32", counts.shape, np.float32)
        np.copyto(counts32, counts)
        product = work.get("product32", out.shape, np.float32)
        np.matmul(counts32, layer.weights32, out=product)
        np.multiply(product, layer.gain, out=out)
    else:
        np.matmul(counts, layer.weights, out=out)
        out *= layer.gain
    return out


def _first_layer_counts(first: IFLayer, input_codes: np.ndarray, timesteps: int, work: Workspace) -> np.ndarray:
    """Cumulative counts ``[T, B, H]`` of the first hidden layer, driven by a constant current ``J``.

    Closed form: ``n_t = min(t, #{k >= 1: start + t J > k theta}) = clip(ceil(S_t / theta) - 1, 0, t)``.
    """
    current = first.layer.synaptic_input(input_codes) * first.gain + first.bias
    t = np.arange(1, timesteps + 1, dtype=np.float64).reshape(-1, *([1] * current.ndim))
    counts = work.get("counts0", (timesteps, *current.shape))
    np.multiply(t, current, out=counts)
    counts += membrane_start(first.theta)
    counts /= first.theta
    np.ceil(counts, out=counts)
    counts -= 1.0
    np.maximum(counts, 0.0, out=counts)
    return np.minimum(counts, t, out=counts)


def _output_membrane(layer: IFLayer, counts: np.ndarray, timesteps: int) -> np.ndarray:
    return (counts.reshape(counts.shape[0], -1) @ layer.weights) * layer.gain + timesteps * layer.bias


def run_fast(
    layers: list[IFLayer], input_codes: np.ndarray, timesteps: int, work: Workspace | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Synchronous schedule: output membrane ``[B, A]`` and each hidden layer's counts ``[T, B, H]``.

    The count arrays live in ``work`` and are overwritten by its next run: copy them to keep them.
    """
    work = work or Workspace()
    if layers[0].theta == 0.0:  # no hidden layer: the output integrates a constant current
        return _output_membrane(layers[0], input_codes, timesteps), []
    counts = _first_layer_counts(layers[0], input_codes, timesteps, work)
    history = [counts]
    for i, layer in enumerate(layers[1:], start=1):
        if layer.theta == 0.0:
            return _output_membrane(layer, counts[-1], timesteps), history
        shape = (timesteps, input_codes.shape[0], *layer.out_shape)
        cumulative = _synaptic_input(counts, layer, work.get(f"cumulative{i}", shape), work)
        t = np.arange(1, timesteps + 1, dtype=np.float64).reshape(-1, *([1] * (len(shape) - 1)))
        cumulative += t * layer.bias + membrane_start(layer.theta)
        counts = spike_counts(cumulative, layer.theta, work.get(f"counts{i}", shape), work)
        history.append(counts)
    raise ValueError("the network has no output layer")


def run_exact(network: IntegerNetwork, input_codes: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Exact targets (Akida): each hidden layer integrates its input spikes for a window of ``T = L``
    steps, then fires its count in the next window (``min(T, n)`` spikes, at most one a step); the
    output layer integrates without spiking. A pooling layer's neuron is charged with the largest
    membrane of its window (the chip pools the accumulators). Returns the output membrane ``[B, A]``
    (the accumulator) and each hidden layer's spike counts ``[B, H]`` or ``[B, H, W, F]``: the
    target's activation codes.
    """
    counts, history = input_codes, []
    for layer in network.hidden_layers:
        membrane, theta = layer.requant.firing_membrane(layer.accumulate(counts))
        counts = clip_codes(np.ceil(membrane / theta) - 1.0, layer.requant.levels)  # #{k >= 1: membrane > k theta}
        history.append(counts)
    return network.layers[-1].accumulate(counts), history
