"""Measures of a converted network: dead and saturated hidden units."""

import numpy as np
import torch
from gymnasium import spaces

from rivc import QuantConfig, QuantizedQNetwork
from rivc.metrics import unit_shares


def test_unit_shares_find_the_units_made_dead_and_saturated():
    torch.manual_seed(0)
    net = QuantizedQNetwork(spaces.Box(-1.0, 1.0, (3,), np.float32), 2, QuantConfig(4, 4, 8), hidden_sizes=(8, 6))
    with torch.no_grad():
        first, second = net.layers[0], net.layers[1]
        first.weight[:2].zero_()
        first.bias[0], first.bias[1] = -1.0, 50.0  # unit 0 never fires, unit 1 always at its top code
        first.bias[2:] = 0.1
        second.weight[:3].fill_(-1.0)
        second.bias[:3] = -1.0  # three of six units below zero on every input (the first layer's codes are >= 0)
    observations = np.random.default_rng(0).uniform(-1, 1, (256, 3)).astype(np.float32)
    shares = unit_shares(net.export(), observations)
    hidden, _ = net.export().forward_codes(observations)
    assert hidden[0][:, 0].max() == 0 and hidden[0][:, 1].min() == 15  # what was built
    assert shares.dead[0] == 1 / 8 and shares.saturated[0] == 1 / 8
    assert shares.dead[1] >= 3 / 6 and shares.saturated[1] < 1
    # every code of the dead unit is 0 and every code of the saturated one the top (15): at least 1/8 each
    assert shares.zero_codes[0] == np.mean(hidden[0] == 0) >= 1 / 8
    assert shares.top_codes[0] == np.mean(hidden[0] == 15) >= 1 / 8
    assert shares.zero_codes[1] == np.mean(hidden[1] == 0) >= 3 / 6
    assert set(shares.as_log()) == {f"quantization/{kind}_layer{i}" for kind in ("dead_units", "saturated_units",
                                                                                 "zero_codes", "top_codes") for i in (0, 1)}


def test_unit_shares_see_a_layer_turned_binary_by_a_lagging_clip():
    torch.manual_seed(0)
    net = QuantizedQNetwork(spaces.Box(-1.0, 1.0, (3,), np.float32), 2, QuantConfig(4, 4, 8), hidden_sizes=(8, 6))
    observations = np.random.default_rng(0).uniform(-1, 1, (256, 3)).astype(np.float32)
    before = unit_shares(net.export(), observations)
    assert before.zero_codes[1] + before.top_codes[1] < 1  # some codes between 0 and the top
    with torch.no_grad():
        net.clips[1].fill_(1e-3)  # a clip far below the second layer's pre-activations (Acrobot's, docs/zoo_notes.md)
    after = unit_shares(net.export(), observations)
    assert after.zero_codes[1] + after.top_codes[1] == 1.0 and after.top_codes[1] > 0
