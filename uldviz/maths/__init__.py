"""uldviz.maths."""
