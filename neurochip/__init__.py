"""Neurochip backends: turn an exported integer network into a spiking policy.

``make_backend("snntorch")`` emulates integrate-and-fire neurons (always available);
``make_backend("akida")`` runs BrainChip Akida (``pip install rivc[akida]``).
``save_policy`` / ``load_policy`` write and run deployable policy folders.
Importing this package needs numpy only; a backend imports its own dependencies when made.
"""

from rivc.neurochip.base import Backend, SpikingPolicy, available_backends, make_backend, register_backend
from rivc.neurochip.deploy import load_policy, save_policy

__all__ = ["Backend", "SpikingPolicy", "available_backends", "load_policy", "make_backend", "register_backend",
           "save_policy"]
