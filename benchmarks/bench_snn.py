"""Conversion time and per-action latency of spiking policies against the quantized torch network.

    python benchmarks/bench_snn.py
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from gymnasium import spaces

from benchmarks.common import print_table, time_call
from rivc.neurochip import make_backend
from rivc import QuantConfig, QuantizedQNetwork


def main(obs_dim: int = 8, n_actions: int = 4, hidden=(64, 64)) -> None:
    conversion_rows, latency_rows = [], []
    for target in ("akida", "akd1000", "rate"):
        torch.manual_seed(0)
        space = spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        qnet = QuantizedQNetwork(space, n_actions, QuantConfig(4, 4, 8), hidden_sizes=hidden, target=target)
        backends = {"snntorch fast path": make_backend("snntorch"),
                    "snntorch reference": make_backend("snntorch", exact_reference=True)}
        if importlib.util.find_spec("akida") is not None and target != "rate":
            backends["akida software engine"] = make_backend("akida")

        def fresh_export():  # as after an update: the weights changed, nothing cached (validated once, at first)
            qnet.clear_quantization_cache()
            return qnet.export(check=False)

        conversion_rows.append([target, "export (torch -> integer net)", time_call(fresh_export) * 1e3])
        conversion_rows.append([target, "export + validate (the agent's first conversion)",
                                time_call(lambda: fresh_export().validate()) * 1e3])
        for name, backend in backends.items():
            if name != "snntorch reference":
                conversion_rows.append([target, f"export + convert: {name}",
                                        time_call(lambda: backend.convert(fresh_export())) * 1e3])
        for batch in (1, 256):
            obs = np.random.default_rng(0).uniform(-1, 1, (batch, obs_dim)).astype(np.float32)
            obs_t = torch.as_tensor(obs)

            def torch_forward():
                with torch.no_grad():
                    return qnet(obs_t)

            t_torch = time_call(torch_forward)
            latency_rows.append([target, f"quantized torch forward (QAT), batch {batch}", t_torch / batch * 1e6, 1.0])
            for name, backend in backends.items():
                policy = backend.convert(qnet.export())
                t = time_call(lambda: policy.q_values(obs), min_time=0.05 if "reference" in name else 0.2)
                latency_rows.append([target, f"{name}, batch {batch}", t / batch * 1e6, t / t_torch])
    print_table(f"Conversion per target, 2x{hidden[0]} MLP, 4-bit (ms; target <= 0.2 ms for export + convert on "
                "snntorch)", ["target", "step", "ms"], conversion_rows)
    print_table("Conversion per bit width, target akida (export + convert on the snntorch fast path, ms; ratio to the "
                "QAT forward of one observation, measured in the same run)", ["network", "widths", "ms", "x QAT forward"],
                width_rows(obs_dim, n_actions))
    print_table("Per-action latency per target (us per observation; ratio to the quantized torch forward)",
                ["target", "path", "us/action", "x torch"], latency_rows)


WIDTHS = [QuantConfig(4, 4, 8), QuantConfig(2, 2, 8), QuantConfig(8, 8, 8), QuantConfig.parse_layers("8/8,8/4,4/32"),
          QuantConfig.parse_layers("8/4,4/4,4/32")]


def width_rows(obs_dim: int, n_actions: int) -> list[list]:
    """export + convert per bit width at 2x64 and 256x256, against the QAT forward of one observation."""
    rows, backend = [], make_backend("snntorch")
    obs = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (1, obs_dim)).astype(np.float32))
    for hidden in ((64, 64), (256, 256)):
        for config in WIDTHS:
            torch.manual_seed(0)
            space = spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
            qnet = QuantizedQNetwork(space, n_actions, config, hidden_sizes=hidden, target="akida")

            def convert():
                qnet.clear_quantization_cache()
                return backend.convert(qnet.export(check=False))

            def forward():
                qnet.clear_quantization_cache()  # as in training: new weights every update
                with torch.no_grad():
                    return qnet(obs)

            t_convert, t_forward = time_call(convert), time_call(forward)
            rows.append([f"{hidden[0]}x{hidden[1]}", config.describe() if not config.uniform else
                         f"{config.weight_bits}/{config.activation_bits} everywhere", t_convert * 1e3, t_convert / t_forward])
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
