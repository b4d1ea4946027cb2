"""uldviz.course."""
