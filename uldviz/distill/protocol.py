r"""The evaluation protocol of notebooks 03 and 04: does the teacher teach, or only regularise?

Fixed before any run (and recorded here, so the shipped results regenerate with one command):

- **Splits**: train / validation / test of whole documents (:func:`uldviz.io.corpus.train_val_test_split`).
  Each run's checkpoint is the validation minimum of its curve (early stopping); hyper-parameters
  are chosen on validation; the reported score is test bits per byte, at the selected step and at
  the last step.
- **Regimes** (:data:`REGIMES`), all reported: *3 % of the text, 300 steps* (``data-poor``: the student
  over-fits within the budget); *all the text, 300 steps* (``data-rich``: bounded by its 300 steps, not by
  the data — every CE run's selected checkpoint is its last step); *all the text, CE converged*
  (``converged``): the step budget is fixed by a CE pilot on the grid seeds only (:func:`converged_budget`):
  budgets of :data:`PILOT_BUDGETS` steps are tried in order, and the first at which both grid seeds' CE
  validation minimum falls at or before :data:`PILOT_MIN_AT` of the budget (CE has stopped improving before
  the budget ran out) is the regime's budget (the largest if none is); evaluation every budget /
  :data:`PILOT_EVALS` steps. It runs the methods, their controls and the references (:data:`CONVERGED_RUNS`) with
  the λ and ε the data-rich grids chose (same text; a grid at this budget would cost more than the rest of the
  protocol together), decided before any of its runs. An
  earlier run at 10 % was stopped early (``data/results/regime_fraction0.1_partial.json``); not used.
- **Tuning**: each tuned run tries its grid (:data:`~uldviz.distill.experiment.RUNS`, e.g. λ ∈ {0.3, 1, 3})
  with :data:`GRID_SEEDS`; the value with the lowest mean validation score at the selected step wins. A
  winner at an edge of the grid extends it by a factor of 3 beyond that edge, at most :data:`MAX_EXTENSIONS`
  times (:func:`grid_values`), so that a choice is not an artefact of where the grid stopped; a choice still at
  an edge is reported as such. Controls (``*-shuffled``) and ``seqkd+uld`` use the value of the method they
  control.
- **Reported runs**: :data:`SEEDS` (5 seeds, not the grid's), the same windows per seed for every run.
- **Verdicts** (:mod:`uldviz.maths.stats`): each comparison of :data:`COMPARISONS` is the per-seed paired
  difference a − b with Student's interval; within a regime the comparisons form one family judged with
  Holm's step-down at a family-wise 5 %, each interval drawn at the level it is tested at, and the words
  come from the interval ("better", "worse", or "no difference larger than X" — never "no effect").
- **More seeds** (:func:`extension_runs`, fixed before any extra seed ran): a comparison of
  :data:`LEANED_ON` whose 5-seed interval at the family's most demanding level (α / the number of
  :data:`COMPARISONS`) contains 0 but does not rule out a difference of :data:`EXTENSION_BOUND` bits per byte
  gets :data:`EXTRA_SEEDS` (5 more) for both of its runs, once; the
  verdict is then read from all 10 seeds, whatever it shows. (An extension conditional on the first result is a
  mild form of optional stopping; it is declared here and happens at most once.)

``python -m uldviz protocol`` runs it all (resuming from the results file), ``--report`` prints the tables.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from uldviz.distill.core import DistillConfig, train
from uldviz.distill.experiment import RUNS, mean_std, run_config, run_label, shuffled_control
from uldviz.maths.stats import ALPHA, judge_family, paired_difference

__all__ = [
    "Regime",
    "REGIMES",
    "GRID_SEEDS",
    "SEEDS",
    "EXTRA_SEEDS",
    "PILOT_BUDGETS",
    "results_path",
    "regime_config",
    "converged_budget",
    "load_records",
    "grid_values",
    "select_value",
    "ready_tasks",
    "run_protocol",
    "kl_share",
    "summarize_protocol",
    "COMPARISONS",
    "LEANED_ON",
    "extension_runs",
    "result_rows",
    "comparison_rows",
    "find_comparison",
    "beats",
    "regime_label",
    "regime_scope",
    "COMPARISON_HEADER",
    "verdict_line",
    "verdict_block",
    "pilot_rows",
    "paired_values",
]


@dataclass(frozen=True)
class Regime:
    """A regime: its honest name, its changes to the base config, the runs it has, whether a pilot fixes its steps."""

    label: str
    changes: dict
    runs: tuple | None = None  # None: every run of RUNS
    pilot: bool = False  # steps and eval_every come from the CE pilot (converged_budget)
    tuned_from: str | None = None  # take λ and ε from this regime's grids instead of running grids here


#: Runs of the converged regime, in the order they run (all seeds of one before the next): the methods, their
#: controls and the references (no seqkd, no positional pairing).
CONVERGED_RUNS = ("ce", "uld-offset", "uld-shuffled", "hybrid", "hybrid-shuffled", "ce-ls", "xtoken-pkl",
                  "xtoken-pkl-shuffled", "chunk-lik", "chunk-lik-shuffled", "xtoken-hkl", "xtoken-hkl-shuffled",
                  "ce-same", "kl-same")
#: The regimes, fixed before the runs. Keys are the record names; labels say what each regime is.
REGIMES = {
    "data-poor": Regime("3 % of the text, 300 steps", dict(train_fraction=0.03)),
    "data-rich": Regime("all the text, 300 steps", dict(train_fraction=1.0)),
    "converged": Regime("all the text, CE trained to its validation minimum", dict(train_fraction=1.0),
                        CONVERGED_RUNS, pilot=True, tuned_from="data-rich"),
}
#: Seeds of the hyper-parameter grids and the pilot (validation only), of the reported runs, of an extension.
GRID_SEEDS = (100, 101)
SEEDS = (0, 1, 2, 3, 4)
EXTRA_SEEDS = (5, 6, 7, 8, 9)
#: The converged regime's pilot: budgets tried in order, evaluations per run, where CE's minimum must fall.
PILOT_BUDGETS = (600, 1200, 2400, 4800)
PILOT_EVALS = 24
PILOT_MIN_AT = 0.8
#: An undecided comparison of LEANED_ON whose interval allows a difference this large (bits per byte) gets seeds.
EXTENSION_BOUND = 0.02
#: The one command that (re)generates the shipped results, resuming them; every record carries it.
COMMAND = "python -m uldviz protocol"
#: How many times a grid is extended (×3 or ÷3) beyond an edge that wins on validation.
MAX_EXTENSIONS = 2


def results_path() -> Path:
    """The shipped protocol results: ``data/results/protocol_runs.jsonl`` (one JSON record per run)."""
    from uldviz.env import data_dir

    return Path(data_dir()) / "results" / "protocol_runs.jsonl"


def _pilot_config(budget: int, base: DistillConfig) -> DistillConfig:
    """The CE pilot run of the converged regime for a budget of ``budget`` steps."""
    return run_config("ce", replace(base, **REGIMES["converged"].changes, steps=budget,
                                    eval_every=max(1, budget // PILOT_EVALS)))


def converged_budget(records, grid_seeds=GRID_SEEDS) -> tuple[int | None, int | None]:
    """(the converged regime's step budget or None, the pilot budget still to run or None), from the pilot records.

    A budget S is accepted when every grid seed's CE pilot of S steps reached its validation minimum at or before
    PILOT_MIN_AT · S; budgets are tried in the order of :data:`PILOT_BUDGETS`; the last one is taken if none is.
    """
    pilots = {(r["config"]["steps"], r["seed"]): r for r in records
              if r["regime"] == "converged" and r["phase"] == "pilot"}
    for budget in PILOT_BUDGETS:
        runs = [pilots.get((budget, s)) for s in grid_seeds]
        if any(r is None for r in runs):
            return None, budget
        if all(r["selected_step"] <= PILOT_MIN_AT * budget for r in runs) or budget == PILOT_BUDGETS[-1]:
            return budget, None
    return PILOT_BUDGETS[-1], None


def regime_config(regime: str, base: DistillConfig | None = None, records=None) -> DistillConfig | None:
    """The base config of a regime (:data:`REGIMES`); for a piloted regime None while its budget is unknown."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose from {', '.join(REGIMES)}")
    reg = REGIMES[regime]
    cfg = replace(base or DistillConfig(), **reg.changes)
    if reg.pilot:
        budget, _ = converged_budget(records or [])
        if budget is None:
            return None
        cfg = replace(cfg, steps=budget, eval_every=max(1, budget // PILOT_EVALS))
    return cfg


def regime_runs(regime: str, runs) -> list[str]:
    """The runs of ``runs`` that ``regime`` has."""
    have = REGIMES[regime].runs
    return [r for r in runs if have is None or r in have]


def regime_label(regime: str, records=None) -> str:
    """The regime's name in words; for the piloted regime, with its budget and whether CE converged within it."""
    reg = REGIMES[regime]
    if not reg.pilot:
        return reg.label
    budget, _ = converged_budget(records or [])
    if budget is None:
        return f"{reg.label} (budget not fixed yet)"
    pilots = [r for r in (records or []) if r["regime"] == regime and r["phase"] == "pilot"
              and r["config"]["steps"] == budget]
    if all(r["selected_step"] <= PILOT_MIN_AT * budget for r in pilots):
        return f"all the text, {budget} steps: CE converged within them"
    return (f"all the text, {budget} steps: the pilot's largest budget; CE had not converged (its validation still "
            "improved at the end)")


def regime_scope(regime: str, records=None) -> str:
    """The setting a verdict of ``regime`` rests on, in a few words (for every printed verdict line)."""
    from uldviz.distill.data import teacher_card_summary

    cfg = regime_config(regime, records=records)
    label = regime_label(regime, records)
    steps = f"{cfg.steps} steps" if cfg is not None else "steps not fixed yet"
    return f"{label}{'' if steps in label else f' ({steps})'}; {teacher_card_summary()}"


# --------------------------------------------------------------------------- records
def _comparable(cfg: dict) -> dict:
    """A config dict without the fields that do not change results (device, mixed precision); fields added to
    :class:`DistillConfig` after a record was written take their default (the value the run used)."""
    defaults = {f.name: f.default for f in fields(DistillConfig)}
    return {k: v for k, v in {**defaults, **cfg}.items() if k not in ("device", "amp")}


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


def _protocol_worker(regime: str, spec: str, seed: int, cfg: dict, phase: str) -> dict:
    """Process-pool task: one protocol run (its whole config given), returned as its record."""
    from uldviz.distill import experiment

    res = train(DistillConfig(**cfg), experiment._WORKER_SETUP, name=spec, sample_prompt=None)
    return _record(regime, spec, seed, phase, res)


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
    """The chosen value of ``run`` in ``regime`` (:func:`grid_values`; for a regime tuned from another, that
    regime's choice), None while the grid is incomplete."""
    source = REGIMES[regime].tuned_from if regime in REGIMES else None
    return grid_values(records, source or regime, run, grid_seeds)[1]


def _owner(run: str) -> str | None:
    """The run whose grid decides ``run``'s value (itself, the method it controls, or None)."""
    spec = RUNS[run]
    return spec.inherits or (run if spec.grid else None)


def _key(regime, spec, seed, phase, steps) -> tuple:
    """What identifies a run in the results file: pilots by their budget, the others by (regime, spec, seed)."""
    return (regime, spec, seed, phase, steps) if phase == "pilot" else (regime, spec, seed)


def ready_tasks(records, regimes, runs, base: DistillConfig, seeds=SEEDS, grid_seeds=GRID_SEEDS) -> list[tuple]:
    """The protocol runs not done yet whose settings are known, best first: (regime, spec, seed, config, phase).

    A piloted regime first runs its pilot (CE on the grid seeds, one budget at a time). Grid runs are always
    ready; a tuned run's (and its controls') reported seeds become ready once its grid is complete; the extra
    seeds of :func:`extension_runs` once the 5-seed comparison that asks for them is complete. Order: regime by
    regime, pilot and grid runs first, then seed by seed.
    """
    done = {_key(r["regime"], r["spec"], r["seed"], r["phase"], r["config"].get("steps")) for r in records}
    tasks = []
    order = list(RUNS).index
    for ri, regime in enumerate(regimes):
        if REGIMES[regime].pilot:
            budget, pending = converged_budget(records, grid_seeds)
            if budget is None:
                cfg = asdict(_pilot_config(pending, base))
                for seed in grid_seeds:
                    tasks.append(((ri, 0, 0, 0), (regime, "ce", seed, {**cfg, "seed": seed}, "pilot")))
                continue
        reg_base = regime_config(regime, base, records)
        mine = regime_runs(regime, runs)
        owners = {o for run in mine if (o := _owner(run))}
        for run in sorted(owners, key=order) if not REGIMES[regime].tuned_from else ():
            for v in grid_values(records, regime, run, grid_seeds)[0]:
                for seed in grid_seeds:
                    spec = f"{run}@{v:g}"
                    tasks.append(((ri, 0, 0, order(run)), (regime, spec, seed,
                                                          asdict(run_config(spec, reg_base, seed=seed)), "grid")))
        extra = extension_runs(records, regime)
        for run in mine:
            owner = _owner(run)
            value = select_value(records, regime, owner, grid_seeds) if owner else None
            if owner and value is None:
                continue
            spec = f"{run}@{value:g}" if owner else run
            run_seeds = list(seeds) + (list(EXTRA_SEEDS) if run in extra else [])
            for si, seed in enumerate(run_seeds):
                # seed by seed, except in a regime with its own run list (the costly converged one): run by run, in
                # that list's order of priority, so that the comparisons that matter most complete first
                key = (ri, 1, REGIMES[regime].runs.index(run), si) if REGIMES[regime].runs else (ri, 1, si, order(run))
                tasks.append((key, (regime, spec, seed, asdict(run_config(spec, reg_base, seed=seed)), "final")))
    tasks.sort(key=lambda t: t[0])
    return [t for _, t in tasks if _key(t[0], t[1], t[2], t[4], t[3]["steps"]) not in done]


def _check_compatible(records, base: DistillConfig) -> None:
    """Refuse to mix results made with another base configuration (say which fields differ)."""
    for r in records:
        if r["phase"] == "pilot":
            want = asdict(replace(_pilot_config(r["config"]["steps"], base), seed=r["seed"]))
        else:
            reg = regime_config(r["regime"], base, records)
            if reg is None:
                raise ValueError(f"the results file holds a {r['regime']} run but not the pilot that fixes its steps")
            want = asdict(run_config(r["spec"], reg, seed=r["seed"]))
        want, have = _comparable(want), _comparable(r["config"])
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
        busy = {_key(t[0], t[1], t[2], t[4], t[3]["steps"]) for t in in_flight}
        for t in ready_tasks(records, regimes, runs, base, seeds, grid_seeds):
            if _key(t[0], t[1], t[2], t[4], t[3]["steps"]) not in busy:
                return t
        return None

    def on_result(task, rec):
        records.append(rec)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        total[0] += 1
        log(f"[{total[0]}] {rec['regime']} {rec['spec']} seed {rec['seed']} ({rec['phase']}, {rec['steps_done']} "
            "steps): "
            f"validation {rec['val_selected']:.4f}, test {rec['test_selected']:.4f} at step {rec['selected_step']} "
            f"(final {rec['test_final']:.4f}), {rec['seconds']:.0f} s")

    run_tasks(next_task, on_result, preset, jobs, worker=_protocol_worker)
    return records


# --------------------------------------------------------------------------- summaries
def _stats(vals: list) -> dict:
    """:func:`~uldviz.distill.experiment.mean_std` with the number of seeds ``n``."""
    return {**mean_std(vals), "n": len(vals)}


#: The comparisons fixed before the runs: (a, b, what it measures). Differences are a − b (negative: a better).
#: Within a regime they form one family (Holm, family-wise 5 %), whichever of them exist there.
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
    ("xtoken-pkl", "ce", "X-Token P-KL vs early-stopped CE"),
    ("xtoken-pkl", "xtoken-pkl-shuffled", "context-specific transfer of P-KL (method − shuffled control)"),
    ("xtoken-pkl", "hybrid", "X-Token P-KL vs the hybrid"),
    ("xtoken-hkl", "ce", "X-Token H-KL vs early-stopped CE"),
    ("xtoken-hkl", "xtoken-hkl-shuffled", "context-specific transfer of H-KL (method − shuffled control)"),
    ("xtoken-hkl", "hybrid", "X-Token H-KL vs the hybrid"),
    ("kl-same", "ce-same", "KL with one shared tokenizer vs its CE"),
]
#: The comparisons the notebooks' conclusions rest on: the ones :func:`extension_runs` may give more seeds.
LEANED_ON = {("uld-offset", "ce"), ("uld-offset", "ce-ls"), ("uld-offset", "uld-shuffled"), ("hybrid", "ce"),
             ("hybrid", "ce-ls"), ("hybrid", "hybrid-shuffled"), ("chunk-lik", "ce"),
             ("chunk-lik", "chunk-lik-shuffled"), ("xtoken-pkl", "xtoken-pkl-shuffled"), ("xtoken-pkl", "hybrid"),
             ("xtoken-hkl", "xtoken-hkl-shuffled"), ("xtoken-hkl", "hybrid")}


def kl_share(means: dict, run: str) -> float:
    r"""Share of the same-tokenizer KL gain run X recovers: :math:`(\mathrm{CE}-X)/(\mathrm{CE_s}-\mathrm{KL_s})`.

    NaN when KL did not improve on its CE (no gain to share) or a run is missing.
    """
    need = ("ce", "ce-same", "kl-same", run)
    if any(k not in means for k in need):
        return float("nan")
    gain = means["ce-same"] - means["kl-same"]
    return (means["ce"] - means[run]) / gain if gain > 0 else float("nan")


def _finals(recs, regime: str, run: str, grid_seeds, seeds) -> list[dict]:
    """The reported records of ``run`` in ``regime`` (at its chosen value), by seed."""
    owner = _owner(run)
    chosen = select_value(recs, regime, owner, grid_seeds) if owner else None
    if owner and chosen is None:
        return []
    return sorted((r for r in recs if r["regime"] == regime and r["run"] == run and r["phase"] == "final"
                   and r["seed"] in seeds and (owner is None or r["value"] == chosen)), key=lambda r: r["seed"])


def _judged(runs: dict, when: str, alpha: float = ALPHA) -> list[dict]:
    """The regime's family of comparisons at ``when``, each with its paired interval and verdict (Holm)."""
    family = [(a, b, what) for a, b, what in COMPARISONS if a in runs and b in runs]
    diffs = [paired_difference(dict(zip(runs[a]["seeds"], runs[a][f"test_{when}"])),
                               dict(zip(runs[b]["seeds"], runs[b][f"test_{when}"]))) for a, b, _ in family]
    out = []
    for (a, b, what), v in zip(family, judge_family(diffs, alpha)):
        d = v.diff
        out.append({"a": a, "b": b, "what": what, "when": when, "diff": d.mean, "paired_std": d.sd, "n": d.n,
                    "diffs": list(d.diffs), "seeds": list(d.seeds), "p": d.p, "level": v.level, "low": v.low,
                    "high": v.high, "confidence": v.confidence, "decided": v.decided, "bound": v.bound,
                    "verdict": v.words, "family_size": len(family)})
    return out


def extension_level() -> float:
    """The level of the extension rule's interval: α over the size of the whole pre-registered family (fixed)."""
    return ALPHA / len(COMPARISONS)


def extension_runs(records, regime: str, grid_seeds=GRID_SEEDS) -> set:
    """The runs of ``regime`` that get :data:`EXTRA_SEEDS` (the rule in the module docstring).

    Read from the 5-seed results of each comparison of :data:`LEANED_ON` alone: when its interval at confidence
    1 − :func:`extension_level` (the most demanding level of the regime's family, fixed in advance) contains 0
    and allows a difference of more than :data:`EXTENSION_BOUND`, both of its runs get more seeds. It depends
    only on the two runs' first 5 seeds, so it never changes as other runs or more seeds arrive.
    """
    recs = [r for r in records if r["regime"] == regime]
    out = set()
    for a, b in sorted(LEANED_ON):
        if a not in RUNS or b not in RUNS:
            continue
        fa, fb = (_finals(recs, regime, run, grid_seeds, SEEDS) for run in (a, b))
        if len(fa) < len(SEEDS) or len(fb) < len(SEEDS):
            continue
        d = paired_difference({r["seed"]: r["test_selected"] for r in fa}, {r["seed"]: r["test_selected"] for r in fb})
        lo, hi = d.interval(1.0 - extension_level())
        if lo <= 0 <= hi and max(abs(lo), abs(hi)) > EXTENSION_BOUND:
            out |= {a, b}
    return out


def summarize_protocol(records, seeds=SEEDS + EXTRA_SEEDS, grid_seeds=GRID_SEEDS) -> dict:
    """Per regime: the grid choices, each run's test scores (selected and final), the judged comparisons, KL shares.

    Only complete information is reported: a run appears with the seeds it has (``n``), a comparison only when
    both runs exist (paired on the seeds both have).
    """
    out: dict = {}
    for regime, reg in REGIMES.items():
        recs = [r for r in records if r["regime"] == regime]
        if not [r for r in recs if r["phase"] != "pilot"]:
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
            finals = _finals(recs, regime, run, grid_seeds, seeds)
            if not finals:
                continue
            runs[run] = {"spec": finals[0]["spec"], "label": run_label(finals[0]["spec"]),
                         "seeds": [r["seed"] for r in finals],
                         "selected": _stats([r["test_selected"] for r in finals]),
                         "final": _stats([r["test_final"] for r in finals]),
                         "val_selected": _stats([r["val_selected"] for r in finals]),
                         "selected_step": [r["selected_step"] for r in finals],
                         "steps": finals[0]["config"].get("steps"),
                         "seconds": _stats([r["seconds"] for r in finals]),
                         "test_selected": [r["test_selected"] for r in finals],
                         "test_final": [r["test_final"] for r in finals]}
        comps = _judged(runs, "selected") + _judged(runs, "final")
        shares = {when: {run: kl_share({k: v[when]["mean"] for k, v in runs.items()}, run)
                         for run in runs if RUNS[run].family not in ("same",) and run != "ce"}
                  for when in ("selected", "final")}
        budget = converged_budget(records, grid_seeds)[0] if reg.pilot else None
        out[regime] = {"label": regime_label(regime, records), "base": dict(reg.changes), "steps": budget or 300,
                       "selection": selection, "runs": runs, "comparisons": comps, "kl_share": shares,
                       "extended": sorted(extension_runs(records, regime, grid_seeds))}
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
    """One row per comparison a − b at ``when``: what, mean paired difference, its interval (at the Holm level), n,
    verdict."""
    rows = []
    for c in summary[regime]["comparisons"]:
        if c["when"] != when or (pairs is not None and (c["a"], c["b"]) not in pairs):
            continue
        verdict = f"**{c['a']} {c['verdict']}**" if c["decided"] else c["verdict"]
        rows.append([f"`{c['a']}` − `{c['b']}`", c["what"], f"{c['diff']:+.4f}",
                     f"[{c['low']:+.4f}, {c['high']:+.4f}] ({c['confidence']:.2%})", c["n"], verdict])
    return rows


def find_comparison(summary: dict, regime: str, a: str, b: str, when: str = "selected") -> dict | None:
    """The comparison a − b of ``regime`` at ``when`` (None if either run is missing)."""
    for c in summary.get(regime, {}).get("comparisons", []):
        if (c["a"], c["b"], c["when"]) == (a, b, when):
            return c
    return None


def beats(summary: dict, regime: str, method: str, others=("ce", "ce-ls")) -> dict:
    """Is ``method`` better than each of ``others`` and its own shuffled control (Holm-judged interval, selected step)?

    Returns {other: True/False/None (missing)}; the control is under the key ``"shuffled"`` when it exists.
    """
    out = {}
    for other in others:
        c = find_comparison(summary, regime, method, other)
        out[other] = None if c is None else bool(c["decided"] and c["diff"] < 0)
    control = shuffled_control(method)
    if control:
        c = find_comparison(summary, regime, method, control)
        out["shuffled"] = None if c is None else bool(c["decided"] and c["diff"] < 0)
    return out


#: Column heads of :func:`comparison_rows` (the notebooks' verdict tables).
COMPARISON_HEADER = ["a − b", "what it measures", "mean paired difference", "interval (its confidence)", "seeds",
                     "verdict"]


def verdict_line(summary: dict, regime: str, a: str, b: str, when: str = "selected") -> str:
    """One comparison in words (Markdown): a − b, its interval at the level Holm tests it at, the seeds, the verdict.

    The words are the interval's: "**a better than b**" / "**a worse than b**" when it excludes 0, otherwise
    "no difference larger than X" (X its farther end); "not run yet" when either run is missing.
    """
    c = find_comparison(summary, regime, a, b, when)
    if c is None:
        return f"`{a}` − `{b}`: not run yet"
    if c["decided"]:
        words = f"**`{a}` {c['verdict']} than `{b}`**"
    else:
        words = c["verdict"] + " bits per byte"
    return (f"`{a}` − `{b}` = {c['diff']:+.3f} bits per byte, {c['confidence']:.1%} interval "
            f"[{c['low']:+.3f}, {c['high']:+.3f}] over {c['n']} paired seeds: {words}")


def verdict_block(summary: dict, regime: str, pairs, records=None, when: str = "selected") -> str:
    """The verdicts of ``pairs`` in ``regime`` as Markdown: the setting they rest on (:func:`regime_scope`), then one
    bullet per comparison (:func:`verdict_line`); a regime without finished runs says so."""
    step = "each run's validation-selected step" if when == "selected" else "each run's last step"
    head = f"*{regime}* ({regime_scope(regime, records)}; {step}):"
    if regime not in summary or not summary[regime]["runs"]:
        return head + " not run yet."
    return head + "\n\n" + "\n".join(f"- {verdict_line(summary, regime, a, b, when)}" for a, b in pairs)


def pilot_rows(records) -> list[list]:
    """The converged regime's CE pilot, one row per run: budget, seed, the step of its validation minimum, the rule's
    bound (:data:`PILOT_MIN_AT` × budget) and whether CE had stopped improving by then."""
    rows = []
    for r in sorted((r for r in records if r["regime"] == "converged" and r["phase"] == "pilot"),
                    key=lambda r: (r["config"]["steps"], r["seed"])):
        budget = r["config"]["steps"]
        bound = PILOT_MIN_AT * budget
        rows.append([budget, r["seed"], r["selected_step"], f"{bound:g}",
                     "yes" if r["selected_step"] <= bound else "no: still improving"])
    return rows


def paired_values(summary: dict, regime: str, a: str, b: str, when: str = "selected") -> tuple[list, list]:
    """The two runs' test scores at ``when`` on the seeds both have, in seed order (what a comparison pairs)."""
    runs = summary.get(regime, {}).get("runs", {})
    if a not in runs or b not in runs:
        return [], []
    va, vb = (dict(zip(runs[r]["seeds"], runs[r][f"test_{when}"])) for r in (a, b))
    seeds = sorted(set(va) & set(vb))
    return [va[s] for s in seeds], [vb[s] for s in seeds]
