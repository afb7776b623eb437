from benchmarks.bench_train import SHARED
from benchmarks.step_profile import PARTS, profile


def test_step_profile_times_every_part_of_each_update():
    kwargs = dict(SHARED, learning_starts=200)
    for agent in ("dqn", "rivc-autograd", "rivc"):
        times = profile(agent, kwargs, steps=5)
        assert list(times) == list(PARTS) and all(t > 0 for t in times.values())
