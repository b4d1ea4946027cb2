"""uldviz.io."""
