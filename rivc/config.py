"""Bit-width configuration shared by training, export and every backend (no torch import)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MIN_BITS, MAX_BITS = 1, 8


@dataclass(frozen=True)
class QuantConfig:
    """Bit widths of the chip the policy will run on.

    weight_bits: signed, symmetric weights (the chip target says which it runs: ``rivc.chip``).
    activation_bits: unsigned ReLU activations; an IF neuron emits at most 2**bits - 1 spikes.
    input_bits: unsigned observation codes fed to the first layer (Akida inputs are 8-bit).
    """

    weight_bits: int = 4
    activation_bits: int = 4
    input_bits: int = 8

    def __post_init__(self) -> None:
        for name in ("weight_bits", "activation_bits", "input_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
                raise ValueError(
                    f"QuantConfig.{name}={value!r} is out of range: use an integer from "
                    f"{MIN_BITS} to {MAX_BITS} bits (e.g. {name}=4)."
                )

    @property
    def activation_levels(self) -> int:
        """Largest activation code L = 2**activation_bits - 1 (also the default SNN time steps)."""
        return 2**self.activation_bits - 1

    @property
    def input_levels(self) -> int:
        return 2**self.input_bits - 1

    @property
    def weight_levels(self) -> int:
        """Largest weight magnitude code: 2**(bits-1) - 1, or 1 for binary (+-1) weights."""
        return max(1, 2 ** (self.weight_bits - 1) - 1)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "QuantConfig":
        return cls(**{k: int(data[k]) for k in ("weight_bits", "activation_bits", "input_bits")})
