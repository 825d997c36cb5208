"""Training jobs: evaluation, model training, reports and bundle building."""
