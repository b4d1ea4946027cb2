"""uldviz.alignment."""
