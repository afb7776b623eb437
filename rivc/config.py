"""Bit-width configuration shared by training, export and every backend (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field

MIN_BITS, MAX_BITS = 1, 8
# widening of a data-calibrated input range, a fraction of the range on each side: states the calibration data
# did not reach (a warm-up's random policy stays near the start) keep their codes inside the range
INPUT_RANGE_MARGIN = 0.5
CLIP_GRADIENTS = ("pact", "lsq")  # how a learned activation clip gets its gradient: rivc.quant.clip_gradient_weights
CLIP_STATISTICS = ("max", "mse")  # what a tracked activation clip follows: rivc.quant.clip_statistic
#: a hidden layer's activation steps: one per layer, or one per unit (folded into the next layer's weights)
ACTIVATION_STEPS = ("layer", "unit")
#: what a Q-network's last layer computes: "q" (a Q-value per action) or "dueling" (a value row and an advantage row per
#: action, Q = V + A - mean A: rivc.integer_net.dueling_q_values)
HEADS = ("q", "dueling")
#: the units a vector network's first-layer weights are trained in: "observation" (the observation's own, as a float
#: DQN trains them) or "normalised" (the input codes' scale, about [-1, 1] over the input range: the only one until
#: 2026-12)
INPUT_UNITS = ("observation", "normalised")
HEAD_OUTPUT = "32"  # how the per-layer form writes the head's output (a 32-bit accumulator, not an activation)


def weight_levels(bits: int) -> int:
    """Largest weight magnitude code of ``bits``-bit signed symmetric weights: ``2**(bits-1) - 1``, 1 for binary."""
    return max(1, 2 ** (bits - 1) - 1)


def _check_bits(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise ValueError(f"QuantConfig.{name}={value!r} is out of range: use an integer from "
                         f"{MIN_BITS} to {MAX_BITS} bits (e.g. {name}=4).")


@dataclass(frozen=True)
class LayerBits:
    """One layer's widths: signed weights, and unsigned activations (``None``: the Q-value head, which
    outputs its accumulator)."""

    weight_bits: int
    activation_bits: int | None

    def __str__(self) -> str:
        return f"{self.weight_bits}/{HEAD_OUTPUT if self.activation_bits is None else self.activation_bits}"


@dataclass(frozen=True)
class QuantConfig:
    """Bit widths of the chip the policy will run on.

    weight_bits: signed, symmetric weights (the chip target says which it runs: ``rivc.chip``).
    activation_bits: unsigned ReLU activations; an IF neuron emits at most one spike per code level.
    input_bits: unsigned observation codes fed to the first layer (Akida inputs are 8-bit).
    layers: per layer ``(weight_bits, activation_bits)``, the head's activation ``None`` (it outputs an
        accumulator); ``None`` (default): ``weight_bits`` / ``activation_bits`` everywhere. Build it from
        the CLI's form with :meth:`parse_layers` (``"8/8,8/4,4/32"``). With ``layers``, ``weight_bits`` and
        ``activation_bits`` hold the widest widths used (what a one-line summary shows).
    """

    weight_bits: int = 4
    activation_bits: int = 4
    input_bits: int = 8
    layers: tuple[LayerBits, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        _check_bits("input_bits", self.input_bits)
        if self.layers is None:
            _check_bits("weight_bits", self.weight_bits)
            _check_bits("activation_bits", self.activation_bits)
            return
        layers = tuple(layer if isinstance(layer, LayerBits) else LayerBits(*layer) for layer in self.layers)
        if len(layers) < 1:
            raise ValueError("QuantConfig.layers needs one entry per layer, the Q-value head last")
        for i, layer in enumerate(layers):
            _check_bits(f"layers[{i}].weight_bits", layer.weight_bits)
            last = i == len(layers) - 1
            if last and layer.activation_bits is not None:
                raise ValueError(f"QuantConfig.layers[{i}] is the Q-value head: it outputs its accumulator; "
                                 f"write it as {layer.weight_bits}/{HEAD_OUTPUT} (or ({layer.weight_bits}, None))")
            if not last:
                if layer.activation_bits is None:
                    raise ValueError(f"QuantConfig.layers[{i}] is a hidden layer: give it activation bits "
                                     f"(e.g. {layer.weight_bits}/4); only the head outputs an accumulator")
                _check_bits(f"layers[{i}].activation_bits", layer.activation_bits)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "weight_bits", max(layer.weight_bits for layer in layers))
        hidden = [layer.activation_bits for layer in layers[:-1]]
        object.__setattr__(self, "activation_bits", max(hidden) if hidden else self.activation_bits)

    @classmethod
    def parse_layers(cls, text: str, input_bits: int = 8) -> "QuantConfig":
        """``"8/8,8/4,4/32"``: each layer's ``weight/activation`` bits, the head's output written ``32``
        (or left out: ``"8/8,8/4,4"``)."""
        layers = []
        entries = [entry.strip() for entry in str(text).split(",")]
        for i, entry in enumerate(entries):
            parts = entry.split("/")
            last = i == len(entries) - 1
            try:
                if len(parts) not in ((1, 2) if last else (2,)):
                    raise ValueError
                weight = int(parts[0])
                activation = None if last else int(parts[1])
                if last and len(parts) == 2 and parts[1].strip() != HEAD_OUTPUT:
                    raise ValueError
            except ValueError:
                raise ValueError(f"layer bits {text!r}: entry {i + 1} ({entry!r}) is not WEIGHT/ACTIVATION; write "
                                 f"one entry per layer, the Q-value head last as WEIGHT/{HEAD_OUTPUT}, e.g. "
                                 f"8/8,8/4,4/{HEAD_OUTPUT}") from None
            layers.append(LayerBits(weight, activation))
        return cls(input_bits=input_bits, layers=tuple(layers))

    @property
    def uniform(self) -> bool:
        """The same widths in every layer (no per-layer form)."""
        return self.layers is None

    def layer_bits(self, n_layers: int) -> tuple[LayerBits, ...]:
        """Every layer's widths for a network of ``n_layers`` layers (the head last)."""
        if self.layers is None:
            return (*[LayerBits(self.weight_bits, self.activation_bits)] * (n_layers - 1),
                    LayerBits(self.weight_bits, None))
        if len(self.layers) != n_layers:
            raise ValueError(f"QuantConfig.layers gives {len(self.layers)} layer(s) ({self.describe()}), the network "
                             f"has {n_layers} (hidden layers and the head): give one entry per layer")
        return self.layers

    def describe(self) -> str:
        """``"4-bit weights / 4-bit activations"``, or the per-layer form ``"8/8,8/4,4/32"``."""
        if self.layers is None:
            return f"{self.weight_bits}-bit weights / {self.activation_bits}-bit activations"
        return ",".join(map(str, self.layers))

    @property
    def activation_levels(self) -> int:
        """Largest activation code ``2**activation_bits - 1`` of a uniform config (a chip target may hold fewer:
        ``rivc.chip.ChipTarget.levels``)."""
        return 2**self.activation_bits - 1

    @property
    def input_levels(self) -> int:
        return 2**self.input_bits - 1

    @property
    def weight_levels(self) -> int:
        """Largest weight magnitude code: 2**(bits-1) - 1, or 1 for binary (+-1) weights."""
        return weight_levels(self.weight_bits)

    def to_dict(self) -> dict:
        data = {"weight_bits": self.weight_bits, "activation_bits": self.activation_bits, "input_bits": self.input_bits}
        if self.layers is not None:  # left out when unset: older versions read the file as before
            data["layers"] = [[layer.weight_bits, layer.activation_bits] for layer in self.layers]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "QuantConfig":
        """The config of a dict as :meth:`to_dict` writes it; a key left out takes its default."""
        unknown = sorted(set(data) - {"weight_bits", "activation_bits", "input_bits", "layers"})
        if unknown:
            raise ValueError(f"QuantConfig has no field {', '.join(map(str, unknown))}; fields: weight_bits, "
                             "activation_bits, input_bits, layers")
        if data.get("layers") is not None:
            layers = tuple(LayerBits(int(w), None if a is None else int(a)) for w, a in data["layers"])
            return cls(input_bits=int(data.get("input_bits", 8)), layers=layers)
        return cls(**{k: int(data[k]) for k in ("weight_bits", "activation_bits", "input_bits") if k in data})
