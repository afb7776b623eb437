"""Precision search: the cheapest per-layer bit widths that keep a trained policy's greedy actions.

For a trained RIVC policy, per layer:

* **Hessian sensitivity** (HAWQ-V2, Dong et al. 2020): Hutchinson's estimate of the average trace of the
  TD loss's Hessian over the layer's weights, ``E[v^T H v] / n`` with Rademacher ``v``, on the float network
  with the same weights and PACT clips (the quantized forward is piecewise constant); with the weights'
  quantization error at a width it gives HAWQ-V2's ``Omega = trace / n * ||Q(W) - W||^2``;
* **measured sensitivity**: the greedy agreement with the trained policy when that layer alone takes
  another legal width (post-training requantization of the same weights and clips).

Then every per-layer assignment the chip target accepts, in order of parameter memory at its widths
(:func:`rivc.neurochip.cost.parameter_bits`), until the first that keeps the agreement asked for within the
memory budget: the cheapest such assignment. ``finetune`` then trains it with RIVC at those widths.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rivc.chip import TargetError
from rivc.config import LayerBits, QuantConfig
from rivc.neurochip.cost import layer_parameter_bits
from rivc.qnetwork import QuantizedQNetwork
from rivc.quant import MIN_CLIP
from rivc.quant import weight_codes
from rivc.requant import REQUANTIZATIONS


@dataclass(frozen=True)
class Transitions:
    """Greedy transitions of the trained policy: the states to compare actions on and the TD loss's data."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    dones: np.ndarray


@dataclass
class LayerSensitivity:
    layer: int
    parameters: int
    trained: str  # the layer's trained widths, "W/A"
    hessian_trace: float  # average trace of the TD loss's Hessian over the layer's weights (HAWQ-V2)
    omega: dict[int, float]  # HAWQ-V2: trace / n * ||Q_b(W) - W||^2 per legal weight width b
    agreement: dict[str, float]  # greedy agreement when this layer alone takes "W/A"


@dataclass
class PrecisionResult:
    trained: str
    chosen: str | None
    agreement_asked: float
    memory_bits_trained: int
    memory_bits_chosen: int | None
    memory_budget_bits: int | None
    agreement_chosen: float | None
    candidates: int  # legal assignments
    evaluated: int  # assignments measured before the cheapest was found
    states: int
    layers: list[LayerSensitivity] = field(default_factory=list)
    measured: list[tuple[str, int, float]] = field(default_factory=list)  # (widths, memory bits, agreement), in order
    returns: dict[str, float] = field(default_factory=dict)  # "trained", "chosen", "finetuned"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_transitions(model, env, episodes: int, seed: int) -> Transitions:
    """Greedy episodes of the trained (spiking) policy; every step a transition."""
    columns: dict[str, list] = {key: [] for key in ("observations", "actions", "rewards", "next_observations", "dones")}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = int(model.predict(obs, deterministic=True)[0])
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(columns, (obs, action, reward, next_obs, float(terminated))):
                columns[key].append(value)
            obs, done = next_obs, terminated or truncated
    return Transitions(**{key: np.asarray(values) for key, values in columns.items()})


def greedy_actions(net: QuantizedQNetwork, backend, observations: np.ndarray) -> np.ndarray:
    """The greedy actions of ``net``'s spiking policy on the backend (its conversion, as deployed)."""
    return backend.convert(net.export()).predict(observations)


def _float_q(net: QuantizedQNetwork, obs: torch.Tensor) -> torch.Tensor:
    """The float network with the trained weights and PACT's clipped ReLU: twice differentiable."""
    x = net._input_float(obs)
    last = len(net.layers) - 1
    for i, layer in enumerate(net.layers[:last]):
        x = torch.minimum(torch.relu(net._layer(i, x, layer.weight, layer.bias)), net.clips[i].detach().clamp_min(MIN_CLIP))
    return net._head_values(net._layer(last, x, net.layers[last].weight, net.layers[last].bias))


def hessian_traces(model, data: Transitions, samples: int = 32, seed: int = 0) -> list[float]:
    """HAWQ-V2: per layer, Hutchinson's estimate of the average Hessian trace of the TD loss over its weights."""
    net = model.q_network
    obs = torch.as_tensor(data.observations, dtype=torch.float32)
    target = model.td_target(obs, torch.as_tensor(data.actions), torch.as_tensor(data.rewards, dtype=torch.float32),
                             torch.as_tensor(data.next_observations, dtype=torch.float32),
                             torch.as_tensor(data.dones, dtype=torch.float32))
    weights = [layer.weight for layer in net.layers]
    q_taken = _float_q(net, obs).gather(1, torch.as_tensor(data.actions).long().reshape(-1, 1)).squeeze(1)
    grads = torch.autograd.grad(F.smooth_l1_loss(q_taken, target), weights, create_graph=True)
    generator = torch.Generator().manual_seed(seed)
    traces = [0.0] * len(weights)
    for _ in range(samples):
        vs = [torch.randint(0, 2, w.shape, generator=generator).to(w.dtype) * 2 - 1 for w in weights]
        hvs = torch.autograd.grad(grads, weights, grad_outputs=vs, retain_graph=True)
        for i, (v, hv) in enumerate(zip(vs, hvs)):
            traces[i] += float((v * hv).sum()) / samples
    return [trace / w.numel() for trace, w in zip(traces, weights)]


def weight_error(net: QuantizedQNetwork, i: int, bits: int) -> float:
    """``||Q(W) - W||^2`` of layer ``i``'s per-channel symmetric quantization at ``bits``, in its parameters' units
    (those of the Hessian trace): a first layer in the observation's units is quantized with the input range folded
    in, and its error scaled back."""
    weight, bias = (p.detach().cpu().numpy() for p in (net.layers[i].weight, net.layers[i].bias))
    w, units = weight.reshape(weight.shape[0], -1), 1.0
    if i == 0 and net.folds_input_range:
        w, _ = net._fold_input_range(w, bias)
        units = net.input_affine()[0]  # W' = W * scale, per input column
    codes, scale = weight_codes(w, bits)
    return float((((codes * scale - w) * units) ** 2).sum())


def layer_options(net: QuantizedQNetwork, widths: tuple[int, ...] | None) -> list[list[LayerBits]]:
    """Per layer, the widths the target supports (within ``widths``, where given)."""
    chip, n_layers = net.target, len(net.layers)
    fixed = chip.fixed_first_weight_bits(net.is_image)
    weight_widths = [b for b in chip.weight_bits if widths is None or b in widths]
    activation_widths = [b for b in chip.activation_bits if widths is None or b in widths]
    options = []
    for i in range(n_layers):
        weights = [fixed] if i == 0 and fixed else weight_widths
        activations = [None] if i == n_layers - 1 else activation_widths
        options.append([LayerBits(w, a) for w in weights for a in activations])
    return options


def memory_bits(net: QuantizedQNetwork, config: QuantConfig) -> int:
    """Parameter memory of ``net`` at ``config``'s widths on its target (as the cost report counts it)."""
    chip = net.target
    precision = chip.precision(config, len(net.layers), net.is_image)
    requant = REQUANTIZATIONS[chip.requantization]
    total = 0
    for layer, bits in zip(net.layers, precision):
        units = layer.weight.shape[0]
        placeholder = None if bits.is_output else requant.placeholder(units, bits, chip)
        total += layer_parameter_bits(chip, layer.weight.numel(), units, bits.weight_bits, placeholder)
    return total


def legal_configs(net: QuantizedQNetwork, widths: tuple[int, ...] | None = None) -> list[QuantConfig]:
    """Every per-layer assignment the target accepts for this network's shape."""
    configs = (QuantConfig(input_bits=net.config.input_bits, layers=tuple(layers))
               for layers in itertools.product(*layer_options(net, widths)))
    return [config for config in configs if _accepted(net, config)]


def search_precision(model, data: Transitions, agreement: float = 0.99, memory_budget_bits: int | None = None,
                     widths: tuple[int, ...] | None = None, hessian_samples: int = 32) -> tuple[PrecisionResult, QuantConfig | None]:
    """The sensitivity table and the cheapest legal assignment keeping ``agreement`` within the budget."""
    if not 0.0 < agreement <= 1.0:
        raise ValueError(f"the agreement to keep must be in (0, 1], got {agreement}")
    net, backend = model.q_network, model.backend
    if not net.qat:
        raise ValueError(f"variant {model.variant!r} trains a float network: the precision search needs a "
                         "quantization-aware one (variant 'rivc' or 'qat')")
    if net.per_unit_steps:  # its weights' error would be measured on W, where the chip quantizes W * step
        raise ValueError("the precision search measures networks with one activation step per layer; this one has a "
                         "step per unit (activation_steps='unit'): train it with activation_steps='layer' to search")
    trained = QuantConfig(input_bits=net.config.input_bits,
                          layers=tuple(LayerBits(p.weight_bits, p.activation_bits) for p in net.precision))
    states = data.observations
    reference = greedy_actions(net, backend, states)

    def agreement_of(config: QuantConfig) -> float:
        return float(np.mean(greedy_actions(net.with_config(config), backend, states) == reference))

    traces = hessian_traces(model, data, hessian_samples)
    options = layer_options(net, widths)
    table = []
    for i, layer in enumerate(net.layers):
        alone = {}
        for bits in options[i]:
            config = QuantConfig(input_bits=trained.input_bits,
                                 layers=tuple(bits if j == i else b for j, b in enumerate(trained.layers)))
            if bits != trained.layers[i] and _accepted(net, config):
                alone[str(bits)] = agreement_of(config)
        omega = {b.weight_bits: traces[i] * weight_error(net, i, b.weight_bits)
                 for b in options[i] if b.activation_bits in (None, trained.layers[i].activation_bits)}
        table.append(LayerSensitivity(i, layer.weight.numel(), str(trained.layers[i]), traces[i], omega, alone))
    # cheapest first; at equal memory (activation widths cost no parameter memory) the widest activations first
    candidates = sorted((memory_bits(net, c), -sum(b.activation_bits or 0 for b in c.layers), c.describe(), c)
                        for c in legal_configs(net, widths))
    chosen, chosen_agreement, measured = None, None, []
    for cost, _, _, config in candidates:
        if memory_budget_bits is not None and cost > memory_budget_bits:
            break
        kept = agreement_of(config)
        measured.append((config.describe(), cost, kept))
        if kept >= agreement:
            chosen, chosen_agreement = config, kept
            break
    result = PrecisionResult(
        trained=trained.describe(), chosen=None if chosen is None else chosen.describe(), agreement_asked=agreement,
        memory_bits_trained=memory_bits(net, trained), memory_bits_chosen=None if chosen is None else memory_bits(net, chosen),
        memory_budget_bits=memory_budget_bits, agreement_chosen=chosen_agreement, candidates=len(candidates),
        evaluated=len(measured), states=len(states), layers=table, measured=measured)
    return result, chosen


def finetune_at(path, env, config: QuantConfig, timesteps: int, seed: int = 0):
    """The saved model at ``config``'s widths, trained on with RIVC for ``timesteps`` steps: converted at once,
    a short warm-up and low exploration, since the policy is already trained (as ``convert_model.finetune``)."""
    from rivc.agents.convert_model import FINETUNE_OPTIONS
    from rivc.agents.rivc_agent import RIVC

    model = RIVC.load(path, env=env, quant=config, seed=seed, **FINETUNE_OPTIONS)  # converted at the new widths
    model.learn(timesteps)
    return model


def _accepted(net: QuantizedQNetwork, config: QuantConfig) -> bool:
    try:
        net.target.check(config, net.sizes, net.conv_geometry)
    except TargetError:
        return False
    return True


def format_table(result: PrecisionResult) -> str:
    """The sensitivity table and the choice, as printed and written to the run folder."""
    lines = ["| layer | parameters | trained | Hessian trace / n (HAWQ-V2) | Omega per weight width | "
             "greedy agreement, this layer alone at |", "|---|---|---|---|---|---|"]
    for row in result.layers:
        omega = ", ".join(f"{b}: {v:.3g}" for b, v in sorted(row.omega.items()))
        alone = ", ".join(f"{w} {100 * a:.1f} %" for w, a in sorted(row.agreement.items()))
        lines.append(f"| {row.layer} | {row.parameters} | {row.trained} | {row.hessian_trace:.3g} | {omega} | {alone} |")
    saved = ""
    if result.chosen is not None:
        saved = (f"chosen {result.chosen}: {result.memory_bits_chosen / 8192:.2f} KiB against "
                 f"{result.memory_bits_trained / 8192:.2f} KiB trained ({100 * (1 - result.memory_bits_chosen / result.memory_bits_trained):.0f} % "
                 f"saved), greedy agreement {100 * result.agreement_chosen:.1f} % (asked >= {100 * result.agreement_asked:.1f} %)")
    else:
        budget = "" if result.memory_budget_bits is None else f" within {result.memory_budget_bits / 8192:.2f} KiB"
        saved = (f"no legal assignment{budget} keeps {100 * result.agreement_asked:.1f} % greedy agreement: lower "
                 "--agreement or raise the budget")
    lines += ["", f"{result.candidates} legal assignments, {result.evaluated} measured (cheapest first) on "
                  f"{result.states} states; {saved}"]
    cheaper = [m for m in result.measured if m[1] < result.memory_bits_trained]
    if cheaper:
        widths, bits, kept = max(cheaper, key=lambda m: m[2])
        lines.append(f"best agreement with less memory than trained: {widths} ({bits / 8192:.2f} KiB), {100 * kept:.1f} %")
    if result.returns:
        lines.append("returns: " + ", ".join(f"{k} {v:.1f}" for k, v in result.returns.items()))
    return "\n".join(lines)
