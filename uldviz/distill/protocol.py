r"""The evaluation protocol of notebooks 03 and 04: does the teacher teach, or only regularise?

Fixed before any run (and recorded here, so the shipped results regenerate with one command):

- **Splits**: train / validation / test of whole documents (:func:`uldviz.io.corpus.train_val_test_split`).
  Each run's checkpoint is the validation minimum of its curve (early stopping); hyper-parameters
  are chosen on validation; the reported score is test bits per byte, at the selected step and at
  the last step.
- **Regimes** (:data:`REGIMES`), both always reported: *data-poor* — the student sees 3 % of the
  teacher's training text and over-fits within 300 steps (the kit's earlier default); *data-rich* —
  it sees all of it, and a CE-only pilot (seed 11) was still improving at step 300 (validation
  2.567 → 2.543 bits per byte over its last 50 steps). An earlier run at 10 % was stopped early
  (``data/results/regime_fraction0.1_partial.json``); its numbers are not used.
- **Tuning**: each tuned run tries its grid (:data:`~uldviz.distill.experiment.RUNS`, e.g. λ ∈ {0.3, 1, 3})
  with :data:`GRID_SEEDS`; the value with the lowest mean validation score at the selected step wins. A
  winner at an edge of the grid extends it by a factor of 3 beyond that edge, at most :data:`MAX_EXTENSIONS`
  times (:func:`grid_values`), so that a choice is not an artefact of where the grid stopped; a choice still at
  an edge is reported as such. Controls (``*-shuffled``) and ``seqkd+uld`` use the value of the method they
  control.
- **Reported runs**: :data:`SEEDS` (5 seeds, not the grid's), the same windows per seed for every run.

A difference counts when it is larger than twice the larger of the two runs' seed standard
deviations (:func:`compare`). ``python -m uldviz protocol`` runs it all (resuming from the results
file), ``--report`` prints the tables.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

from uldviz.distill.core import DistillConfig, train
from uldviz.distill.experiment import RUNS, mean_std, run_config, run_label, shuffled_control

__all__ = [
    "REGIMES",
    "GRID_SEEDS",
    "SEEDS",
    "results_path",
    "regime_config",
    "load_records",
    "grid_values",
    "select_value",
    "ready_tasks",
    "run_protocol",
    "compare",
    "kl_share",
    "summarize_protocol",
    "COMPARISONS",
    "result_rows",
    "comparison_rows",
    "find_comparison",
    "beats",
]

#: The two regimes, as changes to the base config; fixed before the runs.
REGIMES = {
    "data-poor": dict(train_fraction=0.03),
    "data-rich": dict(train_fraction=1.0),
}
#: Seeds of the hyper-parameter grids (validation only) and of the reported runs.
GRID_SEEDS = (100, 101)
SEEDS = (0, 1, 2, 3, 4)
#: The one command that (re)generates the shipped results, resuming them; every record carries it.
COMMAND = "python -m uldviz protocol"
#: How many times a grid is extended (×3 or ÷3) beyond an edge that wins on validation.
MAX_EXTENSIONS = 2


def results_path() -> Path:
    """The shipped protocol results: ``data/results/protocol_runs.jsonl`` (one JSON record per run)."""
    from uldviz.env import data_dir

    return Path(data_dir()) / "results" / "protocol_runs.jsonl"


def regime_config(regime: str, base: DistillConfig | None = None) -> DistillConfig:
    """The base config of a regime (:data:`REGIMES`)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose from {', '.join(REGIMES)}")
    return replace(base or DistillConfig(), **REGIMES[regime])


# --------------------------------------------------------------------------- records
def _comparable(cfg: dict) -> dict:
    """A config dict without the fields that do not change results (device, mixed precision)."""
    return {k: v for k, v in cfg.items() if k not in ("device", "amp")}


def load_records(path: Path | str | None = None) -> list[dict]:
    """Every run record of a protocol results file (JSON lines); an empty list if there is none."""
    path = Path(path) if path is not None else results_path()
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{i} is not a JSON record ({err})") from err
    return out


def _record(regime: str, spec: str, seed: int, phase: str, res) -> dict:
    """The JSON record of one finished run."""
    name, _, value = spec.partition("@")
    return {
        "regime": regime, "run": name, "spec": spec, "value": float(value) if value else None, "seed": seed,
        "phase": phase, "config": res.config, "steps_done": res.steps_done,
        "val_steps": res.val_steps, "val_bpb": [round(v, 5) for v in res.val_bpb],
        "train_ce": [round(v, 4) for v in res.train_ce[::10]],
        "selected_step": res.selected_step, "val_selected": res.val_selected,
        "test_selected": res.test_selected, "test_final": res.test_final, "seconds": round(res.seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": COMMAND,
    }


def _protocol_worker(regime: str, spec: str, seed: int, base: dict, phase: str) -> dict:
    """Process-pool task: one protocol run, returned as its record."""
    from uldviz.distill import experiment

    cfg = run_config(spec, regime_config(regime, DistillConfig(**base)), seed=seed)
    return _record(regime, spec, seed, phase, train(cfg, experiment._WORKER_SETUP, name=spec, sample_prompt=None))


# --------------------------------------------------------------------------- selection and scheduling
def _grid_records(records, regime: str, run: str) -> dict:
    """value -> the grid records of ``run`` in ``regime``."""
    out: dict = {}
    for r in records:
        if r["regime"] == regime and r["run"] == run and r["phase"] == "grid":
            out.setdefault(r["value"], []).append(r)
    return out


def _beyond(v: float, up: bool) -> float:
    """The next grid value beyond an edge: ×3 or ÷3, rounded to 3 significant digits (it names runs)."""
    return float(f"{(v * 3 if up else v / 3):.3g}")


def grid_values(records, regime: str, run: str, grid_seeds=GRID_SEEDS) -> tuple[list, float | None]:
    """(the values of ``run``'s grid so far, the chosen value or None while a grid run is missing).

    The value with the lowest mean VALIDATION score (at each run's selected step) wins; a winner at an
    edge adds the next value beyond it (:func:`_beyond`), at most :data:`MAX_EXTENSIONS` times. Only
    validation scores are read: the test split never influences a choice.
    """
    values = sorted(float(v) for v in RUNS[run].grid)
    if not values:
        raise ValueError(f"run {run!r} has no grid to select from")
    found = _grid_records(records, regime, run)
    for extension in range(MAX_EXTENSIONS + 1):
        means = {}
        for v in values:
            got = [r["val_selected"] for r in found.get(v, []) if r["seed"] in grid_seeds]
            if len(got) < len(grid_seeds):
                return values, None
            means[v] = statistics.fmean(got)
        best = min(values, key=lambda v: means[v])
        if extension == MAX_EXTENSIONS or values[0] < best < values[-1]:
            return values, best
        values = sorted(values + [_beyond(best, up=best == values[-1])])
    return values, best


def select_value(records, regime: str, run: str, grid_seeds=GRID_SEEDS) -> float | None:
    """The chosen value of ``run`` in ``regime`` (:func:`grid_values`), None while its grid is incomplete."""
    return grid_values(records, regime, run, grid_seeds)[1]


def _owner(run: str) -> str | None:
    """The run whose grid decides ``run``'s value (itself, the method it controls, or None)."""
    spec = RUNS[run]
    return spec.inherits or (run if spec.grid else None)


def ready_tasks(records, regimes, runs, base: DistillConfig, seeds=SEEDS, grid_seeds=GRID_SEEDS) -> list[tuple]:
    """The protocol runs not done yet whose settings are known, best first: (regime, spec, seed, base, phase).

    Grid runs are always ready; a tuned run's (and its controls') reported seeds become ready once its
    grid is complete. Order: regime by regime, grid runs first, then seed by seed.
    """
    done = {(r["regime"], r["spec"], r["seed"]) for r in records}
    base_dict = asdict(base)
    owners = {o for run in runs if (o := _owner(run))}
    tasks = []
    for ri, regime in enumerate(regimes):
        for run in sorted(owners, key=list(RUNS).index):
            for v in grid_values(records, regime, run, grid_seeds)[0]:
                for seed in grid_seeds:
                    tasks.append(((ri, 0, 0, list(RUNS).index(run)), (regime, f"{run}@{v:g}", seed, base_dict, "grid")))
        for run in runs:
            owner = _owner(run)
            value = select_value(records, regime, owner, grid_seeds) if owner else None
            if owner and value is None:
                continue
            spec = f"{run}@{value:g}" if owner else run
            for si, seed in enumerate(seeds):
                tasks.append(((ri, 1, si, list(RUNS).index(run)), (regime, spec, seed, base_dict, "final")))
    tasks.sort(key=lambda t: t[0])
    return [t for _, t in tasks if (t[0], t[1], t[2]) not in done]


def _check_compatible(records, base: DistillConfig) -> None:
    """Refuse to mix results made with another base configuration (say which fields differ)."""
    for r in records:
        want = _comparable(asdict(run_config(r["spec"], regime_config(r["regime"], base), seed=r["seed"])))
        have = _comparable(r["config"])
        if want != have:
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            raise ValueError(f"the results file holds a run ({r['regime']}, {r['spec']}, seed {r['seed']}) made with "
                             f"other settings ({', '.join(diff)}); use another --out or --fresh")


def run_protocol(path, regimes=tuple(REGIMES), runs=tuple(RUNS), base: DistillConfig | None = None, jobs: int = 2,
                 preset: str = "offline", seeds=SEEDS, grid_seeds=GRID_SEEDS, log=print) -> list[dict]:
    """Run every missing protocol run, appending each record to ``path`` as it finishes (resumable).

    Ctrl-C stops at once; the runs already written stay, and the next call resumes.
    """
    from uldviz.distill.experiment import run_tasks

    base = base or DistillConfig()
    path = Path(path)
    records = load_records(path)
    _check_compatible(records, base)
    path.parent.mkdir(parents=True, exist_ok=True)
    total = [len(records)]

    def next_task(in_flight):
        busy = {(t[0], t[1], t[2]) for t in in_flight}
        for t in ready_tasks(records, regimes, runs, base, seeds, grid_seeds):
            if (t[0], t[1], t[2]) not in busy:
                return t
        return None

    def on_result(task, rec):
        records.append(rec)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        total[0] += 1
        log(f"[{total[0]}] {rec['regime']} {rec['spec']} seed {rec['seed']} ({rec['phase']}): validation "
            f"{rec['val_selected']:.4f}, test {rec['test_selected']:.4f} at step {rec['selected_step']} "
            f"(final {rec['test_final']:.4f}), {rec['seconds']:.0f} s")

    run_tasks(next_task, on_result, preset, jobs, worker=_protocol_worker)
    return records


# --------------------------------------------------------------------------- summaries
def _stats(vals: list) -> dict:
    """:func:`~uldviz.distill.experiment.mean_std` with the number of seeds ``n``."""
    return {**mean_std(vals), "n": len(vals)}


#: The comparisons the notebooks report: (a, b, what it measures). Differences are a − b (negative: a better).
COMPARISONS = [
    ("ce-ls", "ce", "a teacherless regulariser vs early-stopped CE"),
    ("uld-offset", "ce", "ULD vs early-stopped CE"),
    ("uld-offset", "ce-ls", "ULD vs label smoothing"),
    ("uld-offset", "uld-shuffled", "context-specific transfer of ULD (method − shuffled control)"),
    ("uld-positional", "uld-offset", "positional vs offset pairing"),
    ("seqkd", "ce", "teacher-written text vs the real text"),
    ("seqkd+uld", "seqkd", "ULD on top of teacher-written text"),
    ("hybrid", "ce", "hybrid vs early-stopped CE"),
    ("hybrid", "ce-ls", "hybrid vs label smoothing"),
    ("hybrid", "hybrid-shuffled", "context-specific transfer of hybrid (method − shuffled control)"),
    ("chunk-lik", "ce", "chunk likelihood vs early-stopped CE"),
    ("chunk-lik", "ce-ls", "chunk likelihood vs label smoothing"),
    ("chunk-lik", "chunk-lik-shuffled", "context-specific transfer of chunk likelihood (method − shuffled control)"),
    ("kl-same", "ce-same", "KL with one shared tokenizer vs its CE"),
]


def compare(a: list, b: list, seeds_a: list, seeds_b: list) -> dict:
    """a − b over seeds: difference of means, the paired std of per-seed differences, the 2 × max-std bar.

    ``beyond`` is True when |difference| > 2 × max(std_a, std_b): the kit's rule for a difference that counts.
    """
    sa, sb = _stats(a), _stats(b)
    paired = [x - dict(zip(seeds_b, b))[s] for x, s in zip(a, seeds_a) if s in seeds_b]
    diff = sa["mean"] - sb["mean"]
    bar = 2 * max(sa["std"], sb["std"])
    return {"diff": diff, "paired_std": _stats(paired)["std"] if paired else float("nan"), "bar": bar,
            "beyond": abs(diff) > bar, "n": min(sa["n"], sb["n"])}


def kl_share(means: dict, run: str) -> float:
    r"""Share of the same-tokenizer KL gain run X recovers: :math:`(\mathrm{CE}-X)/(\mathrm{CE_s}-\mathrm{KL_s})`.

    NaN when KL did not improve on its CE (no gain to share) or a run is missing.
    """
    need = ("ce", "ce-same", "kl-same", run)
    if any(k not in means for k in need):
        return float("nan")
    gain = means["ce-same"] - means["kl-same"]
    return (means["ce"] - means[run]) / gain if gain > 0 else float("nan")


def summarize_protocol(records, seeds=SEEDS, grid_seeds=GRID_SEEDS) -> dict:
    """Per regime: the grid choices, each run's test scores (selected and final), the comparisons, KL shares.

    Only complete information is reported: a run appears with the seeds it has (``n``), a comparison
    only when both runs exist.
    """
    out: dict = {}
    for regime in REGIMES:
        recs = [r for r in records if r["regime"] == regime]
        if not recs:
            continue
        selection = {}
        for run, spec in RUNS.items():
            if spec.grid and (grid := _grid_records(recs, regime, run)):
                values, chosen = grid_values(recs, regime, run, grid_seeds)
                selection[run] = {"grid": {f"{v:g}": statistics.fmean(r["val_selected"] for r in grid[v])
                                           for v in sorted(grid)},
                                  "chosen": chosen, "extended": len(values) > len(spec.grid),
                                  "at_edge": chosen is not None and chosen in (values[0], values[-1])}
        runs = {}
        for run in RUNS:
            owner = _owner(run)
            chosen = select_value(recs, regime, owner, grid_seeds) if owner else None
            if owner and chosen is None:
                continue
            finals = sorted((r for r in recs if r["run"] == run and r["phase"] == "final" and r["seed"] in seeds
                             and (owner is None or r["value"] == chosen)), key=lambda r: r["seed"])
            if not finals:
                continue
            runs[run] = {"spec": finals[0]["spec"], "label": run_label(finals[0]["spec"]),
                         "seeds": [r["seed"] for r in finals],
                         "selected": _stats([r["test_selected"] for r in finals]),
                         "final": _stats([r["test_final"] for r in finals]),
                         "val_selected": _stats([r["val_selected"] for r in finals]),
                         "selected_step": [r["selected_step"] for r in finals],
                         "seconds": _stats([r["seconds"] for r in finals]),
                         "test_selected": [r["test_selected"] for r in finals],
                         "test_final": [r["test_final"] for r in finals]}
        comps = []
        for a, b, what in COMPARISONS:
            if a in runs and b in runs:
                for when in ("selected", "final"):
                    c = compare(runs[a][f"test_{when}"], runs[b][f"test_{when}"], runs[a]["seeds"], runs[b]["seeds"])
                    comps.append({"a": a, "b": b, "what": what, "when": when, **c})
        shares = {when: {run: kl_share({k: v[when]["mean"] for k, v in runs.items()}, run)
                         for run in runs if RUNS[run].family not in ("same",) and run != "ce"}
                  for when in ("selected", "final")}
        out[regime] = {"base": REGIMES[regime], "selection": selection, "runs": runs, "comparisons": comps,
                       "kl_share": shares}
    return out


# --------------------------------------------------------------------------- tables for the notebooks
def result_rows(summary: dict, regime: str, runs=None) -> list[list]:
    """One row per run of ``regime``: label, value, test at the selected step and at the last (mean ± std), n."""
    s = summary[regime]["runs"]
    rows = []
    for run in runs or list(s):
        if run not in s:
            continue
        r = s[run]
        value = r["spec"].partition("@")[2] or ""
        rows.append([r["label"].split(" (")[0], value, f"{r['selected']['mean']:.4f} ± {r['selected']['std']:.4f}",
                     f"{r['final']['mean']:.4f} ± {r['final']['std']:.4f}", r["selected"]["n"]])
    return rows


def comparison_rows(summary: dict, regime: str, pairs=None, when: str = "selected") -> list[list]:
    """One row per comparison a − b at ``when``: what, difference, paired std, the 2 × max-std bar, verdict."""
    rows = []
    for c in summary[regime]["comparisons"]:
        if c["when"] != when or (pairs is not None and (c["a"], c["b"]) not in pairs):
            continue
        verdict = ("**a better, beyond 2×std**" if c["diff"] < 0 else "**b better, beyond 2×std**") if c["beyond"] \
            else "within noise"
        rows.append([f"`{c['a']}` − `{c['b']}`", c["what"], f"{c['diff']:+.4f}", f"{c['paired_std']:.4f}",
                     f"{c['bar']:.4f}", verdict])
    return rows


def find_comparison(summary: dict, regime: str, a: str, b: str, when: str = "selected") -> dict | None:
    """The comparison a − b of ``regime`` at ``when`` (None if either run is missing)."""
    for c in summary.get(regime, {}).get("comparisons", []):
        if (c["a"], c["b"], c["when"]) == (a, b, when):
            return c
    return None


def beats(summary: dict, regime: str, method: str, others=("ce", "ce-ls")) -> dict:
    """Does ``method`` beat each of ``others`` and its own shuffled control beyond 2 × the larger std (selected step)?

    Returns {other: True/False/None (missing)}; the control is under the key ``"shuffled"`` when it exists.
    """
    out = {}
    for other in others:
        c = find_comparison(summary, regime, method, other)
        out[other] = None if c is None else bool(c["beyond"] and c["diff"] < 0)
    control = shuffled_control(method)
    if control:
        c = find_comparison(summary, regime, method, control)
        out["shuffled"] = None if c is None else bool(c["beyond"] and c["diff"] < 0)
    return out
