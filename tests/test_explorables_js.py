"""The explorables' browser maths equals the kit's Python: the shipped ES modules' functions run in Node.

What the page computes while you drag (number format, rebalancing, ULD, raw KL, plan moves, plan cost,
crossings) is compared with what the kit computes for the same inputs. Node comes with Playwright (its
driver) or the system; without either the test is skipped.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from uldviz.maths.patches import aligned_kl, format_value
from uldviz.viz.explorables._base import module_source
from uldviz.viz.explorables.distributions import kit_uld
from uldviz.viz.explorables.plan import crossing_pairs, plan_cost, plan_move
from uldviz.viz.widgets.kl_explorer import rebalance


def _node() -> str | None:
    try:
        import playwright

        bundled = Path(playwright.__file__).parent / "driver" / "node"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("node")


NODE = _node()
pytestmark = pytest.mark.skipif(NODE is None, reason="no Node.js (neither Playwright's nor the system's)")

_HARNESS = """
const cases = JSON.parse(CASES);
const out = {
  fmt: cases.fmt.map((x) => fmt(x)),
  rebalance: cases.rebalance.map(([v, i, x]) => rebalance(v, i, x)),
  uld: cases.pairs.map(([p, q]) => uld(p, q)),
  kl: cases.kl.map(([tt, t, ts, s]) => String(rawKL(tt, t, ts, s))),
  move: cases.moves.map(([T, src, dst, f]) => {
    const U = T.map((r) => r.slice());
    for (const [r, c, d] of planMove(T, src, dst, f)) U[r][c] = Math.max(0, U[r][c] + d);
    return U;
  }),
  cost: cases.costs.map(([T, C]) => planCost(T, C)),
  crossings: cases.crossings.map(([T, x, y]) => crossings(T, x, y).count),
};
console.log(JSON.stringify(out));
"""


def _run_js(module: str, cases: dict) -> dict:
    """The module's top-level functions (its default export dropped) applied to ``cases`` in Node."""
    src = module_source(module).replace("export default { render };", "")
    script = src + f"\nconst CASES = {json.dumps(json.dumps(cases))};\n" + _HARNESS
    done = subprocess.run([NODE, "--input-type=module"], input=script, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _cases() -> dict:
    gen = np.random.default_rng(7)
    fmt = [0.0, 1.0, 0.2, 1 / 3, 2 / 3, 12345.678, 1234.5, 1235.5, 0.125, 0.00012345, 1.5e-5, 99999.0, 0.99995, 3e-12,
           -0.25, 7.0, 0.03125, 1e-4, 5e-5, 2.5]
    fmt += [float(x) for x in 10.0 ** gen.uniform(-7, 6, 40)]
    rebal = []
    for n in (1, 2, 3, 5):
        v = gen.dirichlet(np.ones(n)).tolist() if n > 1 else [1.0]
        rebal += [(v, int(gen.integers(n)), float(x)) for x in (0.0, 0.37, 1.0)]
    rebal.append(([1.0, 0.0, 0.0], 0, 0.4))  # the others all 0: they share the rest equally
    pairs = []
    for n, m in ((3, 5), (4, 4), (7, 2), (1, 6)):
        p, q = gen.dirichlet(np.full(n, 0.5)) if n > 1 else np.ones(1), gen.dirichlet(np.full(m, 0.5))
        q[0] = 0.0  # a probability exactly 0 (a logit of -inf for uld_loss)
        pairs.append((p.tolist(), (q / q.sum()).tolist()))
    kl = [(["dog", "cat", "moon"], [0.5, 0.3, 0.2], ["dog", "cat", "sun"], [0.4, 0.4, 0.2]),
          (["dog", "cat", "moon"], [1.0, 0.0, 0.0], ["dog", "cat", "sun"], [0.4, 0.4, 0.2]),
          (["a", "b"], [0.25, 0.75], ["b", "a"], [0.5, 0.5]),
          (["a", "b", "c"], [0.2, 0.3, 0.5], ["a", "b", "c"], [0.3, 0.3, 0.4])]
    moves, costs, cross = [], [], []
    for n in (2, 3, 4, 5):
        x, y = gen.dirichlet(np.ones(n)), gen.dirichlet(np.ones(n))
        C = np.abs(x[:, None] - y[None, :])
        T = np.eye(n)[gen.permutation(n)] / n
        for _ in range(12):
            src = [int(v) for v in np.argwhere(T > 0)[gen.integers(int((T > 0).sum()))]]
            dst = [int(v) for v in gen.integers(n, size=2)]
            f = float(gen.choice([1.0, 0.5, 0.25]))
            moves.append((T.tolist(), src, dst, f))
            T = plan_move(T, src, dst, fraction=f)
            costs.append((T.tolist(), C.tolist()))
            cross.append((T.tolist(), x.tolist(), y.tolist()))
    return {"fmt": fmt, "rebalance": rebal, "pairs": pairs, "kl": kl, "moves": moves, "costs": costs,
            "crossings": cross}


@pytest.fixture(scope="module")
def both():
    cases = _cases()
    return cases, _run_js("plan", cases)  # the plan module carries the shared helpers too


def test_readout_format_is_the_kits(both):
    cases, js = both
    assert js["fmt"] == [format_value(x) for x in cases["fmt"]]


def test_dragging_a_bar_rebalances_like_the_kit(both):
    cases, js = both
    for (v, i, x), got in zip(cases["rebalance"], js["rebalance"]):
        want = rebalance({str(k): a for k, a in enumerate(v)} | {str(i): x}, str(i))
        assert got == pytest.approx(list(want.values()), abs=1e-15)


def test_browser_uld_and_kl_equal_uld_loss_and_raw_torch(both):
    cases, js = both
    for (p, q), got in zip(cases["pairs"], js["uld"]):
        assert got == pytest.approx(kit_uld(student=q, teacher=p), abs=1e-12)
    for (tt, t, ts, s), got in zip(cases["kl"], js["kl"]):
        want = float(aligned_kl(dict(zip(tt, t)), dict(zip(ts, s))))
        got = float(got)
        assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert {js["kl"][0], js["kl"][1]} == {"Infinity", "NaN"} and torch.isfinite(torch.tensor(float(js["kl"][3])))


def test_plan_moves_costs_and_crossings_are_the_kits(both):
    cases, js = both
    for (T, src, dst, f), got in zip(cases["moves"], js["move"]):
        assert np.allclose(got, plan_move(T, src, dst, fraction=f), atol=1e-15)
    for (T, C), got in zip(cases["costs"], js["cost"]):
        assert got == pytest.approx(plan_cost(T, C), abs=1e-13)
    for (T, x, y), got in zip(cases["crossings"], js["crossings"]):
        assert got == crossing_pairs(T, teacher=x, student=y)
