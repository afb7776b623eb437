"""Agents: RIVC (Stable-Baselines3 style) and the ablation baselines, selected by ``variant``."""

from agents.rivc_agent import RIVC, VARIANTS, Variant

__all__ = ["RIVC", "VARIANTS", "Variant"]
