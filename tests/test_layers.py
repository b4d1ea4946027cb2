"""The package's layers: every import (lazy ones included) goes down the stack, never up or sideways, and no module
reads another module's private names. The README's Layout section draws the same stack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "uldviz"

#: Low to high; a layer may import only from layers below it. Equal ranks must not import each other.
RANK = {
    "env": 0,
    "vocab": 1,  # which tokens correspond: SharedVocab, the X-Token map W, string rules
    "maths": 2,  # losses, transport, statistics (torch + numpy)
    "alignment": 3, "io": 3,  # positions and byte spans; hub, tokenizers, corpus, models
    "train": 4,  # configs, batch, the objective layer, schedule, metrics, teacher build
    "distill": 5, "scale": 5,  # the notebooks' loop, the accelerate loop
    "viz": 6, "viz.plots": 6, "viz.widgets": 7, "viz.explorables": 8,
    "exercises": 9,
    "course": 10,  # the course's own tooling: lessons, site, report, docs blocks
    "": 11,  # uldviz/__init__.py and __main__.py (the command line dispatches to every loop)
}


def _layer(module: str) -> str:
    """``uldviz.viz.plots.vocab`` -> ``viz.plots``; ``uldviz.maths.losses`` -> ``maths``; ``uldviz`` -> ``''``."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in ("__main__", "__init__"):
        return ""
    return ".".join(parts[:2]) if parts[0] == "viz" and len(parts) > 1 else parts[0]


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree):
    """(imported module, names) of every absolute ``uldviz`` import in the tree, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("uldviz"):
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            yield from ((a.name, []) for a in node.names if a.name.startswith("uldviz"))


def test_every_layer_is_ranked():
    layers = {_layer(name) for name, _ in _modules()}
    assert layers <= set(RANK), f"unranked layers: {sorted(layers - set(RANK))}"


def test_imports_go_down_the_stack():
    wrong = []
    for name, tree in _modules():
        src = _layer(name)
        for target, names in _imports(tree):
            targets = [target] + [f"{target}.{n}" for n in names if target in ("uldviz", "uldviz.viz")]
            for t in targets:
                dst = _layer(t)
                if dst in RANK and dst != src and RANK[dst] >= RANK[src] and not (src == "" and dst == ""):
                    wrong.append(f"{name} ({src or 'uldviz'}) imports {t} ({dst or 'uldviz'})")
    assert not wrong, "imports up or sideways:\n" + "\n".join(wrong)


def test_no_module_reads_another_modules_private_names():
    wrong = [f"{name} imports {n} from {target}" for name, tree in _modules() for target, names in _imports(tree)
             for n in names if n.startswith("_") and target != name]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module, layer", [("uldviz.viz.plots.vocab", "viz.plots"), ("uldviz.maths.losses", "maths"),
                                           ("uldviz", ""), ("uldviz.__main__", ""), ("uldviz.env", "env")])
def test_layer_names(module, layer):
    assert _layer(module) == layer
