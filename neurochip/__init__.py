"""Neurochip backends: turn an exported integer network into a spiking policy.

``make_backend("snntorch")`` emulates integrate-and-fire neurons (always available).
Importing this package needs numpy only; a backend imports its own dependencies when made.
"""

from neurochip.base import Backend, SpikingPolicy, available_backends, make_backend, register_backend

__all__ = ["Backend", "SpikingPolicy", "available_backends", "make_backend", "register_backend"]
