"""The cost-based planner: sampling, specialized models, thresholds, cascade search."""
