"""RIVC: Robust Iterative Value Conversion - quantization-aware, gap-increasing DQN for SNN policies.

The numpy-only parts (``QuantConfig``, ``IntegerNetwork``, metrics) import without torch, so a
deployed policy runs where torch is absent; torch-based names load on first use.
"""

from rivc.config import QuantConfig
from rivc.conv import ConvSpec
from rivc.integer_net import CorruptFileError, ImageInput, InputQuantizer, IntegerLayer, IntegerNetwork
from rivc.metrics import ConversionError, conversion_error

__version__ = "0.1.0"

_LAZY = {
    "QuantizedQNetwork": "rivc.qnetwork",
    "network_conversion_error": "rivc.metrics",
}

__all__ = [
    "ConversionError", "ConvSpec", "CorruptFileError", "ImageInput", "InputQuantizer", "IntegerLayer", "IntegerNetwork",
    "QuantConfig", "conversion_error", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rivc' has no attribute {name!r}")
