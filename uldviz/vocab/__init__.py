"""uldviz.vocab."""
