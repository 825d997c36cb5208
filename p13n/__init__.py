"""The p13n command: composition root for the edge agent and the hub."""
