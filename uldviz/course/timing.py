"""Timing ULD's closed form against exact and entropic OT, and the one OT timing file ``data/bench_ot.json``.

- :func:`median_time` (fn, repeats, warmup) -> seconds per call: the median of several repeats
  after warm-up calls; very fast functions are looped so each repeat lasts long enough to measure.
- :func:`time_ot_methods` (sizes, methods, budget_s) -> ``{method: {"sizes": [...], "seconds": [...],
  "skipped": [...]}}``: one random pair per size, sizes ascending; a size is skipped when the time
  predicted from the previous sizes would push that method over its budget.
- :func:`fit_exponent` (sizes, seconds, min_n) -> k in t ~ N^k (least squares in log-log).
- :func:`write_ot_scaling` is the entry the benchmark suite (``python benchmarks/bench.py``) calls::

      write_ot_scaling(path=None, sizes=DEFAULT_SIZES, *, methods=None, budget_s=120.0, reg=1e-2,
                       repeats=5, fit_min_n=1000, seed=0, progress=print) -> dict

  It times every method over ``sizes`` (vocabulary sizes N), fits growth exponents on N >= fit_min_n,
  records Sinkhorn's relative error, the machine and library versions, and writes the dict as JSON
  to ``path`` (default ``data/bench_ot.json``). :func:`load_ot_scaling` reads it back and
  :func:`extrapolate` predicts a method's time at larger N from the fit.

Methods (all compute ULD for one pair of vectors, float64, inputs = softmax of Gaussian logits, std 3):
``closed_numpy`` (sort + L1 in numpy on padded vectors), ``closed_torch`` (the same with ``torch.sort``;
:func:`uldviz.maths.losses.uld_distance` adds about 0.1 ms of input checks), ``wasserstein_1d`` (POT's 1-D
solver), ``emd2`` (exact OT, including building the N x N cost matrix), ``sinkhorn2`` (entropic OT at
``reg``, POT's default 1,000 iterations).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from uldviz.env import load_average
from uldviz.maths import transport as uot
from uldviz.maths.losses import uld_reference

__all__ = [
    "METHODS",
    "DEFAULT_SIZES",
    "median_time",
    "random_pair",
    "method_functions",
    "time_ot_methods",
    "fit_exponent",
    "machine_info",
    "write_ot_scaling",
    "load_ot_scaling",
    "extrapolate",
]

#: Method keys with a readable label, in plotting order.
METHODS = {
    "closed_numpy": "closed form (numpy sort)",
    "closed_torch": "closed form (torch sort)",
    "wasserstein_1d": "ot.wasserstein_1d",
    "emd2": "ot.emd2 (exact, incl. cost matrix)",
    "sinkhorn2": "ot.sinkhorn2 (reg 1e-2)",
}

#: Sizes of the shipped results file.
DEFAULT_SIZES = (100, 200, 500, 1000, 2000, 5000, 10000)

#: Growth guesses used to predict the next size before two sizes are measured.
_GUESS = {"closed_numpy": 1.2, "closed_torch": 1.2, "wasserstein_1d": 1.2, "emd2": 2.3, "sinkhorn2": 2.5}


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, min_repeat_s: float = 2e-3) -> float:
    """Median seconds per call of ``fn()`` over ``repeats`` repeats after ``warmup`` calls.

    A repeat loops ``fn`` enough times to last at least ``min_repeat_s`` (timer resolution), then
    divides; slow functions run once per repeat.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    number = 1 if once >= min_repeat_s else max(1, int(min_repeat_s / max(once, 1e-9)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def random_pair(n: int, m: int | None = None, seed: int = 0, std: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Two probability vectors (float64) of sizes n and m: softmax of Gaussian logits with the given std."""
    rng = np.random.default_rng(seed)
    m = n if m is None else m

    def soft(k):
        """Softmax of k Gaussian logits."""
        z = rng.normal(0.0, std, k)
        e = np.exp(z - z.max())
        return e / e.sum()

    return soft(n), soft(m)


def method_functions(p: np.ndarray, q: np.ndarray, reg: float = 1e-2) -> dict[str, Callable[[], object]]:
    """Zero-argument callables computing ULD(p, q) by each method (inputs prepared outside the timing)."""
    n = max(p.shape[-1], q.shape[-1])
    pp, qq = np.pad(p, (0, n - p.shape[-1])), np.pad(q, (0, n - q.shape[-1]))
    pt, qt = torch.from_numpy(pp), torch.from_numpy(qq)

    def sinkhorn():
        """Sinkhorn at POT's default iteration limit, its not-converged warnings silenced for timing."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", uot.OTWarning)
            return uot.uld_sinkhorn(p, q, reg, num_itermax=1000)

    return {
        "closed_numpy": lambda: np.abs(np.sort(pp) - np.sort(qq)).sum(),
        "closed_torch": lambda: (torch.sort(pt).values - torch.sort(qt).values).abs().sum(),
        "wasserstein_1d": lambda: uot.uld_wasserstein_1d(p, q),
        "emd2": lambda: uot.uld_emd(p, q),
        "sinkhorn2": sinkhorn,
    }


def _predict(sizes: list, seconds: list, n: int, method: str) -> float:
    """Predicted seconds at size n from the last measured sizes (local slope, else a guess)."""
    if not sizes:
        return 0.0
    k = _GUESS.get(method, 2.0)
    if len(sizes) >= 2 and seconds[-2] > 0:
        local = math.log(seconds[-1] / seconds[-2]) / math.log(sizes[-1] / sizes[-2])
        k = min(max(k, local), 3.0)  # local slopes are noisy (Sinkhorn's iteration count varies)
    return seconds[-1] * (n / sizes[-1]) ** k


def time_ot_methods(
    sizes: Iterable[int],
    methods: Iterable[str] | None = None,
    *,
    budget_s: float = 10.0,
    reg: float = 1e-2,
    repeats: int = 5,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Time each method at each size (ascending); skip sizes that would push a method past ``budget_s``.

    Returns ``{method: {"label", "sizes", "seconds", "skipped"}}`` plus ``"sinkhorn_rel_error"``
    (relative error of :func:`uldviz.maths.transport.uld_sinkhorn` against :func:`uldviz.maths.losses.uld_reference`
    at each size)
    and ``"emd2_warnings"`` (POT warnings seen, which should be none).
    """
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"sizes must be positive integers, got {sizes}")
    methods = list(METHODS) if methods is None else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    out = {m: {"label": METHODS[m], "sizes": [], "seconds": [], "skipped": []} for m in methods}
    spent = {m: 0.0 for m in methods}
    sink_err = {"sizes": [], "rel_error": []}
    emd_warnings = []
    for n in sizes:
        p, q = random_pair(n, seed=seed + n)
        fns = method_functions(p, q, reg)
        exact = float(uld_reference(torch.from_numpy(p), torch.from_numpy(q)))
        for m in methods:
            rec = out[m]
            guess = _predict(rec["sizes"], rec["seconds"], n, m)
            if spent[m] + guess * 2 > budget_s:
                rec["skipped"].append(n)
                continue
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                first = fns[m]()
            once = time.perf_counter() - start
            if m == "emd2":
                emd_warnings += [f"N = {n}: {w.message}" for w in caught if issubclass(w.category, uot.OTWarning)]
            reps = repeats if once < 0.2 else max(1, min(repeats, 3))
            if once > 1.0 or spent[m] + once * (reps + 2) > budget_s:
                # slow (or the budget is nearly spent): the first call is the measurement
                sec = once
                spent[m] += once
            else:
                sec = median_time(fns[m], repeats=reps, warmup=0)
                spent[m] += once + sec * reps
            rec["sizes"].append(n)
            rec["seconds"].append(sec)
            if m == "sinkhorn2":
                sink_err["sizes"].append(n)
                sink_err["rel_error"].append(abs(float(first) - exact) / exact)
            if progress:
                progress(f"{m:>15} N = {n:>6}: {sec:.3g} s")
    out["sinkhorn_rel_error"] = sink_err
    out["emd2_warnings"] = emd_warnings
    return out


def fit_exponent(sizes: Iterable[float], seconds: Iterable[float], min_n: float = 1000) -> float | None:
    """Growth exponent k of t ~ c N^k: least-squares slope of log t against log N over N >= min_n.

    Returns None with fewer than two such sizes.
    """
    pts = [(n, t) for n, t in zip(sizes, seconds) if n >= min_n and t > 0]
    if len(pts) < 2:
        return None
    x = np.log([n for n, _ in pts])
    y = np.log([t for _, t in pts])
    return float(np.polyfit(x, y, 1)[0])


def machine_info() -> dict:
    """The machine and library versions a timing depends on (recorded next to the numbers)."""
    import ot

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "pot": ot.__version__,
        "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"),
        "load_avg_1m": None if (load := load_average()) is None else round(load[0], 2),
    }


def _peak_rss_gb() -> float | None:
    """The process's peak resident memory so far in GB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if platform.system() == "Linux" else peak / 1e9


def write_ot_scaling(
    path: str | os.PathLike | None = None,
    sizes: Iterable[int] = DEFAULT_SIZES,
    *,
    methods: Iterable[str] | None = None,
    budget_s: float = 120.0,
    reg: float = 1e-2,
    repeats: int = 5,
    fit_min_n: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = print,
) -> dict:
    """Time all methods over ``sizes``, fit exponents, and write the result as JSON (default ``data/bench_ot.json``).

    Returns the dict written. Run it under ``nice``: exact OT at N = 10,000 takes seconds and about
    1 GB for its cost matrix alone. On a shared machine set ``OPENBLAS_NUM_THREADS=1`` before starting
    Python: multi-threaded BLAS slows Sinkhorn by 10-20x when other jobs compete for the cores.
    """
    if path is None:
        from uldviz.env import data_dir

        path = Path(data_dir()) / "bench_ot.json"
    start = time.perf_counter()
    machine = machine_info()  # the load average before the run: other jobs slow BLAS-based Sinkhorn most
    res = time_ot_methods(sizes, methods, budget_s=budget_s, reg=reg, repeats=repeats, seed=seed, progress=progress)
    results = {k: v for k, v in res.items() if k in METHODS}
    for rec in results.values():
        rec["exponent"] = fit_exponent(rec["sizes"], rec["seconds"], fit_min_n)
    doc = {
        "what": "seconds to compute ULD for ONE pair of probability vectors of size N, median of repeats",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "sizes": sorted({int(n) for n in sizes}),
            "budget_s_per_method": budget_s,
            "sinkhorn_reg": reg,
            "sinkhorn_num_itermax": 1000,
            "repeats": repeats,
            "fit_min_n": fit_min_n,
            "seed": seed,
            "inputs": "softmax of N(0, 3^2) logits, float64",
        },
        "machine": machine,
        "load_avg_1m_after": machine_info()["load_avg_1m"],
        "methods": results,
        "sinkhorn_rel_error": res["sinkhorn_rel_error"],
        "emd2_warnings": res["emd2_warnings"],
        "peak_rss_gb": _peak_rss_gb(),
        "wall_s": time.perf_counter() - start,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def load_ot_scaling(path: str | os.PathLike | None = None) -> dict | None:
    """Read a results file written by :func:`write_ot_scaling`; None when it does not exist."""
    if path is None:
        from uldviz.env import data_dir

        path = Path(data_dir()) / "bench_ot.json"
    path = Path(path)
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    if "methods" not in doc:
        raise ValueError(f"{path} is not an OT scaling results file (no 'methods' key)")
    return doc


def extrapolate(record: dict, n: float) -> float | None:
    """Predicted seconds at size n for one method's record: last measured time scaled by (n / N_last)^exponent."""
    k = record.get("exponent")
    if k is None or not record.get("sizes"):
        return None
    return record["seconds"][-1] * (n / record["sizes"][-1]) ** k
