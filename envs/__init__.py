"""Robot environments and wrappers for RIVC (discrete actions, bounded observations)."""
