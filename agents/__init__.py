"""Agents: RIVC (Stable-Baselines3 style) and the ablation baselines, selected by ``variant``."""

__all__ = ["RIVC", "VARIANTS", "Variant", "ConversionConfig", "CalibrationConfig"]


def __getattr__(name: str):  # lazy: `rivc deploy` runs without importing torch
    if name in ("VARIANTS", "Variant"):
        from rivc.agents import variants

        return getattr(variants, name)
    if name in ("ConversionConfig", "CalibrationConfig"):
        from rivc.agents import config

        return getattr(config, name)
    if name in __all__:
        from rivc.agents import rivc_agent

        return getattr(rivc_agent, name)
    raise AttributeError(f"module 'rivc.agents' has no attribute {name!r}")
