"""Conversion-error metrics: how far a spiking policy is from the network it was converted from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConversionError:
    """How far a spiking policy is from the network it was converted from (one metric type for the
    agent's logs, the CLI and the benchmarks)."""

    action_agreement: float  # fraction of observations with the same greedy action
    mean_abs_dq: float  # mean |Q_ref - Q_snn| over observations and actions
    spikes_per_action: float | None = None  # mean hidden-layer spikes per observation

    def as_log(self) -> dict[str, float]:
        """SB3 logger keys."""
        log = {"conversion/action_agreement": self.action_agreement, "conversion/mean_abs_dq": self.mean_abs_dq}
        if self.spikes_per_action is not None:
            log["snn/spikes_per_action"] = self.spikes_per_action
        return log

    @classmethod
    def mean(cls, errors: list["ConversionError"]) -> "ConversionError":
        """The average of several measurements (e.g. the conversions of one rollout)."""
        spikes = [e.spikes_per_action for e in errors if e.spikes_per_action is not None]
        return cls(float(np.mean([e.action_agreement for e in errors])), float(np.mean([e.mean_abs_dq for e in errors])),
                   float(np.mean(spikes)) if spikes else None)


def conversion_error(q_reference: np.ndarray, q_spiking: np.ndarray, spikes_per_action: float | None = None) -> ConversionError:
    """Greedy-action agreement and mean |dQ| between two Q-value batches ``[B, n_actions]``, compared in
    the coarser of the two dtypes (a float32 network against a float64 SNN: no argmax flips from rounding)."""
    q_reference, q_spiking = np.asarray(q_reference), np.asarray(q_spiking)
    dtype = np.float32 if np.float32 in (q_reference.dtype, q_spiking.dtype) else np.float64
    q_reference, q_spiking = q_reference.astype(dtype), q_spiking.astype(dtype)
    if q_reference.shape != q_spiking.shape or q_reference.ndim != 2 or q_reference.shape[0] == 0:
        raise ValueError(f"Q-value batches must share a non-empty [B, n_actions] shape: {q_reference.shape} vs {q_spiking.shape}")
    agreement = float(np.mean(q_reference.argmax(axis=1) == q_spiking.argmax(axis=1)))
    return ConversionError(action_agreement=agreement, mean_abs_dq=float(np.mean(np.abs(q_reference - q_spiking))),
                           spikes_per_action=spikes_per_action)


def network_conversion_error(qnet, policy, observations) -> ConversionError:
    """Conversion error of ``policy`` (a SpikingPolicy) against the torch network ``qnet`` on ``observations``."""
    import torch

    obs = np.asarray(observations).reshape(-1, *policy.obs_shape)  # the env's dtype, as deployed
    param = next(qnet.parameters())
    with torch.no_grad():
        q_ref = qnet(torch.as_tensor(obs, device=param.device)).cpu().numpy()
    return conversion_error(q_ref, *policy.q_values_and_spikes(obs))


@dataclass(frozen=True)
class UnitShares:
    """Per hidden layer, the share of units that never leave code 0 (dead) and that sit at their largest code
    (saturated) on every observation of a sample, and the share of all (unit, observation) codes that are 0 and
    that are the largest: a layer whose clip lags far below its activations turns binary (``zero_codes +
    top_codes`` near 1), and the straight-through gradient passes none of its units (docs/zoo_notes.md)."""

    dead: tuple[float, ...]
    saturated: tuple[float, ...]
    zero_codes: tuple[float, ...]
    top_codes: tuple[float, ...]

    def as_log(self) -> dict[str, float]:
        log = {}
        for i, (dead, saturated, zero, top) in enumerate(zip(self.dead, self.saturated, self.zero_codes,
                                                              self.top_codes)):
            log[f"quantization/dead_units_layer{i}"] = dead
            log[f"quantization/saturated_units_layer{i}"] = saturated
            log[f"quantization/zero_codes_layer{i}"] = zero
            log[f"quantization/top_codes_layer{i}"] = top
        return log


def unit_shares(network, observations) -> UnitShares:
    """Dead and saturated hidden units of an integer network (``rivc.IntegerNetwork``) on ``observations``
    (a conv layer's unit: one filter at one position)."""
    hidden, _ = network.forward_codes(np.asarray(observations).reshape(-1, *network.obs_shape))
    dead, saturated, zero, top = [], [], [], []
    for i, codes in enumerate(hidden):
        units = codes.reshape(codes.shape[0], -1)
        dead.append(float(np.mean(units.max(axis=0) == 0)))
        saturated.append(float(np.mean(units.min(axis=0) == network.levels(i))))
        zero.append(float(np.mean(units == 0)))
        top.append(float(np.mean(units == network.levels(i))))
    return UnitShares(tuple(dead), tuple(saturated), tuple(zero), tuple(top))
