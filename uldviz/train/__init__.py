"""uldviz.train."""
