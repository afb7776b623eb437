"""benchmarks/gpu_check.py: without a CUDA GPU it says it was skipped; its checks run (on the CPU) and hold."""

import torch

from benchmarks import gpu_check


def test_without_a_gpu_the_check_says_it_was_skipped(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "skipped: no CUDA GPU" in capsys.readouterr().out


def test_the_checks_hold_on_the_cpu():
    found = gpu_check.check("MlpPolicy", "cpu", steps=600)
    assert found["export_equal"] and found["q_device_eq_cpu"] and found["q_device_eq_integer"]
    assert found["rivc_steps_per_s"] > 0 and found["dqn_steps_per_s"] > 0
