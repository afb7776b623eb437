"""Cost of a spiking policy (rivc.neurochip.cost): operation counts against NeuroBench's, energy from the
cited table, parameter memory at the target's widths."""

import numpy as np
import pytest
import torch

from conftest import random_network, random_obs
from rivc import QuantConfig
from rivc.neurochip.cost import PJ_FP32_ADD, PJ_FP32_MULTIPLY, PJ_INT8_MULTIPLY, PJ_INT32_ADD, policy_cost, spike_counts


class SpikeUnrolled(torch.nn.Module):
    """The integer network's layers as torch Linear layers, fed in time: the input codes at each of the
    input's presentations, then each hidden layer's spike trains (a unit's count as a burst, one spike a
    step), so that NeuroBench's hooks see multi-bit inputs (MACs) and binary spikes (ACs). The hidden
    counts also pass through a ReLU (the identity on counts), where NeuroBench measures sparsity."""

    def __init__(self, network, timesteps=None):
        super().__init__()
        self.network, self.timesteps = network, timesteps
        self.linears = torch.nn.ModuleList()
        for layer in network.layers:
            linear = torch.nn.Linear(layer.weights.shape[1], layer.units)
            linear.weight.data = torch.as_tensor(layer.weights, dtype=torch.float64)
            linear.bias.data = torch.as_tensor(layer.bias, dtype=torch.float64)
            self.linears.append(linear)
        self.relus = torch.nn.ModuleList(torch.nn.ReLU() for _ in network.hidden_layers)

    def forward(self, obs):
        obs = obs.numpy()
        steps = self.timesteps or self.network.config.activation_levels
        codes = torch.as_tensor(self.network.input_codes(obs))
        for _ in range(steps if self.network.chip.rate_coded else 1):
            self.linears[0](codes)
        for i, count in enumerate(spike_counts(self.network, obs, self.timesteps)):
            count = self.relus[i](torch.as_tensor(count, dtype=torch.float64))
            for t in range(int(count.max()) if count.numel() else 0):
                out = self.linears[i + 1]((count > t).double())
        return out


@pytest.mark.parametrize(("target", "bits"), [("akida", (4, 4, 8)), ("akida", (2, 2, 8)), ("akd1000", (4, 4, 8)),
                                              ("rate", (4, 4, 8))])
def test_operation_counts_and_sparsity_equal_neurobenchs(target, bits):
    pytest.importorskip("neurobench")
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import TorchModel

    network = random_network(config=QuantConfig(*bits), target=target, seed=11).export()
    for layer in network.layers:  # some zero weights: only non-zero ones cost an operation
        layer.weights = layer.weights.copy()
        layer.weights[:, ::5] = 0
    network.validate()
    obs = random_obs(64, seed=12)
    cost = policy_cost(network, obs)
    model = TorchModel(SpikeUnrolled(network))
    model.register_hooks()
    with torch.no_grad():
        data = (torch.as_tensor(obs), torch.zeros(len(obs)))
        preds = model(data[0])
        ops = SynapticOperations()(model, preds, data)
        sparsity = ActivationSparsity()(model, preds, data)
    model.cleanup_hooks()
    assert cost.input_macs == pytest.approx(ops["Effective_MACs"]) and cost.input_macs > 0
    assert cost.accumulates == pytest.approx(ops["Effective_ACs"]) and cost.accumulates > 0
    assert cost.activation_sparsity == pytest.approx(sparsity)
    assert cost.dense_macs == sum(layer.weights.size for layer in network.layers)


def test_energy_comes_from_the_cited_table_and_memory_from_the_widths():
    network = random_network(config=QuantConfig(4, 4, 8), target="akida", seed=3).export()
    cost = policy_cost(network, random_obs(32, seed=4))
    assert (PJ_INT8_MULTIPLY, PJ_INT32_ADD, PJ_FP32_MULTIPLY, PJ_FP32_ADD) == (0.2, 0.1, 3.7, 0.9)  # Horowitz 2014
    assert cost.energy_pj == pytest.approx(cost.input_macs * 0.3 + cost.accumulates * 0.1)
    assert cost.float_energy_pj == pytest.approx(cost.dense_macs * 4.6)
    weights = sum(layer.weights.size for layer in network.layers)
    units = sum(layer.units for layer in network.layers)
    hidden = sum(layer.units for layer in network.hidden_layers)
    assert cost.memory_bits == 4 * weights + 8 * units + 8 * hidden  # 4-bit weights, int8 biases, 8-bit scales
    assert cost.float_memory_bits == 32 * (weights + units)
    assert "ESTIMATE" in cost.describe()


def test_conv_policies_are_refused_with_the_reason():
    from rivc.conv import ConvSpec
    from gymnasium import spaces

    from rivc import QuantizedQNetwork

    space = spaces.Box(0, 255, (16, 16, 1), np.uint8)
    net = QuantizedQNetwork(space, 3, QuantConfig(4, 4, 8), hidden_sizes=(16,), conv_layers=[ConvSpec(8, 3, 2)])
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
    with pytest.raises(ValueError, match="MLP's synaptic operations"):
        policy_cost(net.export(), frames)
