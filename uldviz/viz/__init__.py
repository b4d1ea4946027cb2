"""uldviz.viz."""
