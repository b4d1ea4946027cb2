"""Static matplotlib figures (one module per notebook topic). Plots know nothing of widgets.

Import the topic module you need, e.g. ``from uldviz.viz.plots import vocab``.
"""
