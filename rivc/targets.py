"""The gap-increasing value target of RIVC (DESIGN.md, "The update").

    y = r + gamma * (1 - done) * m_beta Psi_bar(s')  +  alpha * (Psi_bar(s, a) - m_beta Psi_bar(s))

``m_beta`` is a soft maximum over actions: the normalised log-sum-exp (Conservative Value
Iteration, the default) or the Boltzmann-weighted mean; ``"max"`` with ``alpha = 0`` is DQN.
"""

from __future__ import annotations

import math

import torch

OPERATORS = ("logsumexp", "boltzmann", "max")


def soft_max_operator(q: torch.Tensor, beta: float, operator: str = "logsumexp") -> torch.Tensor:
    """``m_beta q`` over the last axis, numerically stable for any ``beta * q`` (max subtracted)."""
    if operator == "max":
        return q.max(dim=-1).values
    if operator == "logsumexp":
        # (1/beta) log((1/|A|) sum exp(beta q)); torch.logsumexp subtracts the max internally
        return (torch.logsumexp(beta * q, dim=-1) - math.log(q.shape[-1])) / beta
    if operator == "boltzmann":
        return (torch.softmax(beta * q, dim=-1) * q).sum(dim=-1)
    raise ValueError(f"unknown operator {operator!r}; use one of {', '.join(OPERATORS)}")


def gap_increasing_target(
    q_target_next: torch.Tensor,
    q_target_current: torch.Tensor | None,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    alpha: float,
    beta: float,
    operator: str = "logsumexp",
) -> torch.Tensor:
    """Targets ``[B]`` from the target network's Q-values at ``s'`` and ``s`` (each ``[B, A]``).

    ``actions``, ``rewards`` and ``dones`` are ``[B]`` (or ``[B, 1]``) tensors.
    """
    rewards, dones = rewards.reshape(-1), dones.reshape(-1)
    target = rewards + gamma * (1.0 - dones) * soft_max_operator(q_target_next, beta, operator)
    if alpha != 0.0:
        q_taken = q_target_current.gather(1, actions.reshape(-1, 1).long()).squeeze(1)
        target = target + alpha * (q_taken - soft_max_operator(q_target_current, beta, operator))
    return target
