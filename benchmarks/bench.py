"""``python benchmarks/bench.py``: how fast, how exact and how memory-hungry the kit's ULD loss is.

Not part of the installed package: run it from a checkout (it puts the checkout's ``uldviz`` first on
the path). One run measures, side by side (so ratios hold on a noisy, shared machine):

1. ULD forward + backward on a batch of positions (student logits require grad), float32 on CPU
   (and bf16 on CUDA when present), against
   - the FLOOR: the two softmaxes plus one ``torch.sort`` of each side's probabilities (no grad),
   - ``plain``: the kit's one reference, :func:`uldviz.maths.losses.uld_reference` (zero-pad, ``torch.sort``,
     L1) after the softmaxes,
   - the per-sample loop: the paper's code structure, a Python loop over samples, each truncated to
     the shorter answer, each computed by the reference (also at batch 8 x 512),
   - KL on one shared vocabulary of the student's size (:func:`uldviz.maths.losses.kl_divergence`),
   - top-k ULD with the tail term at k = 100 and 1,000, with its relative error against the full value;
   and checks that the kit's value and gradient equal the reference's.
2. Exact/entropic OT scaling over N (:func:`uldviz.course.timing.write_ot_scaling`, the one OT timing file
   ``data/bench_ot.json`` that notebook 02 reads).
3. Peak memory of each variant as a multiple of the student logits' size, measured in a fresh
   subprocess (see :func:`memory_probe`).
4. The distillation step of notebook 03's default ULD run: steps/s and the share spent in the
   distillation term, timed through the training core's API (the term is a parameter of the loop).

Results go to JSON (``--out``, default ``benchmarks/results.json``) and a Markdown table next to it
(``RESULTS.md``). ``--quick`` runs tiny sizes in seconds (for the tests). Timings on a shared machine
vary; compare the ratios of one run, and run it under ``nice``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout: benchmark the kit next to this folder
    sys.path.insert(0, str(ROOT))

from uldviz.env import load_average  # noqa: E402
from uldviz.maths import _sorted_l1 as K  # noqa: E402
from uldviz.maths import checks as C  # noqa: E402
from uldviz.maths import losses as L  # noqa: E402

__all__ = [
    "plain_uld_loss",
    "reference_uld_loss",
    "floor_ops",
    "time_interleaved",
    "bench_uld_case",
    "bench_batch_reference",
    "synthetic_maps",
    "bench_identity_case",
    "bench_profile",
    "memory_probe",
    "bench_memory",
    "bench_ot",
    "bench_distill",
    "run_benchmark",
    "render_markdown",
    "main",
]

DEFAULT_OUT = ROOT / "benchmarks" / "results.json"
#: How the benchmark is started (recorded with every run and printed in RESULTS.md).
COMMAND = "python benchmarks/bench.py"

#: Sizes of the full run and of ``--quick`` (vocabularies: student, teacher).
FULL = dict(positions=512, vocabs=[(32000, 32000), (50257, 50257), (32000, 50257)], batch=8,
            batch_vocab=(32000, 32000), repeats=3, batch_repeats=1, topk=(100, 1000),
            mem_vocab=(32000, 32000), ot_sizes=(100, 200, 500, 1000, 2000, 5000, 10000), ot_budget=120.0,
            identity_vocab=(32000, 50257), identity_shared=20000)
QUICK = dict(positions=16, vocabs=[(500, 500), (400, 700)], batch=2, batch_vocab=(300, 300), repeats=1,
             batch_repeats=1, topk=(10, 100), mem_vocab=(2000, 2000), ot_sizes=(50, 100, 200), ot_budget=2.0,
             identity_vocab=(400, 700), identity_shared=150)


# --------------------------------------------------------------------------- the implementations compared
def plain_uld_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The reference ULD loss: float32 softmaxes, :func:`uldviz.maths.losses.uld_reference`, mean over positions."""
    q = torch.softmax(student_logits.float(), dim=-1)
    with torch.no_grad():
        p = torch.softmax(teacher_logits.float(), dim=-1)
    return L.uld_reference(q, p).mean()


def reference_uld_loss(student_logits, teacher_logits, student_sizes, teacher_sizes) -> torch.Tensor:
    """The paper's code structure: a Python loop over samples, each truncated to the shorter answer.

    ``student_logits`` (B, Ps, Vs), ``teacher_logits`` (B, Pt, Vt); sample i uses its first
    ``min(student_sizes[i], teacher_sizes[i])`` answer positions: :func:`plain_uld_loss` on them;
    then the mean over samples.
    """
    per_sample = []
    for i in range(student_logits.shape[0]):
        size = min(int(student_sizes[i]), int(teacher_sizes[i]))
        per_sample.append(plain_uld_loss(student_logits[i, :size], teacher_logits[i, :size]))
    return torch.stack(per_sample).mean()


def floor_ops(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    """The floor any sort-based ULD pays: both softmaxes and one ``torch.sort`` of each side (no grad)."""
    with torch.no_grad():
        torch.sort(torch.softmax(student_logits.float(), dim=-1), dim=-1, descending=True)
        torch.sort(torch.softmax(teacher_logits.float(), dim=-1), dim=-1, descending=True)


# --------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                     warmup: bool = True) -> dict[str, dict]:
    """Time each callable ``repeats`` times in round-robin order (so machine load hits all alike).

    Returns ``{name: {"median_s", "min_s", "all_s", "cpu_median_s"}}`` (wall clock, and the process's
    CPU time summed over its threads). One untimed warm-up call each first.
    """
    times: dict[str, list] = {k: [] for k in fns}
    cpu: dict[str, list] = {k: [] for k in fns}
    if warmup:
        for fn in fns.values():
            fn()
            _sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start, cstart = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cstart)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "all_s": v,
                "cpu_median_s": statistics.median(cpu[k])} for k, v in times.items()}


def _logits(rows_shape, vocab, device, dtype, seed, requires_grad=False) -> torch.Tensor:
    """Gaussian logits with std 3 (top-1000 of 32,000 hold about 87 % of the mass)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*rows_shape, vocab, generator=g) * 3.0).to(device=device, dtype=dtype)
    return x.requires_grad_(requires_grad)


def _fwd_bwd(loss_fn, s: torch.Tensor) -> Callable[[], None]:
    """A callable doing ``loss_fn(s).backward()`` with a fresh gradient each time."""

    def run():
        s.grad = None
        loss_fn(s).backward()

    return run


def bench_uld_case(positions: int, vs: int, vt: int, device: torch.device, dtype: torch.dtype,
                   repeats: int, topk=(100, 1000), seed: int = 0) -> dict:
    """Time every variant on one (positions, student vocab, teacher vocab) case; check equality and top-k error."""
    s = _logits((positions,), vs, device, dtype, seed, requires_grad=True)
    t = _logits((positions,), vt, device, dtype, seed + 1)
    t_same = _logits((positions,), vs, device, dtype, seed + 2)  # KL needs the student's vocabulary
    fns = {
        "floor": lambda: floor_ops(s, t),
        "uld": _fwd_bwd(lambda x: L.uld_loss(x, t), s),
        "plain": _fwd_bwd(lambda x: plain_uld_loss(x, t), s),
        "reference": _fwd_bwd(lambda x: reference_uld_loss(x[None], t[None], [positions], [positions]), s),
        "kl": _fwd_bwd(lambda x: L.kl_divergence(x, t_same), s),
    }
    ks = [k for k in topk if k <= max(vs, vt)]
    for k in ks:
        fns[f"top{k}"] = _fwd_bwd(lambda x, k=k: L.uld_loss(x, t, top_k=k), s)
    timing = time_interleaved(fns, repeats, device)
    floor = timing["floor"]["median_s"]
    # Equality with the plain implementation (value and gradient).
    s.grad = None
    fast = L.uld_loss(s, t)
    fast.backward()
    fast = fast.detach()
    g_fast = s.grad.clone()
    s.grad = None
    plain = plain_uld_loss(s, t)
    plain.backward()
    plain = plain.detach()
    g_plain = s.grad.clone()
    s.grad = None
    # Top-k relative error per position against the full value.
    with torch.no_grad():
        full = L.uld_loss(s, t, reduction="none").double()
        errs = {}
        for k in ks:
            approx = L.uld_loss(s, t, top_k=k, reduction="none").double()
            rel = (approx - full).abs() / full
            errs[f"top{k}"] = {"mean_rel_error": float(rel.mean()), "max_rel_error": float(rel.max()),
                               "never_above_full": bool((approx <= full + 1e-6).all())}
    return {
        "device": device.type,
        "dtype": str(dtype).replace("torch.", ""),
        "positions": positions,
        "vocab_student": vs,
        "vocab_teacher": vt,
        "seconds": {k: v["median_s"] for k, v in timing.items()},
        "seconds_min": {k: v["min_s"] for k, v in timing.items()},
        "cpu_seconds": {k: v["cpu_median_s"] for k, v in timing.items()},
        "over_floor": {k: v["median_s"] / floor for k, v in timing.items()},
        "uld_over_reference": timing["uld"]["median_s"] / timing["reference"]["median_s"],
        "topk_over_kl": {k: timing[k]["median_s"] / timing["kl"]["median_s"] for k in errs},
        "topk_error": errs,
        "equal_to_plain": {"value_abs_diff": float((fast.double() - plain.double()).abs()),
                           "grad_max_abs_diff": float((g_fast.double() - g_plain.double()).abs().max())},
    }


def bench_batch_reference(batch: int, positions: int, vs: int, vt: int, device: torch.device,
                          dtype: torch.dtype, repeats: int, seed: int = 10) -> dict:
    """The kit's batched ULD against the per-sample reference loop on B x P positions."""
    s = _logits((batch, positions), vs, device, dtype, seed, requires_grad=True)
    t = _logits((batch, positions), vt, device, dtype, seed + 1)
    sizes = [positions] * batch
    fns = {
        "uld": _fwd_bwd(lambda x: L.uld_loss(x, t), s),
        "reference": _fwd_bwd(lambda x: reference_uld_loss(x, t, sizes, sizes), s),
    }
    timing = time_interleaved(fns, repeats, device, warmup=False)
    s.grad = None
    with torch.no_grad():
        a = float(L.uld_loss(s, t))
        b = float(reference_uld_loss(s, t, sizes, sizes))
    return {
        "device": device.type, "dtype": str(dtype).replace("torch.", ""), "batch": batch, "positions": positions,
        "vocab_student": vs, "vocab_teacher": vt,
        "seconds": {k: v["median_s"] for k, v in timing.items()},
        "uld_over_reference": timing["uld"]["median_s"] / timing["reference"]["median_s"],
        "value_abs_diff": abs(a - b),
    }


def bench_profile(positions: int, vocab: int, repeats: int) -> dict:
    """Where the kit's ULD time goes on CPU: each stage timed alone (interleaved), and the whole fwd+bwd.

    Stages: input checks of one logits tensor, one softmax, the teacher's values-only ``np.sort``,
    the student's packed value+index sort (both over blocks of rows, as in the kernel; ``np.argsort``
    likewise for comparison), the kernel's forward and forward + backward on
    probabilities, and the full ``uld_loss`` forward + backward (both sides' checks and softmaxes).
    """
    s = _logits((positions,), vocab, torch.device("cpu"), torch.float32, 0, requires_grad=True)
    t = _logits((positions,), vocab, torch.device("cpu"), torch.float32, 1)
    q = torch.softmax(s.detach(), dim=-1)
    p = torch.softmax(t, dim=-1)
    qn, pn = q.numpy(), p.numpy()

    def kernel_fwd_bwd():
        x = q.detach().requires_grad_(True)
        K.sorted_l1(x, p).sum().backward()

    def blocked(fn, x):
        """Run a numpy stage over blocks of rows, as the kernel does (cache-sized temporaries)."""
        return lambda: K._run_blocks(lambda r0, r1: fn(x[r0:r1]), x.shape[0], x.shape[1])

    fns = {
        "validate_logits": lambda: C.validate_logits(t),
        "softmax": lambda: torch.softmax(t, dim=-1),
        "np_sort_values": blocked(K._sorted_values, pn),
        "packed_sort_values_and_index": blocked(K._sorted_values_and_perm, qn),
        "np_argsort": blocked(lambda x: np.argsort(x, axis=-1), qn),
        "torch_sort": lambda: torch.sort(q, dim=-1, descending=True),
        "kernel_forward_no_grad": lambda: K.sorted_l1(q, p),
        "kernel_forward_backward": kernel_fwd_bwd,
        "uld_loss_forward_backward": _fwd_bwd(lambda x: L.uld_loss(x, t), s),
    }
    timing = time_interleaved(fns, repeats, torch.device("cpu"))
    total = timing["uld_loss_forward_backward"]["median_s"]
    return {"positions": positions, "vocab": vocab,
            "seconds": {k: v["median_s"] for k, v in timing.items()},
            "share_of_uld_loss": {k: v["median_s"] / total for k, v in timing.items()}}


# --------------------------------------------------------------------------- the identity-keeping losses
def synthetic_maps(vs: int, vt: int, shared: int, seed: int = 0):
    """A shared-string map of ``shared`` strings and an X-Token W (shared rows one-hot, the others 4 decaying
    weights on random teacher tokens) between vocabularies of ``vs`` and ``vt``: real maps' shapes, no tokenizer."""
    from uldviz.vocab.projection import Projection, piece_weights
    from uldviz.vocab.shared import SharedVocab

    g = torch.Generator().manual_seed(seed)
    s_ids, t_ids = torch.randperm(vs, generator=g)[:shared], torch.randperm(vt, generator=g)[:shared]
    sv = SharedVocab(s_ids, t_ids, [str(i) for i in range(shared)], vs, vt)
    others = torch.ones(vs, dtype=torch.bool)
    others[s_ids] = False
    rest = others.nonzero().squeeze(-1)
    picks = torch.randperm(vt * 4, generator=g)[: 4 * rest.numel()].remainder(vt).reshape(-1, 4)
    weights = torch.tensor(piece_weights(4)).expand(rest.numel(), 4)
    w = Projection(torch.cat([s_ids, rest.repeat_interleave(4)]), torch.cat([t_ids, picks.reshape(-1)]),
                   torch.cat([torch.ones(shared), weights.reshape(-1)]), vs, vt)
    return sv, w


def bench_identity_case(positions: int, vs: int, vt: int, device: torch.device, dtype: torch.dtype, repeats: int,
                        shared: int = 20000, seed: int = 0) -> dict:
    """ULD and the identity-keeping losses (hybrid with both divergences, P-KL, H-KL, the chain-rule merge),
    forward + backward from logits, on ``positions`` rows; times relative to ULD and to the floor."""
    from uldviz.maths.identity import hybrid_uld_loss, merged_group_logprobs
    from uldviz.maths.xtoken import matched_vocab, projected_kl

    sv, w = synthetic_maps(vs, vt, shared, seed)
    hkl = matched_vocab(w)
    s = _logits((positions,), vs, device, dtype, seed, requires_grad=True)
    t = _logits((positions,), vt, device, dtype, seed + 1)
    ids = torch.randint(0, vs, (1, positions + 1), generator=torch.Generator().manual_seed(seed)).to(device)
    starts = torch.arange(1, positions + 1, 2, device=device)  # groups of two tokens
    groups = (torch.zeros_like(starts), starts, (starts + 2).clamp_max(positions + 1))
    row = lambda x: torch.cat([x[:1], x])[None]  # noqa: E731 - (1, positions + 1, V): row 0 predicts token 1
    fns = {
        "floor": lambda: floor_ops(s, t),
        "uld": _fwd_bwd(lambda x: L.uld_loss(x, t), s),
        "hybrid (gkl)": _fwd_bwd(lambda x: hybrid_uld_loss(torch.log_softmax(x.float(), -1),
                                                           torch.log_softmax(t.float(), -1), sv), s),
        "hybrid (jsd)": _fwd_bwd(lambda x: hybrid_uld_loss(torch.log_softmax(x.float(), -1),
                                                           torch.log_softmax(t.float(), -1), sv, divergence="jsd"), s),
        "P-KL": _fwd_bwd(lambda x: projected_kl(x, t, w).mean(), s),
        "H-KL": _fwd_bwd(lambda x: hybrid_uld_loss(torch.log_softmax(x.float(), -1),
                                                   torch.log_softmax(t.float(), -1), hkl, weight=0.5), s),
        "chain-rule merge": _fwd_bwd(lambda x: merged_group_logprobs(row(x), ids, *groups).logsumexp(-1).mean(), s),
    }
    timing = time_interleaved(fns, repeats, device)
    uld, floor = timing["uld"]["median_s"], timing["floor"]["median_s"]
    for r in timing.values():
        r["x_uld"], r["x_floor"] = r["median_s"] / uld, r["median_s"] / floor
    return {"device": device.type, "dtype": str(dtype).replace("torch.", ""), "positions": positions,
            "vocab_student": vs, "vocab_teacher": vt, "shared": shared, "projection_nnz": w.nnz,
            "threads": torch.get_num_threads(), "timing": timing}


# --------------------------------------------------------------------------- memory
MEMORY_VARIANTS = ("softmax", "uld", "plain", "reference", "top100", "top1000", "kl")


def _vm_kb(field: str) -> int | None:
    """A field (kB) of /proc/self/status, e.g. VmRSS or VmHWM; None where there is no /proc."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) by writing 5 to /proc/self/clear_refs (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _variant_fn(name: str, s: torch.Tensor, t: torch.Tensor, t_same: torch.Tensor) -> Callable[[], None]:
    """The forward + backward (or forward only for ``softmax``) whose memory is measured."""
    if name == "softmax":
        return lambda: torch.softmax(s.detach(), dim=-1)
    if name == "uld":
        return _fwd_bwd(lambda x: L.uld_loss(x, t), s)
    if name == "plain":
        return _fwd_bwd(lambda x: plain_uld_loss(x, t), s)
    if name == "reference":
        n = s.shape[0]
        return _fwd_bwd(lambda x: reference_uld_loss(x[None], t[None], [n], [n]), s)
    if name.startswith("top"):
        k = int(name[3:])
        return _fwd_bwd(lambda x: L.uld_loss(x, t, top_k=k), s)
    if name == "kl":
        return _fwd_bwd(lambda x: L.kl_divergence(x, t_same), s)
    raise ValueError(f"unknown memory variant {name!r}; choose from {MEMORY_VARIANTS}")


def memory_probe(variants, positions: int, vs: int, vt: int, device: str = "cpu") -> dict:
    """Extra peak memory of each variant, in bytes and as a multiple of the student logits' bytes.

    CPU: run in a fresh process; for each variant one warm-up call, then reset the kernel's peak
    resident-set counter (``/proc/self/clear_refs``), run once more, and take VmHWM - VmRSS(before).
    torch's CPU allocator returns large blocks to the OS on free (glibc mmap), so this sees every
    large temporary, torch's and numpy's alike. The gradient the backward pass leaves in
    ``student_logits.grad`` (1x) is included. CUDA: ``torch.cuda.max_memory_allocated`` minus the
    memory allocated before.
    """
    if os.environ.get("ULDVIZ_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["ULDVIZ_BENCH_THREADS"]))
    dev = torch.device(device)
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    s = _logits((positions,), vs, dev, dtype, 0, requires_grad=True)
    t = _logits((positions,), vt, dev, dtype, 1)
    t_same = _logits((positions,), vs, dev, dtype, 2)
    logits_bytes = s.numel() * s.element_size()
    out = {"logits_bytes": logits_bytes, "method": None, "variants": {}}
    for name in variants:
        fn = _variant_fn(name, s, t, t_same)
        fn()
        s.grad = None
        if dev.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            extra = torch.cuda.max_memory_allocated() - before
            out["method"] = "torch.cuda.max_memory_allocated - memory_allocated before"
        else:
            if not _reset_peak_rss():
                out["method"] = "unavailable (no /proc/self/clear_refs on this system)"
                break
            before = _vm_kb("VmRSS")
            fn()
            extra = (_vm_kb("VmHWM") - before) * 1024
            out["method"] = "peak RSS (VmHWM after clear_refs) - RSS before, fresh subprocess"
        s.grad = None
        out["variants"][name] = {"extra_bytes": int(extra), "multiple_of_logits": extra / logits_bytes}
    return out


def bench_memory(positions: int, vs: int, vt: int, device: str = "cpu", variants=MEMORY_VARIANTS,
                 timeout: float = 900) -> dict:
    """Run :func:`memory_probe` in a fresh Python process (so earlier allocations do not blur it)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            "from bench import memory_probe; "
            f"print('RESULT' + json.dumps(memory_probe({list(variants)!r}, {positions}, {vs}, {vt}, {device!r})))")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:], "positions": positions}
    res = json.loads(lines[-1][len("RESULT"):])
    res.update(positions=positions, vocab_student=vs, vocab_teacher=vt, device=device)
    return res


# --------------------------------------------------------------------------- OT scaling
def _ot_summary(doc: dict, path: Path | None) -> dict:
    """What the results keep of an OT timing file: its path, growth exponents, the largest size's time, the fit."""
    return {
        "file": str(path) if path is not None else "data/bench_ot.json",
        "exponents": {m: rec.get("exponent") for m, rec in doc["methods"].items()},
        "seconds_at_largest": {m: (rec["sizes"][-1], rec["seconds"][-1]) if rec["sizes"] else None
                               for m, rec in doc["methods"].items()},
        "fit_min_n": doc["settings"]["fit_min_n"],
    }


def bench_ot(sizes, budget_s: float, path: Path | None) -> dict:
    """Exact/entropic OT scaling via :func:`uldviz.course.timing.write_ot_scaling` (writes ``path``)."""
    from uldviz.course.timing import write_ot_scaling

    doc = write_ot_scaling(path, sizes, budget_s=budget_s, progress=None)
    return {**_ot_summary(doc, path), "sinkhorn_rel_error": doc.get("sinkhorn_rel_error"),
            "emd2_warnings": doc.get("emd2_warnings"), "wall_s": doc.get("wall_s")}


# --------------------------------------------------------------------------- the distillation step
def bench_distill(steps: int = 25, skip: int = 5, quick: bool = False) -> dict:
    """Steps/s of notebook 03's default ULD run (``uld-offset``) and the share of a step spent in its distillation term.

    Uses the training core's API, nothing patched: a subclass of the run's objective
    (:class:`uldviz.train.objectives.Objective`) times its pairing (on the CPU, before the forward passes) and its
    term (gather + ULD) as the loop calls them, recording the term's inputs (the first ``skip`` steps are warm-up).
    Afterwards pairing + the term's forward + backward are timed alone on those inputs.
    """
    from dataclasses import replace

    from uldviz import distill as D
    from uldviz.train.objectives import Objective

    setup = D.prepare("offline")
    base = D.fast_config() if quick else D.DistillConfig()
    cfg = replace(D.run_config("uld-offset", base), steps=steps, eval_every=10**6)
    recorded, in_loop, pair_s = [], [], []

    class Timed(Objective):
        """The run's objective, with its pairing and its term timed as the loop calls them."""

        def pair(self, batch):
            start = time.perf_counter()
            out = super().pair(batch)
            pair_s.append(time.perf_counter() - start)
            return out

        def distill_sum(self, s_logits, t_logits, batch, pairs):
            if len(recorded) < steps:
                recorded.append((s_logits.detach().clone(), t_logits.detach().clone(), batch))
            start = time.perf_counter()
            out = super().distill_sum(s_logits, t_logits, batch, pairs)
            in_loop.append(time.perf_counter() - start)
            return out

    objective = Timed(cfg, setup.student_tokenizer, setup.teacher_tokenizer, seed=cfg.seed)
    stamps = []
    D.train(cfg, setup, name="bench", objective=objective, sample_prompt=None,
            callback=lambda ev: stamps.append(time.perf_counter()) if ev["type"] == "step" else None)
    step_s = statistics.median(np.diff(stamps)[skip:]) if len(stamps) > skip + 1 else float("nan")
    plain = Objective(cfg, setup.student_tokenizer, setup.teacher_tokenizer, seed=cfg.seed)
    alone = []
    for student_logits, teacher_logits, batch in recorded[skip:]:
        x = student_logits.clone().requires_grad_(True)
        start = time.perf_counter()
        pairs = plain.pair(batch.to("cpu"))
        (plain.distill_sum(x, teacher_logits, batch, pairs) / max(pairs.count, 1)).backward()
        alone.append(time.perf_counter() - start)
    term = statistics.median(alone)
    return {
        "config": {k: getattr(cfg, k) for k in ("loss", "align", "lam", "batch_size", "window_chars",
                                                 "n_layer", "n_embd", "device")},
        "student_logits_shape": tuple(recorded[0][0].shape), "teacher_logits_shape": tuple(recorded[0][1].shape),
        "steps_timed": max(0, len(stamps) - 1 - skip),
        "step_s": step_s, "steps_per_s": 1.0 / step_s,
        "pairing_in_loop_s": statistics.median(pair_s[skip:]),
        "distill_term_forward_in_loop_s": statistics.median(in_loop[skip:]),
        "distill_term_s": term, "distill_term_share": term / step_s,
    }


# --------------------------------------------------------------------------- the whole run
def _meta(quick: bool, argv) -> dict:
    """Machine, versions, load and the command, recorded next to the numbers."""
    load = load_average()
    return {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([COMMAND, *argv]),
        "quick": quick,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "kernel_threads": K._workers(),
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": load,
    }


PARTS = ("speed", "identity", "profile", "batch", "memory", "ot", "distill")


def run_benchmark(quick: bool = False, *, ot: str = "run", parts=PARTS, previous: dict | None = None,
                  ot_path: Path | None = None, progress: Callable[[str], None] = print, argv=()) -> dict:
    """Run the chosen ``parts`` and return the results dict (see the module docstring).

    ``previous``: an earlier results dict whose other parts are kept (``--update``), so one part
    (say, the distillation step once a teacher exists, or CUDA on a GPU machine) can be re-measured.
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    cfg = QUICK if quick else FULL
    res: dict = dict(previous or {})
    # Earlier runs keep only the parts this run does not replace; runs left with none are dropped.
    runs = [r | {"parts": [x for x in r.get("parts", PARTS) if x not in parts]} for r in res.get("runs", [])]
    res["runs"] = [r for r in runs if r["parts"]] + [_meta(quick, argv) | {"parts": list(parts)}]
    res["meta"] = res["runs"][0]
    res["sizes"] = dict(cfg)
    start = time.perf_counter()
    cpu = torch.device("cpu")
    if "speed" in parts:
        res["uld_speed"] = [c for c in res.get("uld_speed", []) if c["device"] != "cpu"]
        for vs, vt in cfg["vocabs"]:
            progress(f"ULD fwd+bwd, cpu float32, {cfg['positions']} positions, vocab {vs}/{vt} ...")
            res["uld_speed"].append(bench_uld_case(cfg["positions"], vs, vt, cpu, torch.float32, cfg["repeats"],
                                                   cfg["topk"]))
        if torch.cuda.is_available():
            res["uld_speed"] = [c for c in res["uld_speed"] if c["device"] != "cuda"]
            gpu = torch.device("cuda")
            for vs, vt in cfg["vocabs"]:
                progress(f"ULD fwd+bwd, cuda bfloat16, vocab {vs}/{vt} ...")
                res["uld_speed"].append(bench_uld_case(cfg["positions"], vs, vt, gpu, torch.bfloat16,
                                                       max(cfg["repeats"], 5), cfg["topk"]))
    if "identity" in parts:
        vs, vt = cfg["identity_vocab"]
        res["identity_speed"] = [c for c in res.get("identity_speed", []) if c["device"] != "cpu"]
        progress(f"identity-keeping losses fwd+bwd, cpu float32, {cfg['positions']} x {vs}/{vt} ...")
        res["identity_speed"].append(bench_identity_case(cfg["positions"], vs, vt, cpu, torch.float32,
                                                         cfg["repeats"], shared=cfg["identity_shared"]))
    if "profile" in parts:
        progress(f"profile of the kit's ULD, {cfg['positions']} x {cfg['mem_vocab'][0]} ...")
        res["profile"] = bench_profile(cfg["positions"], cfg["mem_vocab"][0], 3 * cfg["repeats"])
    if "batch" in parts:
        progress(f"batch {cfg['batch']} x {cfg['positions']}: kit vs per-sample reference ...")
        bvs, bvt = cfg["batch_vocab"]
        res["uld_batch"] = [bench_batch_reference(cfg["batch"], cfg["positions"], bvs, bvt, cpu, torch.float32,
                                                  cfg["batch_repeats"])]
    if "memory" in parts:
        mvs, mvt = cfg["mem_vocab"]
        progress(f"peak memory, {cfg['positions']} x {mvs}/{mvt} (fresh subprocess) ...")
        res["memory"] = bench_memory(cfg["positions"], mvs, mvt, "cpu")
        if torch.cuda.is_available():
            res["memory_cuda"] = bench_memory(cfg["positions"], mvs, mvt, "cuda")
    res.setdefault("memory", {"skipped": True})
    if "ot" in parts and ot == "run":
        progress("OT scaling (uldviz.course.timing.write_ot_scaling) ...")
        res["ot_scaling"] = bench_ot(cfg["ot_sizes"], cfg["ot_budget"], ot_path)
    elif "ot" in parts and ot == "file":
        from uldviz.course.timing import load_ot_scaling

        doc = load_ot_scaling(ot_path)
        res["ot_scaling"] = ({**_ot_summary(doc, ot_path), "from_existing_file": True} if doc
                             else {"skipped": True, "reason": "no results file"})
    res.setdefault("ot_scaling", {"skipped": True})
    if "distill" in parts:
        progress("distillation step (notebook 03 default, uld-offset) ...")
        try:
            res["distill"] = bench_distill(steps=8 if quick else 25, skip=2 if quick else 5, quick=quick)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal: the rest of the benchmark stands
            res["distill"] = {"not_measured": True, "reason": f"{type(exc).__name__}: {exc}"}
    res.setdefault("distill", {"not_measured": True, "reason": "not run"})
    missing = [k for k in ("uld_speed", "uld_batch") if k not in res]
    if missing:
        raise ValueError(f"results lack {missing}: run the speed and batch parts (or --update an earlier file)")
    res["targets"] = _targets(res)
    if (load := load_average()) is not None:
        res["runs"][-1]["load_average_end"] = load
    res["runs"][-1]["wall_s"] = time.perf_counter() - start
    return res


def _targets(res: dict) -> dict:
    """The issue's targets, each with the measured ratio and whether it is met."""
    cpu = [c for c in res["uld_speed"] if c["device"] == "cpu"]
    worst_floor = max(c["over_floor"]["uld"] for c in cpu)
    worst_ref = max([c["uld_over_reference"] for c in cpu] + [b["uld_over_reference"] for b in res["uld_batch"]])
    big = max(cpu, key=lambda c: (c["vocab_student"] == c["vocab_teacher"], c["vocab_student"]))
    klabel = f"top{max(int(k[3:]) for k in big['topk_error'])}"
    out = {
        "uld_over_floor_cpu_worst": {"value": worst_floor, "target": "<= 1 (stretch <= 0.5)",
                                     "met": worst_floor <= 1.0, "stretch_met": worst_floor <= 0.5},
        "uld_over_reference_worst": {"value": worst_ref, "target": "<= 1", "met": worst_ref <= 1.0},
        "equal_to_plain": {"value": max(max(c["equal_to_plain"].values()) for c in res["uld_speed"]),
                           "target": "<= 1e-6", "met": all(max(c["equal_to_plain"].values()) <= 1e-6
                                                           for c in res["uld_speed"] if c["device"] == "cpu")},
        f"{klabel}_over_kl_at_{big['vocab_student']}": {
            "value": big["topk_over_kl"][klabel], "target": "<= 2", "met": big["topk_over_kl"][klabel] <= 2},
        f"{klabel}_mean_rel_error_at_{big['vocab_student']}": {
            "value": big["topk_error"][klabel]["mean_rel_error"], "target": "< 0.02",
            "met": big["topk_error"][klabel]["mean_rel_error"] < 0.02},
    }
    for case in res.get("identity_speed", []):
        if case["device"] == "cpu":
            worst = max(r["x_uld"] for n, r in case["timing"].items() if n not in ("floor", "uld"))
            out["identity_losses_over_uld_cpu_worst"] = {"value": worst, "target": "<= 1.5", "met": worst <= 1.5}
    share = res.get("distill", {}).get("distill_term_share")
    if share is not None:  # timed alone, forward + backward: still a part of the step it was recorded in
        out["distill_term_share_of_step"] = {"value": share, "target": "< 1", "met": share < 1}
    mem = res.get("memory", {}).get("variants", {})
    if "uld" in mem:
        out["uld_extra_peak_memory_multiple"] = {"value": mem["uld"]["multiple_of_logits"], "target": "<= 5",
                                                 "met": mem["uld"]["multiple_of_logits"] <= 5}
    return out


# --------------------------------------------------------------------------- report
def _ms(x: float) -> str:
    """Seconds as a short millisecond string."""
    return f"{x * 1e3:,.0f}" if x >= 0.01 else f"{x * 1e3:.2f}"


def render_markdown(res: dict) -> str:
    """The results as Markdown tables (``benchmarks/RESULTS.md``)."""
    m = res["meta"]
    lines = [
        "# ULD benchmark results",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}, numpy {m['numpy']}, "
        f"GPU: {m['cuda'] or 'none'}. The machine was shared with other jobs (load averages below), so "
        "compare the ratios within one run, not absolute times across runs. Regenerate everything with "
        f"`nice -n 10 {COMMAND} --threads 1` (about 10 minutes on 2 cores; it also rewrites "
        "`data/bench_ot.json`, the OT timing file notebook 02 reads, unless `--ot-path` says otherwise); "
        "re-measure one part with "
        "`--update --only PART` (parts: " + ", ".join(PARTS) + ").",
        "",
    ]
    for r in res.get("runs", [m]):
        lines.append(f"- `{r['command']}` at {r['created_utc']}: parts {', '.join(r.get('parts', PARTS))}; "
                     f"torch threads {r['torch_threads']} (kernel {r.get('kernel_threads')}), nice {r.get('nice')}, "
                     f"load average {_fmt_load(r.get('load_average_start'))} at start, "
                     f"{_fmt_load(r.get('load_average_end'))} at end; wall {r.get('wall_s', float('nan')):.0f} s.")
    lines += [
        "",
        "## ULD forward + backward (median of interleaved repeats, ms; ratio to the floor in brackets)",
        "",
        "Floor = the two softmaxes + one `torch.sort` of each side (no grad). plain = the kit's reference "
        "`uldviz.maths.losses.uld_reference` (pad + `torch.sort` + L1, vectorised). reference = the paper's code "
        "structure (loop over samples). KL on one vocabulary of the student's size. top-k = ULD with the "
        "tail-mass term.",
        "",
    ]
    cases = res["uld_speed"]
    names = list(cases[0]["seconds"])
    lines.append("| device | dtype | positions | vocab s/t | " + " | ".join(names) + " | kit = plain (value, grad) |")
    lines.append("|" + "---|" * (len(names) + 5))
    for c in cases:
        cells = [f"{_ms(c['seconds'][n])} ({c['over_floor'][n]:.2f})" if n in c["seconds"] else "–" for n in names]
        eq = c["equal_to_plain"]
        lines.append(f"| {c['device']} | {c['dtype']} | {c['positions']} | "
                     f"{c['vocab_student']:,}/{c['vocab_teacher']:,} | "
                     + " | ".join(cells) + f" | {eq['value_abs_diff']:.1e}, {eq['grad_max_abs_diff']:.1e} |")
    lines += ["", "Top-k ULD: time relative to KL, and relative error against the full ULD per position "
              "(mean / worst; never above the full value?):", "",
              "| vocab s/t | k | top-k / KL | mean error | worst error | ≤ full |", "|---|---|---|---|---|---|"]
    for c in cases:
        for k, e in c["topk_error"].items():
            lines.append(f"| {c['vocab_student']:,}/{c['vocab_teacher']:,} ({c['device']}) | {k[3:]} | "
                         f"{c['topk_over_kl'][k]:.2f} | {e['mean_rel_error']:.2%} | {e['max_rel_error']:.2%} | "
                         f"{'yes' if e['never_above_full'] else 'NO'} |")
    for case in res.get("identity_speed", []):
        lines += ["", f"## Identity-keeping losses, forward + backward from logits ({case['device']} "
                      f"{case['dtype']}, {case['positions']} positions, vocabularies "
                      f"{case['vocab_student']:,}/{case['vocab_teacher']:,}, {case['shared']:,} shared strings, W with "
                      f"{case['projection_nnz']:,} non-zeros; target: at most 1.5 × ULD)", "",
                  "| loss | ms | × ULD | × floor |", "|---|---|---|---|"]
        lines += [f"| {n} | {_ms(r['median_s'])} | {r['x_uld']:.2f} | {r['x_floor']:.2f} |"
                  for n, r in case["timing"].items()]
    prof = res.get("profile")
    if prof:
        lines += ["", f"## Where the kit's ULD time goes (CPU, {prof['positions']} × {prof['vocab']:,}, "
                  "each stage timed alone)", "",
                  "The stages overlap (the kernel includes the sorts; `uld_loss` includes everything), so the "
                  "shares do not add up to 100 %. `torch_sort` and `np_argsort` are the alternatives the kernel "
                  "avoids.", "", "| stage | ms | share of `uld_loss` fwd+bwd |", "|---|---|---|"]
        for k, v in prof["seconds"].items():
            lines.append(f"| {k} | {_ms(v)} | {prof['share_of_uld_loss'][k]:.0%} |")
    lines += ["", "## Batched kit vs the per-sample reference loop", "",
              "| batch × positions | vocab s/t | kit (ms) | reference (ms) | kit / reference | |value diff| |",
              "|---|---|---|---|---|---|"]
    for b in res["uld_batch"]:
        lines.append(f"| {b['batch']} × {b['positions']} | {b['vocab_student']:,}/{b['vocab_teacher']:,} | "
                     f"{_ms(b['seconds']['uld'])} | {_ms(b['seconds']['reference'])} | {b['uld_over_reference']:.2f} | "
                     f"{b['value_abs_diff']:.1e} |")
    mem = res.get("memory", {})
    lines += ["", "## Extra peak memory (multiple of the student logits' size)", ""]
    if mem.get("variants"):
        lines += [f"{mem['positions']} positions × vocab {mem['vocab_student']:,}/{mem['vocab_teacher']:,}; "
                  f"logits = {mem['logits_bytes'] / 2**20:.0f} MiB. Method: {mem['method']}; forward + backward, "
                  "including the gradient left in `student_logits.grad`.", "",
                  "| variant | extra peak (MiB) | × logits |", "|---|---|---|"]
        for name, v in mem["variants"].items():
            lines.append(f"| {name} | {v['extra_bytes'] / 2**20:,.0f} | {v['multiple_of_logits']:.2f} |")
    else:
        lines.append(f"Not measured: {mem.get('error', 'skipped')}")
    ot = res.get("ot_scaling", {})
    lines += ["", "## Exact and entropic OT scaling (one pair of vectors of size N)", ""]
    if ot.get("exponents"):
        lines += [f"From `{ot['file']}` (uldviz.course.timing.write_ot_scaling); growth exponent k in t ~ N^k fitted "
                  f"on N ≥ {ot.get('fit_min_n', 1000)}.", "", "| method | exponent | largest N timed | seconds there |",
                  "|---|---|---|---|"]
        for name, k in ot["exponents"].items():
            last = ot["seconds_at_largest"].get(name)
            lines.append(f"| {name} | {k:.2f} | {last[0]:,} | {last[1]:.3g} |" if k is not None and last
                         else f"| {name} | – | {last[0] if last else '–'} | {last[1] if last else '–'} |")
    else:
        lines.append("Not measured in this run.")
    d = res.get("distill", {})
    lines += ["", "## The distillation step (notebook 03 default ULD run)", ""]
    if d.get("not_measured"):
        lines.append(f"Not measured: {d.get('reason')}")
    elif "distill_term_s" in d:
        lines += [f"Config {d['config']}; student logits {d['student_logits_shape']}, teacher logits "
                  f"{d['teacher_logits_shape']}; {d['steps_timed']} steps timed. The distillation term (offset "
                  "pairing + ULD) is the objective passed to the training loop; timed alone, forward + backward, "
                  "on the inputs recorded during training.", "",
                  "| steps/s | step (ms) | distillation term fwd+bwd (ms) | its share of the step |",
                  "|---|---|---|---|",
                  f"| {d['steps_per_s']:.2f} | {_ms(d['step_s'])} | {_ms(d['distill_term_s'])} | "
                  f"{d['distill_term_share']:.1%} |"]
    else:
        lines.append("Not measured in this run.")
    lines += ["", "## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for name, t in res["targets"].items():
        lines.append(f"| {name} | {t['value']:.3g} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def _fmt_load(load) -> str:
    """A load-average triple as text."""
    return "unknown" if not load else " / ".join(f"{x:.1f}" for x in load)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run the benchmark, write JSON and Markdown, print the targets."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, seconds (for tests)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"JSON results file (default {DEFAULT_OUT.relative_to(ROOT)}; "
                         "quick: not written unless given)")
    ap.add_argument("--md", type=Path, default=None, help="Markdown file (default: RESULTS.md next to --out)")
    ap.add_argument("--ot", choices=("run", "file", "skip"), default="run",
                    help="OT scaling: run uldviz.course.timing (writes data/bench_ot.json in a full run), "
                         "read that file, or skip")
    ap.add_argument("--ot-path", type=Path, default=None,
                    help="where the OT scaling JSON goes (default data/bench_ot.json)")
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    ap.add_argument("--update", action="store_true",
                    help="keep the other parts of an existing --out file and re-measure only --only's parts")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (also the kernel's numpy threads); default: torch's own choice. "
                         "On a shared, overloaded machine 1 gives the most reproducible ratios")
    args = ap.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            ap.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
        os.environ["ULDVIZ_BENCH_THREADS"] = str(args.threads)  # the memory subprocess uses the same
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    ot_path = args.ot_path
    if args.quick and ot_path is None and args.ot == "run":  # never overwrite the shipped data/bench_ot.json
        ot_path = (out.parent if out is not None else Path(tempfile.mkdtemp())) / "bench_ot_quick.json"
    parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
    bad = set(parts) - set(PARTS)
    if bad:
        ap.error(f"unknown part(s) {sorted(bad)} in --only; choose from {','.join(PARTS)}")
    if not args.update and not {"speed", "batch"} <= set(parts):
        ap.error(f"--only {args.only} leaves out speed or batch, which the targets need: add them, or re-measure "
                 "parts of an earlier results file with --update")
    previous = None
    if args.update:
        if out is None or not out.exists():
            ap.error("--update needs an existing --out results file")
        previous = json.loads(out.read_text())
    res = run_benchmark(args.quick, ot=args.ot, parts=parts, previous=previous, ot_path=ot_path,
                        progress=lambda s: print(s, flush=True), argv=argv)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")
        md = args.md if args.md is not None else out.with_name("RESULTS.md")
        md.write_text(render_markdown(res))
        print(f"wrote {out} and {md}")
    for name, t in res["targets"].items():
        print(f"{name}: {t['value']:.3g} (target {t['target']}) {'met' if t['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
