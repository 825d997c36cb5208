"""Code shared by the edge agent and the hub (no IO, no imports of either side)."""
