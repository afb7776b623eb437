"""The update's gradient clipping and optimizer: torch's (``clip_grad_norm_``, ``Adam``), bit for bit, at a fraction
of their per-tensor cost on a Q-network's few small tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CLEARLY_BELOW = 0.999  # (norm + 1e-6) / max_norm below this: torch's float32 coefficient is > 1 whatever its rounding


def _adams_step(optimizer: torch.optim.Adam, closure=None):
    """``torch.optim.Adam.step`` without the hooks' wrapper torch puts around it once an ``Adam`` exists: the caller's
    step, wrapped itself, has run them."""
    step = torch.optim.Adam.step
    return (step.__wrapped__ if getattr(step, "hooked", False) else step)(optimizer, closure)


@dataclass(repr=False)
class _FlatGroup:
    """A parameter group's Adam state in three flat buffers (each parameter's state tensors are views of them), flat
    copies of its parameters and gradients (gathered at each step, the parameters written back after it) and what the
    next step checks is unchanged."""

    params: tuple[torch.Tensor, ...]
    param: torch.Tensor  # the parameters, flat (a copy made at each step)
    param_views: list[torch.Tensor]  # views of ``param`` shaped as the parameters
    grad: torch.Tensor  # the gradients, gathered flat
    grad_views: list[torch.Tensor]  # views of ``grad`` shaped as the parameters
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    steps: torch.Tensor  # float32 [n params]: each parameter's ``state["step"]`` is one of its elements
    step_values: np.ndarray  # ``steps``' memory, read as numpy
    state_views: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (step, exp_avg, exp_avg_sq) per parameter
    steps_version: int  # ``steps``' version counter when last checked (this class counts through ``step_values``)


def _flat_options(group: dict) -> bool:
    """Whether a group's options are the ones :class:`FlatAdam`'s flat update computes (else torch's Adam steps)."""
    return (not group["amsgrad"] and group["weight_decay"] == 0 and not group["maximize"] and not group["capturable"]
            and not group["differentiable"] and not group["fused"] and isinstance(group["lr"], float)
            and all(isinstance(beta, float) for beta in group["betas"]))


class FlatAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (its options, state and ``state_dict``), whose step on float32 CPU tensors updates a
    parameter group's tensors as one: each of Adam's operations runs once over the group's elements, not once per
    tensor. The same bits as ``torch.optim.Adam`` (single- or multi-tensor, whose CPU kernels compute each element
    alike): Adam is elementwise, with one step count per group. At a few small tensors (a Q-network's layers and
    clips) the per-tensor calls were most of the optimizer's cost.

    The moments stay views of the flat buffers, so code that scales a parameter's moments in place (or torch's own
    step, which this one takes for other options, devices or dtypes and a closure) reads and writes the same state;
    state that ``load_state_dict`` brings from elsewhere is gathered again on the next step. A parameter without a
    gradient is left as torch leaves it (no step); once the group's step counts differ (one missed a step that the
    others took), torch's step runs it, as the flat step has one count.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._flat: list[_FlatGroup | None] = []

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._flat = []

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            return _adams_step(self, closure)
        flats = [self._flat_group(i, group) for i, group in enumerate(self.param_groups)]
        if any(flat is None for flat in flats):
            return _adams_step(self)
        for group, flat in zip(self.param_groups, flats):
            self._update(group, flat)
        return None

    def _flat_group(self, index: int, group: dict) -> _FlatGroup | None:
        """The group's flat state, checked (or gathered again) for this step; ``None`` where torch's step applies."""
        params = [p for p in group["params"] if p.grad is not None]  # (as torch: the others and their state rest)
        if not params or not _flat_options(group):
            return None
        for p in params:
            grad = p.grad
            if grad.dtype is not torch.float32 or not grad.is_cpu or grad.layout is not torch.strided:
                return None
        while len(self._flat) <= index:
            self._flat.append(None)
        flat = self._flat[index]
        if flat is None or not self._still_flat(flat, params):
            flat = self._flat[index] = self._gather(params)
            if flat is None:
                return None
        return flat

    def _still_flat(self, flat: _FlatGroup, params: list[torch.Tensor]) -> bool:
        """Whether the group's parameters and their state are still the ones ``flat`` holds, with one step count."""
        if len(params) != len(flat.params) or any(p is not q for p, q in zip(params, flat.params)):
            return False
        for p, (step, exp_avg, exp_avg_sq) in zip(params, flat.state_views):
            state = self.state[p]
            if (state.get("step") is not step or state.get("exp_avg") is not exp_avg
                    or state.get("exp_avg_sq") is not exp_avg_sq):
                return False
        if flat.steps._version != flat.steps_version:  # counted by torch's step (a fallback) or written by hand
            if not bool((flat.steps == flat.steps[0]).all()):
                return False
            flat.steps_version = flat.steps._version
        return True

    def _gather(self, params: list[torch.Tensor]) -> _FlatGroup | None:
        """Flat buffers for ``params`` and their state (zeros before the first step), the state made views of them;
        ``None`` where they cannot be: not float32 CPU tensors, or state with differing step counts."""
        if any(p.dtype != torch.float32 or p.device.type != "cpu" or p.is_sparse for p in params):
            return None
        states = [self.state[p] for p in params]
        fresh = [len(state) == 0 for state in states]
        if any(fresh) and not all(fresh):
            return None
        if all(fresh):
            step_values = [0.0] * len(params)
            exp_avgs = exp_avg_sqs = None
        else:
            if any(set(state) != {"step", "exp_avg", "exp_avg_sq"} for state in states):
                return None
            step_values = [float(state["step"]) for state in states]
            if len(set(step_values)) != 1:
                return None
            exp_avgs = [state["exp_avg"] for state in states]
            exp_avg_sqs = [state["exp_avg_sq"] for state in states]
            if any(t.shape != p.shape or t.dtype != torch.float32 or t.device.type != "cpu"
                   for p, ts in zip(params, zip(exp_avgs, exp_avg_sqs)) for t in ts):
                return None
        sizes = [p.numel() for p in params]

        def buffer(tensors: list[torch.Tensor] | None) -> torch.Tensor:
            return torch.zeros(sum(sizes)) if tensors is None else torch.cat([t.reshape(-1) for t in tensors])

        def views(flat: torch.Tensor) -> list[torch.Tensor]:
            return [part.view(p.shape) for part, p in zip(flat.split(sizes), params)]

        param, exp_avg, exp_avg_sq = torch.empty(sum(sizes)), buffer(exp_avgs), buffer(exp_avg_sqs)  # (param: each step)
        steps = torch.tensor(step_values, dtype=torch.float32)
        state_views = list(zip(steps.unbind(), views(exp_avg), views(exp_avg_sq)))
        for state, (step, avg, avg_sq) in zip(states, state_views):
            state.update(step=step, exp_avg=avg, exp_avg_sq=avg_sq)
        grad = torch.empty(sum(sizes))
        return _FlatGroup(params=tuple(params), param=param, param_views=views(param), grad=grad, grad_views=views(grad),
                          exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, steps=steps, step_values=steps.numpy(),
                          state_views=state_views, steps_version=steps._version)

    @staticmethod
    def _update(group: dict, flat: _FlatGroup) -> None:
        """One Adam step over the group's elements, in torch's operations and order (``_multi_tensor_adam``)."""
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]
        # the parameters and gradients gathered each step: a write through .data moves no version counter
        torch._foreach_copy_(flat.param_views, list(flat.params))
        torch._foreach_copy_(flat.grad_views, [p.grad for p in flat.params])
        grad = flat.grad
        flat.step_values += np.float32(1.0)  # (torch's float32 increment; numpy's call is cheaper)
        step = float(flat.step_values[0])
        flat.exp_avg.lerp_(grad, 1 - beta1)
        flat.exp_avg_sq.mul_(beta2)
        flat.exp_avg_sq.addcmul_(grad, grad, value=1 - beta2)
        step_size = (lr / (1 - beta1**step)) * -1
        denominator = flat.exp_avg_sq.sqrt()
        denominator.div_((1 - beta2**step) ** 0.5)
        denominator.add_(eps)
        flat.param.addcdiv_(flat.exp_avg, denominator, value=step_size)
        torch._foreach_copy_(list(flat.params), flat.param_views)


def clip_gradient_norm(parameters: list[torch.nn.Parameter], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_(parameters, max_norm)``, bit for bit, at about half its cost where every
    gradient is a float32 CPU tensor: its foreach norms, then torch's coefficient and multiply only where the norm
    is not clearly below ``max_norm`` (below, torch multiplies by the clamped coefficient 1.0, which changes no bit);
    anything else goes to torch's function."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or any(g.dtype is not torch.float32 or not g.is_cpu for g in grads):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    if float(total) + 1e-6 < CLEARLY_BELOW * max_norm:  # torch's coefficient max_norm / (total + 1e-6) exceeds 1
        return
    coefficient = float(max_norm) / (total + 1e-6)
    if not coefficient >= 1.0:  # (NaN too: as torch, the gradients are multiplied by it)
        torch._foreach_mul_(grads, torch.clamp(coefficient, max=1.0))
