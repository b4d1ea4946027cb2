"""ipywidgets front-ends that compose :mod:`uldviz.viz.plots`; they work with ipywidgets 7.7 and 8.

Plots are redrawn as static matplotlib figures inside an ``Output`` widget, so no ipympl is needed.
"""
