"""The update's optimizer and replay buffer: torch's Adam and SB3's ReplayBuffer, bit for bit, at less cost."""

import io

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer

from rivc.agents import RIVC
from rivc.agents.optim import FlatAdam
from rivc.agents.replay import FreshSampleReplayBuffer

SHAPES = [(64, 4), (64,), (64, 64), (64,), (3, 64), (3,), (), (5, 7), (17,)]  # a Q-network's, clips, odd sizes


def _parameters(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in SHAPES]


def _gradients(step: int, parameters: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=generator) * 10.0 ** (step % 9 - 6) for p in parameters]  # 1e-6 .. 1e2


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("foreach", [True, False])
def test_flat_adam_is_torchs_adam_bit_for_bit(foreach):
    """Through what the agent and users do between steps: the learning rate changed, a state_dict round trip, a
    parameter and a moment written in place (the agent's input range and reward scale moves), a step with a missing
    gradient (torch's step, on the same state), and a state that differs per parameter after it."""
    ours, torchs = _parameters(), _parameters()
    flat, adam = FlatAdam(ours, lr=1e-3, foreach=foreach), torch.optim.Adam(torchs, lr=1e-3, foreach=foreach)
    for step in range(1, 161):
        gradients = _gradients(step, ours)
        for p, q, g in zip(ours, torchs, gradients):
            p.grad, q.grad = g.clone(), g.clone()
        if step == 100:  # a missing gradient: that parameter's step count falls behind
            ours[3].grad = torchs[3].grad = None
        flat.step()
        adam.step()
        assert _equal(ours, torchs), f"step {step}"
        assert _equal([s["exp_avg_sq"] for s in flat.state.values()], [s["exp_avg_sq"] for s in adam.state.values()])
        if step == 20:
            for optimizer in (flat, adam):
                optimizer.param_groups[0]["lr"] = 3e-4
        if step == 40:  # through a file: fresh tensors, gathered again
            saved = io.BytesIO()
            torch.save(flat.state_dict(), saved)
            flat.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
            assert all(s["exp_avg"].untyped_storage().data_ptr() != flat._flat[0].exp_avg.untyped_storage().data_ptr()
                       for s in flat.state.values()) if flat._flat else True
        if step == 60:
            with torch.no_grad():
                for params in (ours, torchs):
                    params[2].mul_(0.5)
        if step == 80:
            for optimizer, params in ((flat, ours), (adam, torchs)):
                optimizer.state[params[4]]["exp_avg"].div_(3.0)
        if step == 50:
            assert flat._flat[0] is not None and flat._flat[0].params == tuple(ours)  # the flat path ran
        if step == 150:  # step counts differ since step 100: torch's step runs them
            assert flat._flat[0] is None
    assert [float(s["step"]) for s in flat.state.values()] == [float(s["step"]) for s in adam.state.values()]


def test_flat_adam_updates_the_parameters_with_gradients():
    """A parameter that never has a gradient (a tracked clip) is left as torch leaves it; the others run flat."""
    ours, torchs = _parameters(), _parameters()
    for params in (ours, torchs):
        params[-1].requires_grad_(False)
    flat, adam = FlatAdam(ours, lr=1e-3), torch.optim.Adam(torchs, lr=1e-3)
    for step in range(1, 21):
        for p, q, g in zip(ours[:-1], torchs[:-1], _gradients(step, ours)):
            p.grad, q.grad = g.clone(), g.clone()
        flat.step()
        adam.step()
        assert _equal(ours, torchs)
    assert flat._flat[0].params == tuple(ours[:-1]) and ours[-1] not in flat.state and torchs[-1] not in adam.state


def test_flat_adam_state_is_adams():
    """Its state_dict loads into torch's Adam (and the reverse), which goes on bit for bit; its moments are views of
    its flat buffers."""
    ours, torchs = _parameters(), _parameters()
    flat = FlatAdam(ours, lr=1e-3)
    for step in range(1, 11):
        for p, g in zip(ours, _gradients(step, ours)):
            p.grad = g
        flat.step()
    buffers = flat._flat[0]
    assert all(s["exp_avg"].untyped_storage().data_ptr() == buffers.exp_avg.untyped_storage().data_ptr()
               for s in flat.state.values())
    with torch.no_grad():
        for p, q in zip(torchs, ours):
            p.copy_(q)
    adam = torch.optim.Adam(torchs, lr=1e-3)
    adam.load_state_dict(flat.state_dict())
    back = FlatAdam(ours, lr=1e-3)
    back.load_state_dict(adam.state_dict())
    for step in range(11, 21):
        for p, q, g in zip(ours, torchs, _gradients(step, ours)):
            p.grad, q.grad = g.clone(), g.clone()
        back.step()
        adam.step()
        assert _equal(ours, torchs)
    assert back._flat[0] is not None


@pytest.mark.parametrize("options", [dict(amsgrad=True), dict(weight_decay=0.01), dict(maximize=True),
                                     dict(weight_decay=0.01, decoupled_weight_decay=True)])
def test_flat_adam_leaves_other_options_to_torch(options):
    ours, torchs = _parameters(), _parameters()
    flat, adam = FlatAdam(ours, lr=1e-3, **options), torch.optim.Adam(torchs, lr=1e-3, **options)
    for step in range(1, 6):
        for p, q, g in zip(ours, torchs, _gradients(step, ours)):
            p.grad, q.grad = g.clone(), g.clone()
        flat.step()
        adam.step()
    assert _equal(ours, torchs) and not any(flat._flat)  # no flat layout was made


@pytest.mark.parametrize("write", ["data in place", "data assigned", "vector_to_parameters", "numpy"])
def test_flat_adam_steps_from_the_parameters_as_they_are(write):
    """Writes that move no version counter (through .data, numpy, torch's vector_to_parameters) are kept: the step
    starts from the parameters, not from its own copy."""
    ours, torchs = _parameters(), _parameters()
    flat, adam = FlatAdam(ours, lr=1e-3), torch.optim.Adam(torchs, lr=1e-3)
    for step in range(1, 7):
        for p, q, g in zip(ours, torchs, _gradients(step, ours)):
            p.grad, q.grad = g.clone(), g.clone()
        flat.step()
        adam.step()
        if step == 3:
            for params in (ours, torchs):
                if write == "data in place":
                    params[2].data.mul_(0.5)
                elif write == "data assigned":
                    params[2].data = torch.full_like(params[2], 0.25)
                elif write == "vector_to_parameters":
                    torch.nn.utils.vector_to_parameters(torch.arange(sum(p.numel() for p in params)) / 1e4, params)
                else:
                    params[2].detach().numpy()[:] = 0.125
        assert _equal(ours, torchs), f"step {step}"
    assert flat._flat[0] is not None


def test_flat_adams_hooks_run_once():
    """Torch wraps Adam's step with its hooks once an Adam exists; FlatAdam's own step, wrapped too, runs them once
    also where it takes torch's step (here amsgrad)."""
    torch.optim.Adam(_parameters(), lr=1e-3)
    for options in ({}, {"amsgrad": True}):
        params = _parameters()
        flat = FlatAdam(params, lr=1e-3, **options)
        calls = []
        flat.register_step_post_hook(lambda *args: calls.append(1))
        for p, g in zip(params, _gradients(1, params)):
            p.grad = g
        flat.step()
        assert calls == [1], options


def test_flat_adam_closure_and_float64():
    params = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64))]
    flat = FlatAdam(params, lr=0.1)
    params[0].grad = torch.ones(3, dtype=torch.float64)
    flat.step()  # float64: torch's step
    assert torch.allclose(params[0], torch.full((3,), 0.9, dtype=torch.float64)) and not any(flat._flat)

    def closure():
        params[0].grad = torch.ones(3, dtype=torch.float64)
        return 1.5

    assert flat.step(closure) == 1.5


def test_the_agent_trains_with_flat_adam_and_fresh_samples():
    model = RIVC("MlpPolicy", "CartPole-v1", learning_starts=100, seed=0)
    model.learn(200)
    assert isinstance(model.policy.optimizer, FlatAdam) and model.policy.optimizer._flat[0] is not None
    assert type(model.replay_buffer) is FreshSampleReplayBuffer
    assert type(RIVC("MlpPolicy", "CartPole-v1", n_steps=3, learning_starts=100).replay_buffer) is NStepReplayBuffer


def _filled(buffer_class: type[ReplayBuffer], optimize_memory_usage: bool = False) -> ReplayBuffer:
    space = spaces.Box(-1.0, 1.0, (4,), np.float32)
    buffer = buffer_class(300, space, spaces.Discrete(3), device="cpu", n_envs=2,
                          optimize_memory_usage=optimize_memory_usage, handle_timeout_termination=False)
    rng = np.random.default_rng(0)
    for _ in range(400):  # past the buffer's size: it wraps
        buffer.add(rng.random((2, 4), np.float32), rng.random((2, 4), np.float32), rng.integers(0, 3, (2, 1)),
                   rng.random(2, np.float32), rng.random(2) < 0.1, [{}, {}])
    return buffer


def test_the_agents_training_is_the_same_with_torchs_adam():
    """The default optimizer (FlatAdam) against torch's Adam (multi-tensor, the default before it): the same trained
    weights, through the reward scale's measurement and the input range's moves, which write Adam's state in place."""
    states = []
    for optimizer in (FlatAdam, torch.optim.Adam):
        model = RIVC("MlpPolicy", "CartPole-v1", seed=1, learning_starts=200, target_update_interval=100,
                     calibration=dict(track_every=50), policy_kwargs=dict(optimizer_class=optimizer))
        model.learn(1500)
        assert type(model.policy.optimizer) is optimizer and model.input_range_moves > 0 and model.reward_scale
        states.append(model.policy.state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


@pytest.mark.parametrize("optimize_memory_usage", [False, True])
def test_fresh_samples_are_sb3s_and_own_their_memory(optimize_memory_usage):
    ours, sb3s = _filled(FreshSampleReplayBuffer, optimize_memory_usage), _filled(ReplayBuffer, optimize_memory_usage)
    np.random.seed(5)
    sample = ours.sample(64)
    np.random.seed(5)
    expected = sb3s.sample(64)
    for name in ("observations", "actions", "next_observations", "dones", "rewards"):
        ours_field, sb3_field = getattr(sample, name), getattr(expected, name)
        assert ours_field.dtype == sb3_field.dtype and torch.equal(ours_field, sb3_field), name
        for array in (ours.observations, getattr(ours, "next_observations", None), ours.actions, ours.rewards, ours.dones):
            assert not np.shares_memory(ours_field.numpy(), array), name  # a write to one leaves the other
    assert not np.shares_memory(ours.to_torch(ours.observations[:5]).numpy(), ours.observations)  # (others: copied)
