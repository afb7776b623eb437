"""BrainChip Akida backend: the integer network as an ``akida.Model``, bit-exact with it.

Two chip targets (:mod:`rivc.chip`), two layer sets:

Camera frames (conv networks): the uint8 pixels go to the chip's input conv layer (``InputConv2D`` /
``InputConvolutional``, a cross-correlation like rivc's, zero padding); later conv layers
(``Conv2D`` / ``Convolutional``) convolve, so their kernels are flipped; max pooling pads with
-inf; a dense layer reads the feature map NHWC on Akida 2.0 and channel-slowest, column, row on
AKD1000, so its weights are reordered (all measured against akida 2.19.3's engine).

``akida`` (Akida 2.0, IPv2): ``InputData((1, 1, obs_dim), 8)`` + ``Dense1D`` layers. Weight codes as int8
kernels (``weights_bits`` 4 for 1/2/4-bit codes, 8), biases as ``int8 << bias_shift``, requantization as
``output_scales`` (uint8) and a negative ``output_shift`` (rounding half up), ReLU with 4- or 8-bit outputs
(the 8-bit ones signed: codes 0..127), 1/2-bit activations clipped on the accumulator
(``max_value << max_value_shift``); the Q-value head is a 32-bit accumulator scaled on the host. Each
layer takes its own widths (``IntegerNetwork.precision``).

``akd1000`` (Akida 1.0, IPv1: AKD1000, AKD1500): the observation codes ``+ 128`` as a small uint8
image into ``InputConvolutional`` (the first Valid kernel position covers the observation: a dense
layer with 8-bit weights; the zero point moves into the threshold; the second output column, which
the chip's minimum width adds, gets zero weights), then ``FullyConnected`` layers; each activation is
``ceil((acc - threshold) / act_step)`` with the engine's act_step in sixteenths; the head returns
the raw accumulator and its bias is added on the host.

A model that cannot be hardware-resident on the target's device raises ``AkidaConversionError``,
naming the layer and the limit. The software engine runs when no board is attached; ``device=`` picks
a board from ``akida.devices()``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rivc.chip import ChipTarget, split_bias
from rivc.config import QuantConfig
from rivc.conv import ConvGeometry
from rivc.integer_net import ImageInput, InputQuantizer, IntegerLayer, IntegerNetwork
from rivc.requant import REQUANTIZATIONS, ScaleShift
from rivc.neurochip.base import Backend, SpikingPolicy, as_integer_network

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
    """Raise ``AkidaConversionError`` where the network is not one of the Akida targets' arithmetic or
    overflows Akida's buffers (bit widths, scale and bias formats: ``IntegerNetwork.validate``)."""
    chip = network.chip
    if chip.ip_version is None:
        raise AkidaConversionError(
            f"the network was trained for target {network.target!r}, which Akida does not run: train with "
            "target='akida' (Akida 2.0) or target='akd1000' (AKD1000), or deploy on the snntorch backend")
    for i, layer in enumerate(network.layers):
        acc_bound = layer.accumulator_bound(network.input_max(i))
        if acc_bound >= 2 ** (chip.accumulator_bits - 1):
            raise AkidaConversionError(f"layer {i}: accumulator may exceed Akida's {chip.accumulator_bits}-bit buffer")
        if not isinstance(layer.requant, ScaleShift):  # the output layer; AKD1000's threshold and step
            continue
        if np.max(layer.requant.shift) > 127:
            raise AkidaConversionError(f"layer {i}: output shift {layer.requant.shift} exceeds Akida's int8 range")
        if acc_bound * layer.requant.multiplier.max(initial=0) >= 2 ** (POST_OP_BITS - 1):
            raise AkidaConversionError(f"layer {i}: scaled accumulator may exceed Akida's {POST_OP_BITS}-bit buffer")


def _pooling(akida, layer: IntegerLayer, ipv1: bool) -> dict[str, Any]:
    """Max pooling and padding keywords of a conv layer (pooling windows = their stride)."""
    geometry = layer.conv
    padding = akida.Padding.Same if geometry.padding == "same" else akida.Padding.Valid
    if not geometry.pool:
        return {"padding": padding}
    size = (geometry.pool, geometry.pool) if ipv1 else geometry.pool
    return {"padding": padding, "pool_type": akida.PoolType.Max, "pool_size": size, "pool_stride": size}


def _kernel(layer: IntegerLayer, first: bool) -> np.ndarray:
    """Conv weights in akida's (kh, kw, C, F) layout: the input layer cross-correlates as rivc does,
    later conv layers convolve (their kernel is flipped)."""
    kernel = layer.weights.transpose(1, 2, 3, 0)
    return kernel if first else kernel[::-1, ::-1]


def _build_ipv2(akida, network: IntegerNetwork):
    """Akida 2.0: ``InputConv2D`` + ``Conv2D`` layers for frames (``InputData`` for a vector), ``Dense1D``
    layers after them (a feature map flattens NHWC, as rivc's)."""
    model = akida.Model()
    chip = network.chip
    if not network.is_image:
        model.add(akida.InputData((1, 1, network.obs_dim), input_bits=network.config.input_bits))
    for i, (layer, precision) in enumerate(zip(network.layers, network.precision)):
        name = "q_values" if layer.is_output else f"hidden_{i}"
        activation = dict(output_bits=32, activation=akida.ActivationType.NoActivation) if layer.is_output else dict(
            output_bits=precision.output_container, activation=akida.ActivationType.ReLU)
        weights_bits = chip.container(precision.weight_bits)
        if layer.conv is not None and i == 0:  # uint8 pixels, 8-bit weights, zero padding (padding_value 0)
            geometry = layer.conv
            akida_layer = akida.InputConv2D(
                input_shape=geometry.in_shape, filters=layer.units, kernel_size=geometry.kernel,
                kernel_stride=geometry.stride, weights_bits=weights_bits, name=name, **activation,
                **_pooling(akida, layer, False))
            weights = _kernel(layer, first=True)
        elif layer.conv is not None:
            akida_layer = akida.Conv2D(
                filters=layer.units, kernel_size=layer.conv.kernel, kernel_stride=layer.conv.stride, weights_bits=weights_bits,
                name=name, **activation, **_pooling(akida, layer, False))
            weights = _kernel(layer, first=False)
        else:  # 1/2/4-bit weight codes in 4-bit containers (8-bit ones need 8-bit inputs: ChipTarget.check)
            akida_layer = akida.Dense1D(layer.units, weights_bits=weights_bits, name=name, **activation)
            weights = layer.weights.T
        model.add(akida_layer)
        akida_layer.set_variable("weights", np.ascontiguousarray(weights).astype(np.int8))
        mantissa, shift = split_bias(layer.bias, 8)
        akida_layer.set_variable("bias", mantissa.astype(np.int8))
        akida_layer.set_variable("bias_shift", shift.astype(np.uint8))
        if not layer.is_output:
            for variable, value in layer.requant.akida_variables(layer.bias).items():
                akida_layer.set_variable(variable, value)
    return model


def _flatten_for_ipv1(weights: np.ndarray, feature_map: tuple[int, int, int]) -> np.ndarray:
    """Dense weights ``[out, H*W*C]`` over rivc's NHWC flatten, reordered to the order AKD1000's
    ``FullyConnected`` reads a feature map in: channel slowest, then column, then row
    (``c * H * W + x * H + y``, measured against the engine)."""
    height, width, channels = feature_map
    return weights.reshape(-1, height, width, channels).transpose(0, 3, 2, 1).reshape(weights.shape[0], -1)


def _build_ipv1(akida, network: IntegerNetwork):
    """AKD1000: ``InputConvolutional`` (frames, or the observation laid out as a small image),
    ``Convolutional`` and ``FullyConnected`` layers; activations ``ceil((acc - threshold) / act_step)``."""
    config = network.config
    layout = None if network.is_image else network.chip.input_layout(network.obs_dim)
    model = akida.Model()
    feature_map = None  # the previous conv layer's output (H, W, C)
    for i, (layer, precision) in enumerate(zip(network.layers, network.precision)):
        units, zero_point = layer.units, 0
        name = "q_values" if layer.is_output else f"hidden_{i}"
        activation = dict(activation=not layer.is_output, act_bits=precision.activation_bits or config.activation_bits)
        weight_bits = precision.weight_bits
        if layer.conv is not None:
            geometry, stride = layer.conv, (layer.conv.stride, layer.conv.stride)
            kernel_size = (geometry.kernel, geometry.kernel)
            if i == 0:  # pixels as they are, zero padding
                akida_layer = akida.InputConvolutional(
                    input_shape=geometry.in_shape, kernel_size=kernel_size, filters=units, kernel_stride=stride,
                    weights_bits=weight_bits, padding_value=0, name=name, **activation, **_pooling(akida, layer, True))
            else:
                akida_layer = akida.Convolutional(
                    kernel_size=kernel_size, filters=units, kernel_stride=stride, weights_bits=weight_bits, name=name,
                    **activation, **_pooling(akida, layer, True))
            weights = _kernel(layer, first=i == 0)
            feature_map = layer.out_shape()
        elif i == 0:  # an observation vector: the first Valid kernel position of a small uint8 image
            akida_layer = akida.InputConvolutional(
                input_shape=layout.image, kernel_size=(layout.kernel, layout.kernel), filters=units,
                kernel_stride=(layout.stride, layout.stride), padding=akida.Padding.Valid, weights_bits=8, name=name,
                **activation)
            flat = np.zeros((layout.kernel**2 * layout.image[2], units), dtype=np.int64)
            flat[: network.obs_dim] = layer.weights.T
            weights = flat.reshape(layout.kernel, layout.kernel, layout.image[2], units)  # (kh, kw, C, F)
            zero_point = network.input.zero_point * layer.weights.sum(axis=1)  # pixels are codes + 128
        else:
            akida_layer = akida.FullyConnected(units, weights_bits=weight_bits, name=name, **activation)
            if feature_map is not None:
                weights = _flatten_for_ipv1(layer.weights, feature_map).T
                feature_map = None
            elif i == 1:  # the vector input layer's output is (1, 2, F), flattened f-major: 2 f + x, x = 0 used
                weights = np.zeros((2 * layer.weights.shape[1], units), dtype=np.int64)
                weights[0::2] = layer.weights.T
            else:
                weights = layer.weights.T
            weights = weights.reshape(1, 1, -1, units)
        model.add(akida_layer)
        akida_layer.set_variable("weights", np.ascontiguousarray(weights).astype(np.int8))
        if not layer.is_output:  # pixels are codes + 128: the zero point moves into the threshold
            for variable, value in layer.requant.akida_variables(layer.bias, zero_point).items():
                akida_layer.set_variable(variable, value)
    return model


def build_model(network: IntegerNetwork):
    """An ``akida.Model`` computing the integer network's hidden codes and output accumulator."""
    akida = import_akida()
    check_network(network)
    return (_build_ipv1 if network.chip.ip_version == "v1" else _build_ipv2)(akida, network)


def fit_report(network: IntegerNetwork, device: Any = None) -> dict[str, Any]:
    """Map the policy onto a (virtual) Akida device with ``hw_only=True`` and report the fit from
    akida's own APIs: NPs by type, sequences and passes, program memory, MACs.

    ``device``: an ``akida`` device, or the name of a virtual one; default the target's
    (``TwoNodesIPv2`` for Akida 2.0, ``AKD1000`` for Akida 1.0). Raises ``AkidaConversionError``
    with the mapper's reason when a layer cannot run on hardware.
    """
    akida = import_akida()
    model = build_model(network)
    device = device or network.chip.device
    if isinstance(device, str) and not callable(getattr(akida, device, None)):
        raise AkidaConversionError(f"unknown akida device {device!r}: use a virtual device such as 'TwoNodesIPv2', "
                                   "'FourNodesIPv2' or 'AKD1000'")
    dev = getattr(akida, device)() if isinstance(device, str) else device
    try:
        model.map(dev, hw_only=True)
    except RuntimeError as exc:
        raise AkidaConversionError(f"the policy is not hardware-resident on {device}: {exc}") from exc
    nps = collections.Counter(str(np_.type).split(".")[-1] for layer in model.layers if layer.mapping
                              for np_ in layer.mapping.nps)
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        model.summary()
    return {
        "device": str(device), "target": network.target, "hardware_only": True,
        "nps": dict(sorted(nps.items())), "np_count": sum(nps.values()),
        "sequences": len(model.sequences), "passes": sum(len(seq.passes) for seq in model.sequences),
        "program_bytes": sum(len(seq.program) for seq in model.sequences),
        "program_memory_bytes": sum(akida.get_program_memory_infos(seq.program).program_memory
                                    for seq in model.sequences),
        "macs": int(getattr(model, "macs", 0) or 0) or network.macs,  # AKD1000 models report none
        "summary": summary.getvalue(),
    }


def check_hardware_fit(config: QuantConfig, sizes: list[int], target: ChipTarget,
                       convs: Sequence[tuple[ConvGeometry, int]] = ()) -> dict[str, Any] | None:
    """Refuse, when a network of this shape is built, what the target's device cannot hold on hardware:
    akida's own mapper (``hw_only=True``) on a network of that shape with random codes. ``sizes``: the
    dense part; ``convs``: ``(geometry, filters)`` of the conv layers before it. Returns the fit report,
    or ``None`` where the ``akida`` package is not installed (the target's static limits were checked
    when the network was built)."""
    try:
        import_akida()
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    precision = target.precision(config, len(convs) + len(sizes) - 1, bool(convs))
    shapes = [((filters, geometry.kernel, geometry.kernel, geometry.in_shape[2]), geometry) for geometry, filters in convs]
    shapes += [((units, fan_in), None) for fan_in, units in zip(sizes[:-1], sizes[1:])]
    layers = []
    for i, (shape, geometry) in enumerate(shapes):
        top, units = precision[i].weight_levels, shape[0]
        layer = IntegerLayer(weights=rng.integers(-top, top + 1, shape) | 1, bias=np.zeros(units, np.int64),
                             scale=np.ones(units), conv=geometry)
        if i < len(shapes) - 1:
            layer.requant = REQUANTIZATIONS[target.requantization].placeholder(units, precision[i], target)
        layers.append(layer)
    if convs:
        quantizer = ImageInput(convs[0][0].in_shape)
    else:
        quantizer = InputQuantizer(-np.ones(sizes[0]), np.ones(sizes[0]), config.input_bits)
    network = IntegerNetwork(config=config, input=quantizer, layers=layers, target=target.name)
    return fit_report(network)


def format_fit(report: dict[str, Any]) -> str:
    nps = ", ".join(f"{count} {kind}" for kind, count in report["nps"].items())
    return (f"{report['device']}: hardware-resident ({nps}; {report['passes']} pass(es), program memory "
            f"{report['program_memory_bytes']} B, {report['macs']} MACs)")


class AkidaPolicy(SpikingPolicy):
    """Q-values from Akida's engine (software, or the board the model was mapped to)."""

    def __init__(self, network: IntegerNetwork, device: Any = None) -> None:
        self.network = network
        self.model = build_model(network)
        self.device = device
        self.ipv1 = network.chip.ip_version == "v1"
        if self.ipv1 and not network.is_image:
            self.layout = network.chip.input_layout(network.obs_dim)
        if device is not None:
            try:
                self.model.map(device, hw_only=True)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"mapping the policy onto the Akida board {device} failed ({exc}); check the board "
                    "(akida.devices()) or run on the software engine: backend_kwargs={'device': 'software'}"
                ) from exc

    def _inputs(self, codes: np.ndarray) -> np.ndarray:
        if self.network.is_image:  # frames: the pixels, NHWC uint8
            return codes.astype(np.uint8)
        if not self.ipv1:
            return codes.astype(np.int8).reshape(-1, 1, 1, self.obs_dim)
        zero_point, (height, width, channels), kernel = self.network.input.zero_point, self.layout.image, self.layout.kernel
        block = np.full((len(codes), kernel * kernel * channels), zero_point, dtype=np.int64)
        block[:, : self.obs_dim] = codes + zero_point
        image = np.full((len(codes), height, width, channels), zero_point, dtype=np.uint8)
        image[:, :kernel, :kernel, :] = block.reshape(-1, kernel, kernel, channels)  # the first kernel position
        return image

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        codes = self.network.input.codes(obs)
        acc = self.model.forward(self._inputs(codes)).reshape(len(codes), -1).astype(np.int64)
        head = self.network.layers[-1]
        if self.ipv1:  # the head returns the raw accumulator: its bias is added on the host
            acc = acc + head.bias
        return self.network.head_values(acc.astype(np.float64) * head.scale)

    def save(self, path) -> None:
        """Akida's own model file (``.fbz``), for ``akida.Model(path)`` on a board."""
        self.model.save(str(path))


class AkidaBackend(Backend):
    """BrainChip Akida: ``device="auto"`` (a board if ``akida.devices()`` lists one, else the
    software engine), ``"software"``, or an index into ``akida.devices()``."""

    name = "akida"

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
        return AkidaPolicy(as_integer_network(network), self.device)


@dataclass(frozen=True)
class BoardMeasurement:
    """Power and energy an Akida board measured while it ran a batch of observations (akida's statistics)."""

    device: str
    frames: int
    fps: float | None
    power_mw: dict[str, float]  # akida's "Avg", "Min", "Max" (and "Std") during the inference
    floor_power_mw: float | None  # the board's power at rest
    energy_mj_per_frame: float | None  # average power x duration / frames

    def describe(self) -> str:
        if not self.power_mw:
            return (f"Akida board {self.device}: {self.frames} observations at {self.fps or 0:.0f} fps; no power reading "
                    "(the batch ended before the power meter sampled: measure more observations)")
        floor = "" if self.floor_power_mw is None else f", {self.floor_power_mw:.1f} mW at rest"
        return (f"Akida board {self.device}, MEASURED: {self.power_mw['Avg']:.1f} mW average during inference{floor}, "
                f"{self.energy_mj_per_frame:.4g} mJ per action, {self.fps:.0f} fps ({self.frames} observations)")


def measure_on_board(policy: AkidaPolicy, observations: np.ndarray, settle_seconds: float = 1.0) -> BoardMeasurement:
    """Run ``observations`` on the board ``policy`` is mapped to, with the board's power measurement on,
    and read akida's inference statistics (the only measured chip energy; docs/COST.md)."""
    if policy.device is None:
        raise ValueError("the policy runs on akida's software engine, which has no power meter: attach a board "
                         "(akida.devices()) and load the policy with backend_kwargs={'device': 0}")
    soc = getattr(policy.device, "soc", None)
    if soc is None:
        raise ValueError(f"Akida device {policy.device} reports no SoC power meter (device.soc is None)")
    soc.power_measurement_enabled = True
    time.sleep(settle_seconds)  # the power log needs a moment to fill (as akida's own CLI waits)
    meter = getattr(soc, "power_meter", None)
    floor = getattr(meter, "floor", None)
    policy.q_values(observations)
    statistics = policy.model.statistics
    return BoardMeasurement(device=str(policy.device), frames=len(observations), fps=statistics.fps,
                            power_mw=dict(statistics.powers or {}), floor_power_mw=floor,
                            energy_mj_per_frame=statistics.energy)
