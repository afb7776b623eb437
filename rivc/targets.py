"""The gap-increasing value target of RIVC (docs/DESIGN.md, "The update").

    y = r + gamma * (1 - done) * m_beta Psi_bar(s')  +  alpha * (Psi_bar(s, a) - m_beta Psi_bar(s))

``m_beta`` is a soft maximum over actions: the normalised log-sum-exp (Conservative Value
Iteration, the default) or the Boltzmann-weighted mean; ``"max"`` with ``alpha = 0`` is DQN.

Targets carry no gradient, so they are computed in numpy (a few ``[B, A]`` arrays: numpy's per-call
cost is a fraction of torch's); torch tensors in give a tensor out, of their dtype and on their device.
"""

from __future__ import annotations

import numpy as np
import torch

OPERATORS = ("logsumexp", "boltzmann", "max")


def soft_max_operator(q: np.ndarray | torch.Tensor, beta: float, operator: str = "logsumexp") -> np.ndarray | torch.Tensor:
    """``m_beta q`` over the last axis, numerically stable for any ``beta * q`` (max subtracted)."""
    if torch.is_tensor(q):
        return _as_tensor_like(soft_max_operator(_array(q), beta, operator), q)
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; use one of {', '.join(OPERATORS)}")
    top = np.maximum.reduce(q, axis=-1, keepdims=True)  # (q.max and .sum, without their method wrappers)
    if operator == "max":
        return top[..., 0]
    weights = np.exp(beta * (q - top))  # the largest is 1: no overflow
    if operator == "logsumexp":  # (1/beta) log((1/|A|) sum exp(beta q))
        return top[..., 0] + np.log(np.add.reduce(weights, axis=-1) / q.shape[-1]) / beta
    return np.add.reduce(weights * q, axis=-1) / np.add.reduce(weights, axis=-1)  # boltzmann


def gap_increasing_target(
    q_target_next: np.ndarray | torch.Tensor,
    q_target_current: np.ndarray | torch.Tensor | None,
    actions: np.ndarray | torch.Tensor,
    rewards: np.ndarray | torch.Tensor,
    dones: np.ndarray | torch.Tensor,
    gamma: float | np.ndarray,
    alpha: float,
    beta: float,
    operator: str = "logsumexp",
    gap_clip: float | None = None,
) -> np.ndarray | torch.Tensor:
    """Targets ``[B]`` from the target network's Q-values at ``s'`` and ``s`` (each ``[B, A]``).

    ``actions``, ``rewards`` and ``dones`` are ``[B]`` (or ``[B, 1]``) arrays or tensors; ``gamma`` the discount, or one
    per transition ``[B]`` (n-step returns: ``gamma**k`` after ``k`` rewards, numpy). ``gap_clip``: a lower
    bound ``l0 < 0`` on the gap term ``Psi_bar(s, a) - m_beta Psi_bar(s)``, as Munchausen-DQN clips its scaled
    log-policy to ``[l0, 0]`` (the term's upper bound, ``log|A| / beta`` for the log-sum-exp, holds by itself):
    unclipped, the term grows with the reward scale; ``None``: unclipped.
    """
    if torch.is_tensor(q_target_next):
        arrays = [None if x is None else _array(x) for x in (q_target_next, q_target_current, actions, rewards, dones)]
        return _as_tensor_like(gap_increasing_target(*arrays, gamma, alpha, beta, operator, gap_clip), q_target_next)
    rewards, dones = rewards.reshape(-1), dones.reshape(-1)
    target = rewards + gamma * (1.0 - dones) * soft_max_operator(q_target_next, beta, operator)
    if alpha != 0.0:
        q_taken = q_target_current[np.arange(len(q_target_current)), actions.reshape(-1).astype(np.intp)]
        gap = q_taken - soft_max_operator(q_target_current, beta, operator)
        target = target + alpha * (gap if gap_clip is None else np.maximum(gap, gap_clip))
    return target


def _array(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _as_tensor_like(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``array`` as a tensor of ``like``'s dtype (numpy scalars may have widened it) and device."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(like.device, like.dtype)
