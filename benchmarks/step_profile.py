"""Where a gradient step's time goes: SB3's DQN against RIVC's update, part by part, in one process.

    python benchmarks/step_profile.py            # RIVC's defaults (64x64, batch 64) and the Zoo's CartPole settings

Each agent warms up on CartPole-v1, then its update's parts are timed over ``--steps`` gradient steps on replay
batches: the replay sample, the target network's pass (RIVC's over s' and s, exact), the target values, the
online pass with the loss and its gradients, gradient clipping and Adam. RIVC's update runs two ways: "through
autograd" (``smooth_l1_loss(...).backward()`` on the fused surrogate, the update until 2026-12-05, with the target
network called as a module and its Q-values as tensors, the target until 2026-12-07), and as the agent runs it
(``QuantizedQNetwork.values`` and ``RIVC.target_of_values``, ``QuantizedQNetwork.huber_loss_backward``, the same
gradients without autograd's graph, and ``clip_gradient_norm``, torch's clipping without its general path's
overhead). The agents are timed in turn, ``--rounds`` times; the table shows the last round (wall-clock times:
compare within a run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from stable_baselines3 import DQN  # noqa: E402

from benchmarks.bench_train import SHARED  # noqa: E402
from benchmarks.common import print_table  # noqa: E402
from rivc.agents import RIVC  # noqa: E402
from rivc.agents.rivc_agent import clip_gradient_norm  # noqa: E402
from rivc.targets import gap_increasing_target  # noqa: E402

PARTS = ("replay sample", "target network", "target values", "online pass, loss and gradients", "gradient clipping",
         "Adam")


def profile(agent: str, kwargs: dict, steps: int) -> dict[str, float]:
    """Milliseconds per gradient step of each part (``agent``: "dqn", "rivc-autograd" or "rivc")."""
    model = (DQN if agent == "dqn" else RIVC)("MlpPolicy", "CartPole-v1", seed=0, **kwargs)
    model.learn(kwargs["learning_starts"] + 100)
    parameters = list(model.policy.q_net.parameters())
    totals = dict.fromkeys(PARTS, 0.0)
    for step in range(steps + 50):  # the first 50 warm the caches
        times = [time.perf_counter()]
        data = model.replay_buffer.sample(kwargs["batch_size"])
        times.append(time.perf_counter())
        with torch.no_grad():
            if agent == "dqn":
                q_next = model.q_net_target(data.next_observations)
                times.append(time.perf_counter())
                target = data.rewards + (1 - data.dones) * model.gamma * q_next.max(dim=1)[0].reshape(-1, 1)
            elif agent == "rivc-autograd":  # the target network's module and tensors around the exact pass
                q_next, q_current = model.q_net_target(
                    torch.cat([data.next_observations, data.observations])).split(len(data.actions))
                times.append(time.perf_counter())
                target = gap_increasing_target(q_next, q_current, data.actions, data.rewards, data.dones, model.gamma,
                                               model.alpha, model.beta, model.operator, model.gap_clip)
            else:  # RIVC.td_target's two parts: the exact pass's numpy values, the target in numpy
                q = model.q_net_target.net.values(torch.cat([data.next_observations, data.observations]))
                times.append(time.perf_counter())
                target = torch.from_numpy(model.target_of_values(q, data.actions, data.rewards, data.dones))
        times.append(time.perf_counter())
        if agent == "rivc":
            model.q_network.huber_loss_backward(data.observations, data.actions, target)
        else:
            q_taken = model.q_net(data.observations).gather(1, data.actions.long())
            loss = F.smooth_l1_loss(q_taken.squeeze(1) if agent != "dqn" else q_taken, target)
            model.policy.optimizer.zero_grad()
            loss.backward()
        times.append(time.perf_counter())
        (clip_gradient_norm if agent == "rivc" else torch.nn.utils.clip_grad_norm_)(parameters, model.max_grad_norm)
        times.append(time.perf_counter())
        model.policy.optimizer.step()
        times.append(time.perf_counter())
        if step >= 50:
            for part, start, end in zip(PARTS, times, times[1:]):
                totals[part] += end - start
    return {part: 1e3 * total / steps for part, total in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from rivc.agents.hyperparams import zoo_hyperparams

    zoo = dict(zoo_hyperparams("CartPole-v1").kwargs, learning_starts=1_000)
    agents = ("dqn", "rivc-autograd", "rivc")
    for name, kwargs in (("RIVC's defaults (64x64, batch 64, train_freq 4)", dict(SHARED)),
                         ("the Zoo's CartPole settings (256x256, batch 64)", zoo)):
        for _ in range(args.rounds):
            results = {agent: profile(agent, kwargs, args.steps) for agent in agents}
        rows = [[part, *(results[agent][part] for agent in agents)] for part in PARTS]
        rows.append(["total", *(sum(results[agent].values()) for agent in agents)])
        print_table(f"ms per gradient step, CartPole-v1, {name}, {args.steps} steps (the last of {args.rounds} rounds)",
                    ["part", "SB3 DQN", "RIVC through autograd", "RIVC"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
