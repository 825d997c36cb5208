"""Hub: ingestion, training, sync and privacy for the edge fleet."""
