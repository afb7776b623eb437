import math

import pytest
import torch

from rivc.targets import gap_increasing_target, soft_max_operator


def test_logsumexp_operator_by_hand():
    q = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    expected = [math.log((math.exp(0.5) + math.exp(1.0)) / 2) / 0.5, 0.0]
    assert soft_max_operator(q, beta=0.5).tolist() == pytest.approx(expected)


def test_boltzmann_operator_by_hand():
    q = torch.tensor([[1.0, 2.0]])
    w = [math.exp(1.0), math.exp(2.0)]
    expected = (w[0] * 1.0 + w[1] * 2.0) / sum(w)
    assert soft_max_operator(q, beta=1.0, operator="boltzmann").item() == pytest.approx(expected)


@pytest.mark.parametrize("operator", ["logsumexp", "boltzmann"])
def test_operators_are_stable_for_large_values(operator):
    q = torch.tensor([[1000.0, 1001.0, 999.0]])
    value = soft_max_operator(q, beta=50.0, operator=operator)
    assert torch.isfinite(value).all() and 999.0 < value.item() <= 1001.0


def test_gap_increasing_target_by_hand():
    q_next = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    q_now = torch.tensor([[0.5, 1.5], [4.0, 2.0]])
    actions = torch.tensor([[1], [1]])
    rewards = torch.tensor([[1.0], [0.0]])
    dones = torch.tensor([[0.0], [1.0]])
    gamma, alpha, beta = 0.9, 0.8, 2.0

    def m(row):
        return math.log(sum(math.exp(beta * v) for v in row) / len(row)) / beta

    expected = [
        1.0 + gamma * m([1.0, 3.0]) + alpha * (1.5 - m([0.5, 1.5])),
        0.0 + 0.0 + alpha * (2.0 - m([4.0, 2.0])),  # terminal: no bootstrap
    ]
    target = gap_increasing_target(q_next, q_now, actions, rewards, dones, gamma, alpha, beta)
    assert target.tolist() == pytest.approx(expected)


def test_alpha_zero_and_large_beta_is_the_dqn_target():
    torch.manual_seed(0)
    q_next, q_now = torch.randn(16, 4), torch.randn(16, 4)
    actions, rewards = torch.randint(0, 4, (16, 1)), torch.randn(16, 1)
    dones = (torch.rand(16, 1) < 0.3).float()
    dqn = rewards.squeeze(1) + 0.99 * (1 - dones.squeeze(1)) * q_next.max(dim=1).values
    for operator in ("logsumexp", "boltzmann"):
        soft = gap_increasing_target(q_next, q_now, actions, rewards, dones, 0.99, 0.0, 1e4, operator)
        assert torch.allclose(soft, dqn, atol=1e-3)
    exact = gap_increasing_target(q_next, None, actions, rewards, dones, 0.99, 0.0, 1.0, "max")
    assert torch.allclose(exact, dqn)


def test_unknown_operator():
    with pytest.raises(ValueError, match="unknown operator 'softer'"):
        soft_max_operator(torch.zeros(1, 2), 1.0, "softer")


def test_targets_keep_the_tensors_dtype_whatever_the_scalars():
    # computed in numpy: a numpy float64 gamma must not widen a float32 target (the loss stays float32)
    import numpy as np

    q = torch.randn(8, 3)
    actions, rewards, dones = torch.randint(0, 3, (8, 1)), torch.randn(8, 1), torch.zeros(8, 1)
    target = gap_increasing_target(q, q, actions, rewards, dones, np.float64(0.99), np.float64(0.9), np.float64(10.0))
    assert target.dtype == torch.float32 and target.shape == (8,)


def test_the_gap_clip_bounds_the_gap_term_below_as_munchausen_dqn():
    """M-DQN's term, alpha * clip(tau * log pi(a|s), l0, 0) with pi = softmax(Q / tau), tau = 1 / beta, computed here
    from torch's log_softmax: the normalised log-sum-exp puts RIVC's gap term at tau * log pi + tau * log|A|."""
    torch.manual_seed(0)
    q_next, q_now = 30 * torch.randn(64, 3), 30 * torch.randn(64, 3)
    actions, rewards, dones = torch.randint(0, 3, (64, 1)), torch.randn(64, 1), torch.zeros(64, 1)
    gamma, alpha, beta, l0 = 0.99, 0.9, 0.1, -1.0
    tau_log_pi = torch.log_softmax(beta * q_now, dim=1).gather(1, actions).squeeze(1) / beta
    gap = tau_log_pi + math.log(3) / beta
    assert (gap < l0).any() and (gap > l0).any()  # both sides of the bound are tried
    base = gap_increasing_target(q_next, q_now, actions, rewards, dones, gamma, 0.0, beta)
    clipped = gap_increasing_target(q_next, q_now, actions, rewards, dones, gamma, alpha, beta, gap_clip=l0)
    assert torch.allclose(clipped - base, alpha * gap.clamp_min(l0), atol=1e-4)
    unclipped = gap_increasing_target(q_next, q_now, actions, rewards, dones, gamma, alpha, beta)
    assert torch.allclose(unclipped - base, alpha * gap, atol=1e-4)
