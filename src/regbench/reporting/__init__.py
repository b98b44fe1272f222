"""Reports and figures drawn from an experiment's results."""
