"""Event ingestion: normalization, the three storage tiers, the NATS consumer."""
