"""Backend interface and registry: a backend turns an integer network into a spiking policy.

numpy only at import time: backends that need torch, snntorch or akida import them when built.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from rivc.integer_net import IntegerNetwork


def as_integer_network(network: Any) -> IntegerNetwork:
    """Accept an ``IntegerNetwork`` or anything with ``export()`` returning one."""
    if isinstance(network, IntegerNetwork):
        return network
    export = getattr(network, "export", None)
    if callable(export):
        exported = export()
        if isinstance(exported, IntegerNetwork):
            return exported
    raise TypeError(
        f"cannot convert {type(network).__name__}: pass an rivc.IntegerNetwork or a network with "
        "export() (e.g. rivc.QuantizedQNetwork)"
    )


class SpikingPolicy(ABC):
    """A converted policy: Q-values from spiking dynamics, greedy actions."""

    network: IntegerNetwork
    #: what ``rivc.neurochip.load_policy`` read from the policy folder's ``policy.json``
    metadata: dict | None = None

    @property
    def obs_dim(self) -> int:
        return self.network.obs_dim

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.network.obs_shape

    @property
    def n_actions(self) -> int:
        return self.network.n_actions

    @abstractmethod
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values ``[B, n_actions]`` (float64) for observations ``[B, *obs_shape]`` (or one ``obs_shape``)."""

    def q_values_and_spikes(self, obs: np.ndarray) -> tuple[np.ndarray, float]:
        """Q-values and the mean number of hidden-layer spikes (events) per observation. On an exact
        target a neuron emits its activation code, so the count is the codes' sum."""
        q = self.q_values(obs)
        hidden, _ = self.network.forward_codes(obs)
        return q, float(sum(codes.sum() for codes in hidden)) / q.shape[0]

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions ``[B]`` (int64)."""
        return np.argmax(self.q_values(obs), axis=1)


class Backend(ABC):
    """Converts integer networks into spiking policies for one neurochip (or its emulation)."""

    name: str = "backend"

    @abstractmethod
    def convert(self, network: Any) -> SpikingPolicy:
        """Build a spiking policy from an ``IntegerNetwork`` (or a network with ``export()``)."""


# name -> "module:Class"; modules are imported only when a backend is made
_REGISTRY: dict[str, str] = {
    "snntorch": "rivc.neurochip.snntorch_backend:SnnTorchBackend",
    "akida": "rivc.neurochip.akida_backend:AkidaBackend",
}


def register_backend(name: str, target: str | type[Backend]) -> None:
    """Register a backend class (or its ``"module:Class"`` path) under ``name``."""
    if isinstance(target, type):
        target = f"{target.__module__}:{target.__qualname__}"
    _REGISTRY[name] = target


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def make_backend(name: str, **options: Any) -> Backend:
    """Instantiate the backend registered as ``name`` with its options (e.g. ``timesteps=15``)."""
    if isinstance(name, Backend):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    module_name, _, class_name = _REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)
