"""Explorables: the mathematics as objects you drag, computed in the browser, refereed by the kit's Python.

anywidget widgets (one ES module each, shipped in ``static/``, no CDN), so one implementation runs in
JupyterLab 4, Notebook 7, Colab (ipywidgets 7.7) and VS Code, and on the static course with no kernel
(:mod:`uldviz.course.site` mounts the module with the saved state):

- :class:`DistributionsExplorable`: two distributions over two vocabularies; KL, sorted pairing, plan, ULD;
- :class:`PlanExplorable`: ULD's transport plan, pushed by hand, with POT's optimum to snap to;
- :class:`TextExplorable`: your text, both tokenizations, byte-offset groups and shared strings.
"""

from uldviz.viz.explorables.distributions import DistributionsExplorable
from uldviz.viz.explorables.plan import PlanExplorable
from uldviz.viz.explorables.text import TextExplorable

__all__ = ["DistributionsExplorable", "PlanExplorable", "TextExplorable"]
