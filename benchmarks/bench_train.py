"""Training throughput: environment steps per second of RIVC (conversion after every update,
the SNN acting) against Stable-Baselines3's DQN on the same env and hyperparameters, same run: RIVC's
defaults, and the RL Zoo's CartPole and LunarLander settings (256x256) where rl_zoo3 is installed. RIVC's Adam is
``rivc.agents.optim.FlatAdam`` (torch's Adam, the same bits, its operations once over all the parameters); the peer
is measured with torch's single-tensor Adam (its default on the CPU) and multi-tensor one (``foreach``). The headline
pair (DQN and RIVC's defaults) is timed in turn three times: the ratio is the median of the rounds'.

    python benchmarks/bench_train.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from stable_baselines3 import DQN

from rivc.agents import RIVC
from benchmarks.common import print_table

FOREACH = dict(policy_kwargs=dict(optimizer_kwargs=dict(foreach=True)))

SHARED = dict(learning_rate=1e-3, buffer_size=50_000, learning_starts=1_000, batch_size=64, gamma=0.99,
              train_freq=4, gradient_steps=1, target_update_interval=500, exploration_fraction=0.2,
              exploration_final_eps=0.02, max_grad_norm=10.0, device="cpu")


def steps_per_second(make_model, timesteps: int) -> float:
    model = make_model()
    start = time.perf_counter()
    model.learn(timesteps)
    return timesteps / (time.perf_counter() - start)


def paired_speeds(make_peer, make_agent, timesteps: int, rounds: int = 3) -> tuple[float, float, float]:
    """``(peer steps/s, agent steps/s, ratio)``: the two timed in turn, ``rounds`` times, medians (the ratio
    is the median of each round's): a shared machine's slow minute then falls on both, not on one."""
    pairs = [(steps_per_second(make_peer, timesteps), steps_per_second(make_agent, timesteps)) for _ in range(rounds)]
    peer, agent = zip(*pairs)
    return statistics.median(peer), statistics.median(agent), statistics.median(a / p for p, a in pairs)


def main(env_id: str = "CartPole-v1", timesteps: int = 10_000) -> None:
    dqn, rivc, ratio = paired_speeds(lambda: DQN("MlpPolicy", env_id, seed=0, **SHARED),
                                     lambda: RIVC("MlpPolicy", env_id, seed=0, **SHARED), timesteps)
    runs = {  # each once, against the paired rounds' median DQN (and a foreach-Adam DQN)
        "SB3 DQN, foreach Adam": lambda: DQN("MlpPolicy", env_id, seed=0, **FOREACH, **SHARED),
        "RIVC, target akida, conversion error on every conversion": lambda: RIVC(
            "MlpPolicy", env_id, seed=0, conversion={"eval_every": 1}, **SHARED),
        "RIVC, target akd1000, snntorch emulation": lambda: RIVC("MlpPolicy", env_id, seed=0, target="akd1000", **SHARED),
        "RIVC, target rate, snntorch synchronous": lambda: RIVC("MlpPolicy", env_id, seed=0, target="rate", **SHARED),
        "RIVC, target akida, akida engine acting": lambda: RIVC("MlpPolicy", env_id, seed=0, backend="akida", **SHARED),
        "RIVC variant naive (PTQ each conversion)": lambda: RIVC("MlpPolicy", env_id, seed=0, variant="naive", **SHARED),
        "RIVC variant fpnn (no conversion)": lambda: RIVC("MlpPolicy", env_id, seed=0, variant="fpnn", **SHARED),
    }
    results = {name: steps_per_second(make, timesteps) for name, make in runs.items()}
    foreach = results["SB3 DQN, foreach Adam"]
    rows = [["SB3 DQN (float MLP 64x64), median of 3", dqn, 1.0, dqn / foreach],
            ["RIVC, target akida, snntorch emulation (defaults), median of 3", rivc, ratio, rivc / foreach]]
    rows += [[name, sps, sps / dqn, sps / foreach] for name, sps in results.items()]
    print_table(f"Training throughput on {env_id}, {timesteps} steps, RIVC's settings (train_freq 4): DQN and RIVC's "
                "defaults timed in turn 3 times (median ratio; target >= 1.0x), the others once",
                ["agent", "env steps/s", "x SB3 DQN", "x DQN foreach"], rows)
    zoo_settings(env_id, timesteps)
    busy_machine(env_id)


ZOO_TASKS = ("CartPole-v1", "LunarLander-v3")  # whose RL Zoo settings are timed (on env_id: the update's cost)


def zoo_settings(env_id: str, timesteps: int) -> None:
    """The same comparison on each Zoo task's settings (rivc[zoo]), run on ``env_id`` (LunarLander needs Box2D;
    the cost of an update is the network's and the batch's): SB3's DQN and RIVC timed in turn 3 times, median
    ratio, with the conversions per update cycle."""
    from rivc.agents.hyperparams import zoo_hyperparams

    rows = []
    for task in ZOO_TASKS:
        try:
            zoo = zoo_hyperparams(task).kwargs
        except ImportError:
            print("\n(rl_zoo3 is not installed: no RL Zoo settings rows; pip install 'rivc[zoo]')")
            return
        zoo["learning_starts"] = max(zoo["learning_starts"], 1_000)  # a warm-up to calibrate on, for both agents
        models = []

        def rivc():
            models.append(RIVC("MlpPolicy", env_id, seed=0, **zoo))
            return models[-1]

        dqn_sps, rivc_sps, ratio = paired_speeds(lambda: DQN("MlpPolicy", env_id, seed=0, **zoo), rivc, timesteps)
        model = models[-1]
        cycles = max(1, (timesteps - zoo["learning_starts"]) // zoo["train_freq"])
        rows.append([f"{task}'s settings ({zoo['policy_kwargs']['net_arch']}, batch {zoo['batch_size']}, train_freq "
                     f"{zoo['train_freq']}, gradient_steps {zoo['gradient_steps']})", dqn_sps, rivc_sps, ratio,
                     f"{model.num_conversions / cycles:.2f} ({model._n_updates} updates)"])
    print_table(f"Training throughput on {env_id}, {timesteps} steps, the RL Zoo's settings (learning_starts at least "
                "1,000): SB3 DQN and RIVC timed in turn 3 times, median ratio (target >= 0.9x)",
                ["settings", "DQN steps/s", "RIVC steps/s", "x SB3 DQN", "conversions per update cycle"], rows)


# one agent's run in a fresh interpreter, as a user's script runs it: torch's and BLAS's threads as they come
# ("dqn-1": SB3's DQN with torch on one thread, set by the script, the control)
AS_A_USER = """
import sys, time
import torch
from stable_baselines3 import DQN
from benchmarks.bench_train import SHARED
from rivc.agents import RIVC
agent, env_id, timesteps = sys.argv[1], sys.argv[2], int(sys.argv[3])
if agent == "dqn-1":
    torch.set_num_threads(1)
model = (RIVC if agent == "rivc" else DQN)("MlpPolicy", env_id, seed=0, **SHARED)
start = time.perf_counter()
model.learn(timesteps)
print(timesteps / (time.perf_counter() - start), torch.get_num_threads())
"""
SPINNER = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"  # ends with the bench's process


def busy_machine(env_id: str, timesteps: int = 6_000, rounds: int = 3) -> None:
    """SB3's DQN and RIVC, each in its own interpreter with the thread settings its Python API leaves (SB3's DQN:
    torch's pool, a thread per core; RIVC's ``learn``: ``blas_threads``, one), beside a process that keeps one core
    busy; SB3's DQN with torch on one thread as the control. Timed in turn ``rounds`` times, medians."""
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    threads = {}

    def speed(agent: str) -> float:
        run = subprocess.run([sys.executable, "-c", AS_A_USER, agent, env_id, str(timesteps)], capture_output=True,
                             text=True, cwd=root, env=env)
        if run.returncode:
            raise RuntimeError(f"the {agent} run failed:\n{run.stderr}")
        steps_per_second, threads[agent] = run.stdout.split()[-2:]
        return float(steps_per_second)

    try:
        rounds_run = [{agent: speed(agent) for agent in ("dqn", "rivc", "dqn-1")} for _ in range(rounds)]
    finally:
        spinner.kill()
        spinner.wait()
    median = {agent: statistics.median(run[agent] for run in rounds_run) for agent in ("dqn", "rivc", "dqn-1")}
    names = {"dqn": f"SB3 DQN (torch on {threads['dqn']} threads)", "rivc": "RIVC (learn: torch and BLAS on blas_threads=1)",
             "dqn-1": "SB3 DQN, torch.set_num_threads(1) in the script (control)"}
    print_table(f"Training throughput on {env_id}, {timesteps} steps, beside a process that keeps one of the "
                f"{os.cpu_count()} cores busy: each agent in a fresh interpreter with SHARED's settings and the threads "
                f"its API leaves, timed in turn {rounds} times (medians; the ratio the median of each round's)",
                ["agent", "env steps/s", "x SB3 DQN"],
                [[names[agent], median[agent], statistics.median(run[agent] / run["dqn"] for run in rounds_run)]
                 for agent in ("dqn", "rivc", "dqn-1")])


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
