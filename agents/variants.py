"""The paper's ablation variants and RIVC's exploration rules: plain tables, no torch (the CLI, the
benchmarks and the hyperparameter helpers read them without loading the agent)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One row of the paper's ablation (docs/DESIGN.md, "Variants")."""

    qat: bool  # quantization-aware training (else a float network, post-training quantized)
    gap_increasing: bool  # the gap-increasing target (else the DQN target)
    snn_acts: bool  # the converted spiking policy collects the data (else the float network)


VARIANTS: dict[str, Variant] = {
    "rivc": Variant(qat=True, gap_increasing=True, snn_acts=True),
    "qat": Variant(qat=True, gap_increasing=False, snn_acts=True),
    "gap": Variant(qat=False, gap_increasing=True, snn_acts=True),
    "naive": Variant(qat=False, gap_increasing=False, snn_acts=True),
    "fpnn": Variant(qat=False, gap_increasing=False, snn_acts=False),
    # a control beside the paper's rows: the float loop with RIVC's target (is the target or the chip at fault?)
    "fpnn-gap": Variant(qat=False, gap_increasing=True, snn_acts=False),
}
EXPLORATIONS = ("epsilon", "boltzmann")
