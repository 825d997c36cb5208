"""Edge agent: the nginx sidecar that personalizes pages."""
