"""Where a gradient step's time goes: SB3's DQN against RIVC's update, part by part, in one process.

    python benchmarks/step_profile.py            # RIVC's defaults (64x64, batch 64) and the Zoo's CartPole and
                                                 # LunarLander settings (256x256), all on CartPole-v1

Each agent warms up on CartPole-v1, then its update's parts are timed over ``--steps`` gradient steps on replay
batches, in update cycles of the settings' gradient steps: the replay sample, the target network's pass (RIVC's
over s' and s, exact, one pass over the cycle's batches as ``RIVC.td_targets`` makes it for these settings), the
target values, the online pass with the loss and its gradients, gradient clipping and Adam. RIVC's update runs two
ways: "through autograd" (``smooth_l1_loss(...).backward()`` on the fused surrogate, the update until 2026-12-05,
with the target network called as a module on each batch and its Q-values as tensors, the target until 2026-12-07),
and as the agent runs it (``RIVC.td_targets``: ``QuantizedQNetwork.values`` over the cycle's rows and
``RIVC.target_of_values``; ``QuantizedQNetwork.huber_loss_backward``, the same gradients without autograd's graph;
``clip_gradient_norm``, torch's clipping without its general path's overhead; and the policy's ``FlatAdam``, torch's
Adam in one operation per group; both RIVC rows step it). The agents are timed in turn,
``--rounds`` times; the table shows the last round (wall-clock times: compare within a run).
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
from rivc.agents.optim import clip_gradient_norm  # noqa: E402
from rivc.agents.rivc_agent import transitions  # noqa: E402
from rivc.targets import gap_increasing_target  # noqa: E402

PARTS = ("replay sample", "target network", "target values", "online pass, loss and gradients", "gradient clipping",
         "Adam")


def cycle_steps(kwargs: dict) -> int:
    """Gradient steps per ``train`` call of these settings (SB3's ``gradient_steps=-1``: as many as ``train_freq``)."""
    return kwargs["train_freq"] if kwargs["gradient_steps"] < 0 else kwargs["gradient_steps"]


def profile(agent: str, kwargs: dict, steps: int) -> dict[str, float]:
    """Milliseconds per gradient step of each part (``agent``: "dqn", "rivc-autograd" or "rivc"), over update cycles
    of the settings' gradient steps: RIVC samples a cycle's batches first and its target network makes one pass over
    their rows (``RIVC.td_targets``); DQN and RIVC through autograd take a batch's target at each step."""
    model = (DQN if agent == "dqn" else RIVC)("MlpPolicy", "CartPole-v1", seed=0, **kwargs)
    model.learn(kwargs["learning_starts"] + 100)
    parameters = list(model.policy.q_net.parameters())
    totals, counted_steps = dict.fromkeys(PARTS, 0.0), 0
    per_cycle = cycle_steps(kwargs)
    warm_cycles = -(-50 // per_cycle)  # the first 50 steps (at least a cycle) warm the caches
    for cycle in range(warm_cycles + max(1, -(-steps // per_cycle))):  # whole cycles: at least ``steps``
        counted = cycle >= warm_cycles
        start = time.perf_counter()
        batches = [model.replay_buffer.sample(kwargs["batch_size"]) for _ in range(per_cycle)]
        cycle_parts = {"replay sample": time.perf_counter() - start}
        if agent == "rivc":  # RIVC.td_targets' two parts (its merged pass): the exact values, the target in numpy
            start = time.perf_counter()
            observations, actions, rewards, next_observations, dones = transitions(*batches)
            q = model.q_net_target.net.values(model.target_rows(observations, next_observations))
            middle = time.perf_counter()
            targets = torch.from_numpy(model.target_of_values(q, actions, rewards, dones)).split(
                [len(b.actions) for b in batches])
            cycle_parts.update({"target network": middle - start, "target values": time.perf_counter() - middle})
        for i, data in enumerate(batches):
            times = [time.perf_counter()]
            if agent != "rivc":
                with torch.no_grad():
                    if agent == "dqn":
                        q_next = model.q_net_target(data.next_observations)
                        times.append(time.perf_counter())
                        target = data.rewards + (1 - data.dones) * model.gamma * q_next.max(dim=1)[0].reshape(-1, 1)
                    else:  # the target network's module and tensors around the exact pass, a batch at a time
                        q_next, q_current = model.q_net_target(
                            torch.cat([data.next_observations, data.observations])).split(len(data.actions))
                        times.append(time.perf_counter())
                        target = gap_increasing_target(q_next, q_current, data.actions, data.rewards, data.dones,
                                                       model.gamma, model.alpha, model.beta, model.operator,
                                                       model.gap_clip)
                times.append(time.perf_counter())
                q_taken = model.q_net(data.observations).gather(1, data.actions.long())
                loss = F.smooth_l1_loss(q_taken.squeeze(1) if agent != "dqn" else q_taken, target)
                model.policy.optimizer.zero_grad()
                loss.backward()
            else:
                model.q_network.huber_loss_backward(data.observations, data.actions, targets[i])
            times.append(time.perf_counter())
            (clip_gradient_norm if agent == "rivc" else torch.nn.utils.clip_grad_norm_)(parameters, model.max_grad_norm)
            times.append(time.perf_counter())
            model.policy.optimizer.step()
            times.append(time.perf_counter())
            parts = PARTS[1:] if agent != "rivc" else PARTS[3:]
            for part, begin, end in zip(parts, times, times[1:]):
                cycle_parts[part] = cycle_parts.get(part, 0.0) + end - begin
        if counted:
            counted_steps += per_cycle
            for part, seconds in cycle_parts.items():
                totals[part] += seconds
    return {part: 1e3 * total / counted_steps for part, total in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--zoo", nargs="*", default=["CartPole-v1", "LunarLander-v3"],
                        help="tasks whose RL Zoo settings are profiled too (run on CartPole-v1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from rivc.agents.hyperparams import zoo_hyperparams

    agents = ("dqn", "rivc-autograd", "rivc")
    settings = [("RIVC's defaults (64x64, batch 64, train_freq 4)", dict(SHARED))]
    for task in args.zoo:
        zoo = dict(zoo_hyperparams(task).kwargs, learning_starts=1_000)
        settings.append((f"the Zoo's {task.split('-')[0]} settings ({'x'.join(map(str, zoo['policy_kwargs']['net_arch']))}, "
                         f"batch {zoo['batch_size']}, {cycle_steps(zoo)} gradient steps a cycle)", zoo))
    for name, kwargs in settings:
        for _ in range(args.rounds):
            results = {agent: profile(agent, kwargs, args.steps) for agent in agents}
        rows = [[part, *(results[agent][part] for agent in agents)] for part in PARTS]
        rows.append(["total", *(sum(results[agent].values()) for agent in agents)])
        print_table(f"ms per gradient step, CartPole-v1, {name}, {args.steps} steps or more in whole cycles (the last of "
                    f"{args.rounds} rounds)",
                    ["part", "SB3 DQN", "RIVC through autograd", "RIVC"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
