"""The fast path of an MLP's QAT forward on the CPU: the exact integer arithmetic in numpy (float32 matrix
products, exact below 2**24) and, with gradients, one autograd node whose backward is numpy too; the agent's
update (a Huber loss's gradients) takes the same numpy backward without autograd's graph.

The same values, bit for bit, and the same gradients as the general path of
:class:`rivc.qnetwork.QuantizedQNetwork` (straight-through estimators composed by autograd; tests/test_quantization.py):
both read :class:`QuantizedLinear` (the layer as the chip computes it) and :func:`rivc.quant.clip_gradient_weights`
(the clipped ReLU's gradient rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rivc.cached import cached_attribute
from rivc.chip import EXACT_FLOAT32
from rivc.conv import ConvGeometry
from rivc.integer_net import IntegerLayer, dueling_gradient, dueling_q_values
from rivc.quant import MIN_CLIP32, activation_step, clamped_clip, clip_gradient_weights, clip_statistic
from rivc.requant import Requantization

INT8, INT32 = (-(2**7), 2**7 - 1), 2**31  # int8 codes; int32 accumulators hold every integer below 2**31


def _int8_products_work() -> bool:
    """Whether torch's int8 matrix product with int32 accumulators (``torch._int_mm``, AVX-512 VNNI or AMX where the
    CPU has them) runs here and is exact on the extreme codes: asked once."""
    try:
        a = torch.tensor([[-128, 127, 3] * 6], dtype=torch.int8)
        b = torch.tensor([[127, -128, 5] * 6], dtype=torch.int8).T
        return int(torch._int_mm(a, b)) == 6 * (-128 * 127 + 127 * -128 + 15)
    except (AttributeError, RuntimeError, TypeError):
        return False


INT8_PRODUCTS = _int8_products_work()
# multiply-accumulates of a product from which the int8 kernel beats float32's: below, its fixed cost per call (about
# 7 us on a 2-core x86 machine with VNNI, where the two are about even at 2**19 and int8 is 3x faster at 2**22)
INT8_MIN_PRODUCTS = 2**19


class QuantizedLinear:
    """A layer as the chip computes it (detached): weight codes and scales, bias codes, the value of an
    accumulator unit and the requantization; the integer layer that export() writes and the torch tensors
    the general forward reads are made on first use (a gradient step needs neither)."""

    def __init__(self, codes: np.ndarray, weight_scale: np.ndarray, bias: np.ndarray, scale: np.ndarray,
                 requant: Requantization | None, conv: ConvGeometry | None, weight_levels: int,
                 input_codes: tuple[int, int], shape: tuple[int, ...], device: torch.device,
                 input_steps: np.ndarray | None = None) -> None:
        self._codes, self._weight_scale = codes, weight_scale  # float32 [out, in], [out, 1]
        # per-unit steps of the layer before, folded into these columns (the codes quantize W * step): None for one step
        self._input_steps = input_steps
        self.bias_code_values, self.scale, self.requant, self.conv = bias, scale, requant, conv  # int64, float64 [out]
        self._input_codes = input_codes  # the smallest and largest input code
        self._weight_levels, self._input_max = weight_levels, max(-input_codes[0], input_codes[1])  # largest |code|
        self._shape, self._device = shape, device

    @cached_attribute
    def integer(self) -> IntegerLayer:
        """The integer layer export() writes, made once; its int64 weights are read-only (every export of these
        weights shares them)."""
        weights = self._codes.reshape(self._shape).astype(np.int64)
        weights.setflags(write=False)
        if self.conv is not None:
            weights = weights.transpose(0, 2, 3, 1)  # (F, k, k, C)
        return IntegerLayer(weights=weights, bias=self.bias_code_values, scale=self.scale, requant=self.requant,
                            conv=self.conv)

    def _tensor(self, array, dtype=np.float64, shape=None) -> torch.Tensor | None:
        if array is None:
            return None
        unit = (-1, 1, 1) if self.conv is not None else (-1,)  # broadcast over a feature map [B, F, H, W]
        tensor = torch.from_numpy(np.asarray(array, dtype=dtype)).reshape(shape or unit)
        return tensor if self._device.type == "cpu" else tensor.to(self._device)

    @cached_attribute
    def weight_values(self) -> np.ndarray:
        """codes * scale (float32, ``[out, in]``): the surrogate's weights, on the input's values (with per-unit input
        steps folded in, each column over its step)."""
        values = self._codes * self._weight_scale
        return values if self._input_steps is None else values / self._input_steps

    @cached_attribute
    def weight(self) -> torch.Tensor:
        """``weight_values`` as a tensor of the layer's shape."""
        return self._tensor(self.weight_values, np.float32, self._shape)

    @cached_attribute
    def bias(self) -> torch.Tensor:
        """bias codes * accumulator scale (float32)."""
        return self._tensor(self.bias_code_values * self.scale, np.float32, (-1,))

    @cached_attribute
    def exact_dtype(self) -> torch.dtype:
        """float32 where every partial sum is an integer below 2**24 (exact, and faster), else float64."""
        # first a bound from the shape (fan-in x largest weight code x largest input), the exact one if that is too loose
        bias = float(np.abs(self.bias_code_values).max(initial=0))
        bound = self._codes.shape[1] * self._weight_levels * self._input_max + bias
        if bound >= EXACT_FLOAT32:
            bound = self.integer.accumulator_bound(self._input_max)
        return torch.float32 if bound < EXACT_FLOAT32 else torch.float64

    @cached_attribute
    def weight_codes(self) -> torch.Tensor:
        """[out, in] or [F, C, k, k]: exact integers in ``exact_dtype``."""
        return self._tensor(self._codes, self._numpy_exact_dtype, self._shape)

    @cached_attribute
    def bias_codes(self) -> torch.Tensor:
        return self._tensor(self.bias_code_values, self._numpy_exact_dtype, (-1,))

    @property
    def _numpy_exact_dtype(self) -> type:
        return np.float32 if self.exact_dtype == torch.float32 else np.float64

    @cached_attribute
    def _dense_exact(self) -> tuple[np.ndarray, np.ndarray]:
        """A dense layer's weight codes ``[in, out]`` (contiguous: BLAS reads them faster than a transposed view)
        and bias codes, numpy, in the exact dtype."""
        dtype = self._numpy_exact_dtype
        return np.ascontiguousarray(self._codes.T, dtype=dtype), self.bias_code_values.astype(dtype)

    @cached_attribute
    def _dense_int8(self) -> tuple[torch.Tensor, np.ndarray] | None:
        """A dense layer's weight codes ``[in, out]`` as int8 (a transposed view) and its bias codes (int32 where the
        accumulators stay below 2**31, else int64), where int8 holds every weight and input code and the products'
        sums stay below 2**31; ``None`` elsewhere (or where torch has no int8 product)."""
        low, high = self._input_codes
        if not INT8_PRODUCTS or self.conv is not None or low < INT8[0] or high > INT8[1] or self._weight_levels > INT8[1]:
            return None
        products = self._codes.shape[1] * self._weight_levels * self._input_max
        bias = self.bias_code_values
        if products >= INT32:
            return None
        weights = torch.from_numpy(self._codes.astype(np.int8))  # exact: the codes are integers within int8
        fits = products + float(np.abs(bias).max(initial=0)) < INT32
        return weights.T, bias.astype(np.int32) if fits else bias

    def accumulate(self, codes: np.ndarray) -> np.ndarray:
        """A dense layer's exact accumulators for input codes ``[B, in]`` (numpy): one int8 matrix product with int32
        accumulators where the codes fit (:attr:`_dense_int8`) and the product is large enough to gain by it
        (``INT8_MIN_PRODUCTS``); else one product in float32 where every partial sum is an integer below 2**24 (exact
        in any order), float64 otherwise. The result holds integers (int32 or int64, float32 or float64), which
        arithmetic with float64 arrays widens exactly."""
        int8 = self._dense_int8 if codes.shape[0] * self._codes.size >= INT8_MIN_PRODUCTS else None
        if int8 is not None:
            weights_t, bias = int8
            acc = torch._int_mm(torch.from_numpy(codes.astype(np.int8)), weights_t).numpy()
            if bias.dtype != acc.dtype:  # int64 bias codes: the sums widened
                return acc + bias
            acc += bias
            return acc
        weights_t, bias = self._dense_exact
        acc = codes.astype(weights_t.dtype, copy=False) @ weights_t
        acc += bias
        return acc

    @cached_attribute
    def integer_torch(self) -> IntegerLayer:
        """The requantization and accumulator scale as torch float64 arrays (per channel ``[F, 1, 1]`` for a conv)."""
        return IntegerLayer(weights=self._codes, bias=self.bias_code_values, scale=self._tensor(self.scale),
                            requant=None if self.requant is None else self.requant.to(self._tensor))


@dataclass
class SurrogateTape:
    """What the surrogate's backward reads from an MLP's forward pass: each layer's input values and quantization,
    each hidden layer's clip gradient rule (``masks``: ``clip_gradient_weights``), which clips pass a gradient
    (``clip_live``: False below MIN_CLIP, where clamp_min(MIN_CLIP) passes none) and their shapes, and the head."""

    inputs: list[np.ndarray] = field(default_factory=list)
    layers: list[QuantizedLinear] = field(default_factory=list)
    masks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    clip_live: list[bool | np.ndarray] = field(default_factory=list)
    clip_shapes: list[tuple[int, ...]] = field(default_factory=list)
    dueling: bool = False

    def gradients(self, grad: np.ndarray) -> list[np.ndarray]:
        """The float surrogate's gradients, given the gradient on the Q-values ``grad`` ``[B, A]`` (float32): weight and
        bias per layer, then each clip's, as the layers' parameters are ordered. Layer by layer: ``z = x @ W_q.T +
        b_q`` (``x``: the previous layer's chip activation, ``W_q, b_q``: the quantized weights, whose gradients go
        straight through to the float ones), and ``min(relu(z), clip)`` (to ``z`` where ``0 < z < clip``, to the clip by
        the network's rule, PACT's or LSQ's), with ``z`` the exact pre-activation ``acc * scale``. A first layer in the
        observation's units reads the observations the codes stand for, its own weights (their gradients are the
        folded layer's)."""
        n = len(self.layers)
        weight_grads, clip_grads = [None] * (2 * n), [None] * (n - 1)
        if self.dueling:
            grad = dueling_gradient(grad)
        for i in range(n - 1, -1, -1):
            weight_grads[2 * i] = grad.T @ self.inputs[i]
            weight_grads[2 * i + 1] = np.add.reduce(grad, axis=0)
            if i:
                grad_x = grad @ self.layers[i].weight_values
                inside, clip_weight = self.masks[i - 1]
                per_unit = len(self.clip_shapes[i - 1]) > 0  # a clip per unit: its gradient summed over the batch only
                clip_grad = np.add.reduce(grad_x * clip_weight, axis=0 if per_unit else None)
                clip_grad = clip_grad * np.float32(self.clip_live[i - 1])
                clip_grads[i - 1] = np.asarray(clip_grad, dtype=np.float32).reshape(self.clip_shapes[i - 1])
                grad = grad_x * inside
        return [*weight_grads, *clip_grads]


class _DenseSurrogate(torch.autograd.Function):
    """Forward the exact Q-values; backward the float surrogate of an MLP (:meth:`SurrogateTape.gradients`), in numpy as
    the forward. The same gradients as the general path's estimators (``straight_through``, ``straight_through_clip``)
    composed by autograd (tests/test_quantization.py)."""

    @staticmethod
    def forward(ctx, q, tape, *parameters):  # parameters: weight, bias per layer, then the clips
        ctx.tape = tape
        return q

    @staticmethod
    def backward(ctx, grad):
        return None, None, *(torch.from_numpy(g) for g in ctx.tape.gradients(grad.detach().numpy()))


def exact_pass(net, array: np.ndarray, surrogate: bool) -> tuple[np.ndarray, SurrogateTape | None]:
    """``net``'s exact Q-values (float32 ``[B, A]``) for observations ``array`` ``[B, obs_dim]``, in numpy (float32
    matrix products, exact below 2**24, else float64; int8 ones where they gain), and with ``surrogate`` what the
    backward reads (and, where the clips are tracked, each layer's clip statistic of this batch)."""
    codes = net._input_quantizer.codes(array)  # float64 holding integers
    step, last = net._input_step_value, len(net.layers) - 1
    tape = SurrogateTape(dueling=net.head == "dueling") if surrogate else None
    clips = net._clip_floats()
    for i, clip in enumerate([*clips, None]):
        clip_value = None if clip is None else clamped_clip(clip)  # clamp_min(MIN_CLIP)
        quantized = net.quantize_layer(i, step, clip_value)
        if surrogate:
            # exact in float32, rounded once (codes * step); the first layer's input in its weights' units
            tape.inputs.append(net._surrogate_input(codes, step) if i == 0 else np.multiply(codes, step, dtype=np.float32))
            tape.layers.append(quantized)
        acc = quantized.accumulate(codes)
        if i == last:
            values = acc * quantized.scale
            q = (dueling_q_values(values) if net.head == "dueling" else values).astype(np.float32)
            break
        if surrogate:
            pre_activation = acc * quantized.scale
            if net.tracked_statistic is not None:
                net.batch_clip_targets[i] = clip_statistic(pre_activation, net.precision[i].levels,
                                                           net.tracked_statistic, net.per_unit_steps)
        codes = quantized.requant.codes(acc)
        if surrogate:  # booleans (PACT's clip weights too): a float32 product with them is the product with 0/1
            tape.masks.append(clip_gradient_weights(pre_activation, clip_value, codes, net.precision[i].levels,
                                                    net.clip_gradient))
        step = activation_step(clip_value, net.precision[i].levels)
    if surrogate:
        tape.clip_live = [clip >= MIN_CLIP32 for clip in clips]  # as torch compares the float32 clip (per unit: an array)
        tape.clip_shapes = [c.shape for c in net._clip_parameters]
    return q, tape


def _observations(net, obs: torch.Tensor) -> np.ndarray:
    """``obs`` as the numpy array :func:`exact_pass` reads, once the network is calibrated and the shape checked."""
    net._check_calibrated()
    array = obs.detach().numpy()
    if array.shape[1:] != net.obs_shape or array.ndim != 2:
        net._check_input(obs)  # raises with the shapes
    return array


def mlp_forward(net, obs: torch.Tensor) -> torch.Tensor:
    """``net``'s forward pass (a ``QuantizedQNetwork`` MLP on the CPU), at a fraction of the general path's overhead:
    :func:`exact_pass`, and with gradients one autograd node (``_DenseSurrogate``, its backward in numpy too) in place
    of a graph of straight-through estimators. The same values, bit for bit, and the same gradients
    (tests/test_quantization.py)."""
    q, tape = exact_pass(net, _observations(net, obs), surrogate=torch.is_grad_enabled())
    q = torch.from_numpy(q)
    if tape is None:
        return q
    return _DenseSurrogate.apply(q, tape, *_parameters(net))


VALUE_ROWS = 1024  # rows per exact pass of mlp_values: its arrays stay in the cache, its per-call costs shared


def mlp_values(net, obs: torch.Tensor) -> np.ndarray:
    """``net``'s Q-values without gradients (float32 ``[B, A]``, numpy): :func:`exact_pass` alone, over
    ``VALUE_ROWS`` rows at a time (integer arithmetic: each row's values are the same bits in any batch)."""
    array = _observations(net, obs)
    if len(array) <= VALUE_ROWS:
        return exact_pass(net, array, surrogate=False)[0]
    return np.concatenate([exact_pass(net, array[start:start + VALUE_ROWS], surrogate=False)[0]
                           for start in range(0, len(array), VALUE_ROWS)])


def _parameters(net) -> list[torch.Tensor]:
    """The parameters in the order :meth:`SurrogateTape.gradients` gives their gradients."""
    return [p for pair in net._parameters_of for p in pair] + net._clip_parameters


def huber_loss_backward(net, obs: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> float:
    """The Huber loss (``F.smooth_l1_loss``, mean, beta 1) of ``net``'s Q-values at ``actions`` against ``targets``,
    and its gradients written to the parameters' ``.grad`` (``None`` where a parameter takes none): the gradients of
    ``smooth_l1_loss(...).backward()`` through :func:`mlp_forward`, bit for bit, without building autograd's graph.
    The loss is returned as a float (float64 mean: a logged figure)."""
    q, tape = exact_pass(net, _observations(net, obs), surrogate=True)
    rows, taken = np.arange(len(q)), actions.detach().numpy().reshape(-1).astype(np.intp)
    error = q[rows, taken] - targets.detach().numpy().reshape(-1)
    grad = np.zeros_like(q)  # the gather's backward: the error's gradient on the taken actions' Q-values
    # as torch: (1 / B) * clip(error, -1, 1) (np.clip's wrappers cost more than its two comparisons)
    grad[rows, taken] = np.minimum(np.maximum(error, -1.0), 1.0) * np.float32(1.0 / len(error))
    for parameter, gradient in zip(_parameters(net), tape.gradients(grad)):
        parameter.grad = torch.from_numpy(gradient) if parameter.requires_grad else None
    size = np.abs(error, dtype=np.float64)
    return float(np.add.reduce(np.where(size < 1.0, 0.5 * size * size, size - 0.5)) / len(size))  # (np.mean's sum)
