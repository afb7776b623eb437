"""BrainChip Akida backend: the integer network as an ``akida.Model`` (InputData + Dense1D layers).

Mapping of the integer arithmetic (``rivc.integer_net``) onto Akida's Dense1D, per layer:

* input        ``InputData((1, 1, obs_dim), input_bits)``; the signed input codes are fed as int8;
* weights      the int8 weight codes, transposed to Akida's ``(inputs, units)`` kernel;
* bias         ``bias << bias_shift`` with an int8 ``bias`` per unit: the network must be exported
               with ``bias_bits=8`` (``AkidaBackend.export_options``) so that every bias is such a value;
* requantize   ``output_scales = multiplier`` (uint8: ``multiplier_bits=8``), ``output_shift = -shift``:
               Akida computes ``(acc * scale) >> shift`` rounding half up, as the integer reference does;
* activation   ReLU saturated at ``output_bits = activation_bits`` gives ``clip(., 0, L)``;
* output layer no activation, ``output_bits=32``: the raw accumulator; ``Q = scale * acc`` on the host.

Anything Akida cannot express raises ``AkidaConversionError`` naming the layer and the limit.
The software engine runs when no board is attached; ``device=`` picks a board from ``akida.devices()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rivc.neurochip.base import Backend, SpikingPolicy, as_integer_network
from rivc.integer_net import IntegerNetwork, split_bias

SUPPORTED_WEIGHT_BITS = (1, 2, 4, 8)
SUPPORTED_ACTIVATION_BITS = (1, 2, 4)  # an 8-bit ReLU output saturates at 127 (int8), not 255
ACCUMULATOR_BITS = 28  # Dense1D buffer_bits
POST_OP_BITS = 32  # Dense1D post_op_buffer_bits


class AkidaConversionError(ValueError):
    """The integer network uses something Akida cannot express."""


def import_akida():
    try:
        import akida
    except ImportError as exc:
        raise ImportError(
            "the 'akida' backend needs BrainChip's akida package: pip install 'rivc[akida]' (or pip install akida)"
        ) from exc
    return akida


def check_network(network: IntegerNetwork) -> None:
    """Raise ``AkidaConversionError`` where the network does not fit Akida's Dense1D arithmetic."""
    config = network.config
    if config.weight_bits not in SUPPORTED_WEIGHT_BITS:
        raise AkidaConversionError(f"weight_bits={config.weight_bits}: Akida supports {SUPPORTED_WEIGHT_BITS}")
    if config.activation_bits not in SUPPORTED_ACTIVATION_BITS:
        raise AkidaConversionError(
            f"activation_bits={config.activation_bits}: Akida's unsigned ReLU outputs support "
            f"{SUPPORTED_ACTIVATION_BITS} bits (its 8-bit outputs saturate at 127)")
    if config.input_bits != 8:
        raise AkidaConversionError(
            f"input_bits={config.input_bits}: Akida takes signed inputs only as int8; use input_bits=8")
    input_max = network.input.zero_point
    for i, layer in enumerate(network.layers):
        fan_in_max = input_max if i == 0 else config.activation_levels
        acc_bound = np.abs(layer.weights).sum(axis=1).max() * fan_in_max + np.abs(layer.bias).max(initial=0)
        if acc_bound >= 2 ** (ACCUMULATOR_BITS - 1):
            raise AkidaConversionError(f"layer {i}: accumulator may exceed Akida's {ACCUMULATOR_BITS}-bit buffer")
        mantissa, shift = split_bias(layer.bias, 8)
        unexpressed = np.flatnonzero((mantissa << shift) != layer.bias)
        if unexpressed.size:
            raise AkidaConversionError(
                f"layer {i}: bias {layer.bias[unexpressed[0]]} is not an int8 times a power of two: export the "
                "network with bias_bits=8 (AkidaBackend.export_options)"
            )
        if layer.is_output:
            continue
        if layer.multiplier.max(initial=0) > 255 or layer.multiplier.min(initial=0) < 0:
            raise AkidaConversionError(
                f"layer {i}: requantization multiplier up to {layer.multiplier.max()} exceeds Akida's uint8 "
                "output scale: export with multiplier_bits=8 (AkidaBackend.export_options)")
        if layer.shift > 127:
            raise AkidaConversionError(f"layer {i}: output shift {layer.shift} exceeds Akida's int8 range")
        if acc_bound * layer.multiplier.max(initial=0) >= 2 ** (POST_OP_BITS - 1):
            raise AkidaConversionError(f"layer {i}: scaled accumulator may exceed Akida's {POST_OP_BITS}-bit buffer")


def build_model(network: IntegerNetwork):
    """An ``akida.Model`` computing the integer network's hidden codes and output accumulator."""
    akida = import_akida()
    check_network(network)
    model = akida.Model()
    model.add(akida.InputData((1, 1, network.obs_dim), input_bits=network.config.input_bits))
    for i, layer in enumerate(network.layers):
        if layer.is_output:
            dense = akida.Dense1D(layer.weights.shape[0], output_bits=32, activation=akida.ActivationType.NoActivation,
                                  name="q_values")
        else:
            dense = akida.Dense1D(layer.weights.shape[0], output_bits=network.config.activation_bits,
                                  activation=akida.ActivationType.ReLU, name=f"hidden_{i}")
        model.add(dense)
        dense.set_variable("weights", layer.weights.T.astype(np.int8))
        mantissa, shift = split_bias(layer.bias, 8)
        dense.set_variable("bias", mantissa.astype(np.int8))
        dense.set_variable("bias_shift", shift.astype(np.uint8))
        if not layer.is_output:
            dense.set_variable("output_scales", layer.multiplier.astype(np.uint8))
            dense.set_variable("output_shift", np.full(layer.multiplier.shape, -layer.shift, dtype=np.int8))
    return model


def mapping_report(network: IntegerNetwork, device: Any = "TwoNodesIPv2") -> dict[str, Any]:
    """Map the policy onto a (virtual) Akida device and report what runs on hardware NPs.

    ``device``: an ``akida`` device, or the name of a virtual one (``"TwoNodesIPv2"``, ``"AKD1000"``...).
    Returns ``{"device", "fits", "hardware_layers", "software_layers", "nps", "error"}``.
    """
    akida = import_akida()
    model = build_model(network)
    dev = getattr(akida, device)() if isinstance(device, str) else device
    report: dict[str, Any] = {"device": str(device), "hardware_layers": [], "software_layers": [], "nps": 0, "error": None}
    try:
        model.map(dev, hw_only=False)
    except RuntimeError as exc:  # e.g. "The IP version of the model and device must be identical."
        report.update(fits=False, error=str(exc))
        return report
    for sequence in model.sequences:
        names = [layer.name for p in sequence.passes for layer in p.layers]
        on_hardware = sequence.backend == akida.BackendType.Hardware
        report["hardware_layers" if on_hardware else "software_layers"].extend(names)
        if on_hardware:
            report["nps"] += sum(len(layer.mapping.nps) for p in sequence.passes for layer in p.layers if layer.mapping)
    hidden = [f"hidden_{i}" for i in range(len(network.layers) - 1)]
    report["fits"] = all(name in report["hardware_layers"] for name in hidden)
    return report


class AkidaPolicy(SpikingPolicy):
    """Q-values from Akida's engine (software, or the board the model was mapped to)."""

    def __init__(self, network: IntegerNetwork, device: Any = None) -> None:
        self.network = network
        self.model = build_model(network)
        self.device = device
        if device is not None:
            try:
                self.model.map(device, hw_only=False)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"mapping the policy onto the Akida board {device} failed ({exc}); check the board "
                    "(akida.devices()) or run on the software engine: backend_kwargs={'device': 'software'}"
                ) from exc

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        codes = self.network.input.codes(obs).astype(np.int8)
        acc = self.model.forward(codes.reshape(-1, 1, 1, self.obs_dim)).reshape(len(codes), -1)
        return acc.astype(np.float64) * self.network.layers[-1].scale

    def save(self, path) -> None:
        """Akida's own model file (``.fbz``), for ``akida.Model(path)`` on a board."""
        self.model.save(str(path))


class AkidaBackend(Backend):
    """BrainChip Akida: ``device="auto"`` (a board if ``akida.devices()`` lists one, else the
    software engine), ``"software"``, or an index into ``akida.devices()``."""

    name = "akida"
    #: the integer network must carry Akida-representable requantization scales and biases
    export_options = {"multiplier_bits": 8, "bias_bits": 8}

    def __init__(self, device: str | int = "auto") -> None:
        akida = import_akida()
        boards = akida.devices()
        if device == "software" or (device == "auto" and not boards):
            self.device = None
        elif device == "auto":
            self.device = boards[0]
        elif isinstance(device, int) and not isinstance(device, bool):
            if not 0 <= device < len(boards):
                raise ValueError(f"device={device}: akida.devices() lists {len(boards)} board(s)")
            self.device = boards[device]
        else:
            raise ValueError(f"device must be 'auto', 'software' or an index into akida.devices(), got {device!r}")

    def convert(self, network) -> AkidaPolicy:
        return AkidaPolicy(as_integer_network(network, **self.export_options), self.device)
