r"""Measured, not guessed: the memory coefficients :mod:`uldviz.scale.arithmetic` extrapolates, and the feed's timings.

**Memory** (``python -m uldviz.scale.measure memory --write`` rewrites :data:`COEFFICIENTS`). Each group of points
runs in a fresh Python process with one torch thread and glibc's mmap threshold fixed at 64 kB
(``MALLOC_MMAP_THRESHOLD_``), so every tensor of a step is its own mapping, returned to the OS when freed. A point
resets the kernel's peak resident set (``/proc/self/clear_refs``), runs one step and reads
:math:`\Delta M = \mathrm{VmHWM} - \mathrm{VmRSS}_{\text{before}}`: every page the step touched at its peak, the
kernels' own scratch buffers (sorts, numpy blocks) included, which counting tensors would miss.

(a) *The objective*: logits from a real output layer (a tiny embedding in front, no body), the run's objective
(:class:`uldviz.train.objectives.Objective`, CE included) and the backward pass, for each loss, on the kit's two
tokenizers in both roles (640 and 1,024 tokens) and two batch sizes, every position paired (the worst case):

.. math:: \Delta M = c_S\,N_S + c_T\,N_T + c_0, \qquad N_S = B\,L_S\,V_S,\quad N_T = B\,L_T\,V_T

:math:`c_S, c_T` are bytes per logit element, the logits themselves included (the old formula's 10 and 6).

(b) *The student's activations*: a GPT-2 body's forward and backward on a padded batch at two token counts (the
slope is bytes per token, so weights, gradients and autocast's weight copies drop out), fitted over depths, widths
and sequence lengths (the :math:`L` term is the attention mask of a padded batch, per layer):

.. math:: a(n_\ell, d, L) = \alpha\,n_\ell\,d + \beta\,d + \gamma\,n_\ell\,L \quad \text{bytes per token}

Both in float32 and under bf16 autocast (the loop's ``--bf16``), and for ULD's two code paths: the numpy kernel a
CPU runs and the ``torch.sort`` path a GPU runs (emulated on the CPU; CUDA's sort workspace is not in it).
``--device cuda`` measures the same points with ``torch.cuda.max_memory_allocated`` instead.

**Feed** (``python -m uldviz.scale.measure feed --write``): the toy pair's training loop with 0 and 2 DataLoader
workers, and the CPU time per step of tokenization + pairing (:meth:`uldviz.scale.feed.StepBatches.step`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

__all__ = ["COEFFICIENTS", "FEED_RESULTS", "LOSS_KEYS", "MEMORY_COMMAND", "FEED_COMMAND", "load_coefficients",
           "loss_key", "fit_objective", "fit_activations", "measure_memory", "measure_feed", "main"]

ROOT = Path(__file__).resolve().parents[2]
#: The measured memory coefficients (written by :func:`measure_memory`, read by :mod:`uldviz.scale.arithmetic`).
COEFFICIENTS = Path(__file__).resolve().parent / "memory.json"
#: The feed measurement (written by :func:`measure_feed`, shown in docs/scale.md by :mod:`uldviz.course.scale_docs`).
FEED_RESULTS = ROOT / "benchmarks" / "scale_feed.json"
MEMORY_COMMAND = "nice python -m uldviz.scale.measure memory --write"
FEED_COMMAND = "nice python -m uldviz.scale.measure feed --write"

#: The objectives measured: loss name -> ScaleConfig settings (``uld-cache``: top-k targets from a teacher cache).
LOSS_KEYS = {
    "ce": {"loss": "ce"},
    "uld": {"loss": "uld", "align": "positional"},
    "uld-topk": {"loss": "uld", "align": "positional", "top_k": 64},
    "uld-cache": {"loss": "uld", "align": "positional", "top_k": 64},
    "kl": {"loss": "kl"},
    "hybrid": {"loss": "hybrid"},
    "chunk": {"loss": "chunk"},
    "xtoken-pkl": {"loss": "xtoken-pkl"},
    "xtoken-hkl": {"loss": "xtoken-hkl"},
}
#: Losses whose CPU run takes the numpy sorted-L1 kernel (the others run the same torch code on every device).
NUMPY_KERNEL = ("uld", "uld-topk", "hybrid", "xtoken-hkl")
#: The sizes measured: batch sizes and sequence length of (a); (layers, width) and token counts of (b).
OBJECTIVE_BATCHES = (8, 16)
OBJECTIVE_TOKENS = 256
ACTIVATION_SIZES = ((1, 256), (2, 256), (4, 256), (2, 128), (2, 512))
ACTIVATION_BATCHES = (2, 4)
ACTIVATION_SEQ = 256
#: Sizes measured at a longer sequence as well (the mask term): (layers, width) at this many tokens per sequence.
ACTIVATION_LONG = (((2, 256), (4, 256)), 1024)
#: Teacher widths whose transient activations (forward without gradient) are measured.
TEACHER_WIDTHS = (256, 512)
#: The whole-step check: GPT-2 student and teacher (layers, width) with the kit's tokenizers, ULD, AdamW.
CHECK = {"student": (4, 256), "teacher": (2, 512), "batch": 16, "max_tokens": 256, "loss": "uld"}


def loss_key(loss: str, top_k: int = 0, cached: bool = False) -> str:
    """A run's coefficient entry: ``uld`` with ``--top-k`` is ``uld-topk``; trained from a cache, ``uld-cache``."""
    if cached:
        return "uld-cache"
    return "uld-topk" if loss == "uld" and top_k else loss


def load_coefficients(path=COEFFICIENTS) -> dict:
    """The stored coefficients (see :func:`measure_memory`); a clear error when the file is missing."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: run `{MEMORY_COMMAND}`")
    return json.loads(p.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the peak of one step, in-process
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _peak(fn, device: str) -> int:
    """Bytes above the current footprint at the peak of ``fn()`` (RSS high-water mark on CPU, allocator on CUDA)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) * 1024


class _Head:
    """Builds a model that is only an output layer (a width-8 embedding in front): a causal LM's logits, no body."""

    @staticmethod
    def make(vocab: int, seed: int):
        import torch

        class Head(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(vocab, 8)
                self.head = torch.nn.Linear(8, vocab, bias=False)

            def forward(self, input_ids, attention_mask=None):
                from types import SimpleNamespace

                return SimpleNamespace(logits=self.head(self.emb(input_ids)))

        torch.manual_seed(seed)
        return Head()


def _autocast(device: str, precision: str):
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    from contextlib import nullcontext

    return nullcontext()


def _objective_step(obj, student, teacher, batch, pairs, device: str, precision: str) -> None:
    """Student logits, the objective's sums (teacher logits without gradient), the backward pass."""
    with _autocast(device, precision):  # the forward only, as the training loops do
        loss = obj.loss(obj.sums(student, teacher, batch, pairs))
    loss.backward()
    student.zero_grad(set_to_none=True)


def _body_step(model, ids, valid, device: str, precision: str) -> None:
    """A causal LM's body forward and backward (a loss on its last hidden state: what the head's backward feeds)."""
    with _autocast(device, precision):
        hidden = model.transformer(input_ids=ids, attention_mask=valid).last_hidden_state
        loss = hidden.float().square().mean()
    loss.backward()
    model.zero_grad(set_to_none=True)


def objective_points(key: str, precision: str, path: str, device: str = "cpu") -> list[dict]:
    """(a) for one objective: ΔM of logits + objective + backward at each batch size and tokenizer orientation."""
    import torch

    import uldviz.maths._sorted_l1 as kernel
    from uldviz.io.corpus import load_corpus
    from uldviz.io.tokenizers import offline_tokenizers
    from uldviz.scale.config import ScaleConfig
    from uldviz.scale.data import encode_examples, text_windows
    from uldviz.train.objectives import CachedPairs, Objective, pair_positions

    if path not in ("torch", "cpu"):
        raise ValueError(f"path must be 'torch' (a GPU's code path) or 'cpu', got {path!r}")
    if path == "torch":  # the code path a GPU takes: torch.sort instead of the CPU's numpy kernel (this process only)
        kernel._numpy_ok = lambda a, b: False
    pair = offline_tokenizers()
    small, big = pair.student, pair.teacher  # 640 and 1,024 tokens
    roles = [(small, small), (big, big)] if key == "kl" else [(small, big), (big, small)]
    examples = text_windows(load_corpus()[:200_000], 2000)
    settings = LOSS_KEYS[key]
    dev = torch.device(device)
    out = []
    for s_tok, t_tok in roles:
        cfg = ScaleConfig(student="s", **settings)
        cached = key == "uld-cache"
        obj = Objective(cfg, s_tok, None if cached else t_tok, student_vocab=len(s_tok),
                        teacher_vocab=None if cached else len(t_tok), cache=object() if cached else None)
        student = _Head.make(len(s_tok), 0).to(dev)
        teacher = None if cached or key == "ce" else _Head.make(len(t_tok), 1).requires_grad_(False).eval()
        if teacher is not None:
            teacher = teacher.to(dev, dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
        for b in OBJECTIVE_BATCHES:
            batch = encode_examples(examples[:b], list(range(b)), s_tok, t_tok, OBJECTIVE_TOKENS)
            if cached:
                pos = pair_positions(batch, "positional")
                g = torch.Generator().manual_seed(0)
                probs = torch.rand(pos.count, settings["top_k"], generator=g).sort(-1, descending=True).values
                probs = probs / probs.sum(-1, keepdim=True) * 0.9
                pairs = CachedPairs(pos.sample, pos.student, probs, torch.full((pos.count,), 0.1))
            else:
                pairs = obj.pair(batch)
            batch, pairs = batch.to(dev), (pairs.to(dev) if pairs is not None else None)
            step = partial(_objective_step, obj, student, teacher, batch, pairs, device, precision)
            step()  # warm-up: lazily built tables (shared vocabulary, projection), code paged in
            runs = [_peak(step, device) for _ in range(2)]
            n_s = batch.student_ids.numel() * len(s_tok)
            n_t = batch.teacher_ids.numel() * len(t_tok) if teacher is not None else 0
            out.append({"student_vocab": len(s_tok), "teacher_vocab": len(t_tok) if teacher is not None else 0,
                        "batch": b, "student_len": batch.student_ids.shape[1],
                        "teacher_len": batch.teacher_ids.shape[1] if teacher is not None else 0,
                        "rows": pairs.count if pairs is not None else 0, "n_student": n_s, "n_teacher": n_t,
                        "extra_bytes": max(runs), "runs": runs})
    return out


def activation_points(precision: str, device: str = "cpu") -> list[dict]:
    """(b): ΔM of a GPT-2 body's forward + backward (loss on its last hidden state) at each size and token count."""
    import torch

    from uldviz.io.models import tiny_causal_lm

    dev = torch.device(device)
    out = []
    long_sizes, long_seq = ACTIVATION_LONG
    runs_of = [(n, d, ACTIVATION_SEQ, ACTIVATION_BATCHES) for n, d in ACTIVATION_SIZES]
    runs_of += [(n, d, long_seq, (1, 2)) for n, d in long_sizes]
    for layers, width, seq, batches in runs_of:
        model = tiny_causal_lm(vocab_size=64, n_layer=layers, n_embd=width, n_head=max(1, width // 64),
                               n_positions=1024).to(dev).train()
        for b in batches:
            g = torch.Generator().manual_seed(b)
            ids = torch.randint(0, 64, (b, seq), generator=g).to(dev)
            valid = torch.ones(b, seq, dtype=torch.long)
            valid[0, seq * 3 // 4:] = 0  # padding, as real batches have
            valid = valid.to(dev)
            step = partial(_body_step, model, ids, valid, device, precision)
            step()
            runs = [_peak(step, device) for _ in range(2)]
            out.append({"layers": layers, "width": width, "batch": b, "seq": seq, "tokens": b * seq,
                        "params": sum(p.numel() for p in model.parameters()),
                        "extra_bytes": max(runs), "runs": runs})
        del model
    return out


def step_points(precision: str, device: str = "cpu") -> list[dict]:
    """The whole-step check (:data:`CHECK`): ΔM at the second step's peak above the process before the models.

    Models, AdamW (its moments exist after the first step), both forward passes, ULD, backward, the optimizer step:
    what :func:`uldviz.scale.arithmetic.estimate` predicts from the coefficients fitted on the parts.
    """
    import torch

    from uldviz.io.corpus import load_corpus
    from uldviz.io.models import tiny_causal_lm
    from uldviz.io.tokenizers import offline_tokenizers
    from uldviz.scale.config import ScaleConfig
    from uldviz.scale.data import encode_examples, text_windows
    from uldviz.train.objectives import Objective
    from uldviz.train.schedule import make_optimizer

    pair = offline_tokenizers()
    s_tok, t_tok = pair.student, pair.teacher
    c = CHECK
    cfg = ScaleConfig(student="s", loss=c["loss"], align="positional", max_tokens=c["max_tokens"])
    examples = text_windows(load_corpus()[:200_000], 2000)
    batch = encode_examples(examples[:c["batch"]], list(range(c["batch"])), s_tok, t_tok, c["max_tokens"])
    obj = Objective(cfg, s_tok, t_tok, student_vocab=len(s_tok), teacher_vocab=len(t_tok))
    pairs = obj.pair(batch)
    dev = torch.device(device)
    warm = tiny_causal_lm(64, n_layer=1, n_embd=64, n_head=1).to(dev)  # libraries loaded before the baseline
    with _autocast(device, precision):
        loss = warm(input_ids=torch.zeros(1, 8, dtype=torch.long, device=dev)).logits.float().sum()
    loss.backward()
    del warm
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
    else:
        base = _status_kb("VmRSS") * 1024
    (sl, sw), (tl, tw) = c["student"], c["teacher"]
    student = tiny_causal_lm(len(s_tok), n_layer=sl, n_embd=sw, n_head=sw // 64, n_positions=1024).to(dev).train()
    teacher = tiny_causal_lm(len(t_tok), n_layer=tl, n_embd=tw, n_head=tw // 64, n_positions=1024, seed=1)
    teacher = teacher.to(dev, dtype=torch.bfloat16 if precision == "bf16" else torch.float32).requires_grad_(False)
    opt = make_optimizer(student, cfg)
    batch, pairs = batch.to(dev), pairs.to(dev)

    def step():
        with _autocast(device, precision):
            loss = obj.loss(obj.sums(student, teacher, batch, pairs))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # AdamW's moments are allocated here
    runs = [_peak(step, device) for _ in range(2)]  # above the footprint before the step
    now = torch.cuda.memory_allocated() if device == "cuda" else _status_kb("VmRSS") * 1024
    return [{"precision": precision, "student_layers": sl, "student_width": sw,
             "student_params": sum(p.numel() for p in student.parameters()),
             "teacher_params": sum(p.numel() for p in teacher.parameters()),
             "student_vocab": len(s_tok), "teacher_vocab": len(t_tok), "batch": c["batch"],
             "student_len": batch.student_ids.shape[1], "teacher_len": batch.teacher_ids.shape[1],
             "loss": c["loss"], "total_bytes": int(now - base + max(runs)), "runs": runs}]


def teacher_points(precision: str, device: str = "cpu") -> list[dict]:
    """The teacher's transient activations: ΔM of a GPT-2 body's forward without gradient (its weights in bf16 under
    ``bf16``, as the loop holds them), per width, at two token counts."""
    import torch

    from uldviz.io.models import tiny_causal_lm

    dev = torch.device(device)
    out = []
    for width in TEACHER_WIDTHS:
        model = tiny_causal_lm(vocab_size=64, n_layer=2, n_embd=width, n_head=width // 64, n_positions=1024)
        model = model.to(dev, dtype=torch.bfloat16 if precision == "bf16" else torch.float32).requires_grad_(False)
        for b in OBJECTIVE_BATCHES:
            ids = torch.zeros(b, OBJECTIVE_TOKENS, dtype=torch.long, device=dev)
            valid = torch.ones(b, OBJECTIVE_TOKENS, dtype=torch.long)
            valid[0, OBJECTIVE_TOKENS * 3 // 4:] = 0
            step = partial(_teacher_step, model, ids, valid.to(dev), device, precision)
            step()
            runs = [_peak(step, device) for _ in range(2)]
            out.append({"layers": 2, "width": width, "batch": b, "seq": OBJECTIVE_TOKENS,
                        "tokens": b * OBJECTIVE_TOKENS, "extra_bytes": max(runs), "runs": runs})
        del model
    return out


def _teacher_step(model, ids, valid, device: str, precision: str) -> None:
    """A teacher body's forward without gradient (the loop's teacher pass, its head excluded)."""
    import torch

    with torch.no_grad(), _autocast(device, precision):
        model.transformer(input_ids=ids, attention_mask=valid)


def fit_teacher(points: list[dict]) -> dict:
    r"""Per width the slope in tokens, then :math:`\tau d` through the origin: transient bytes per teacher token."""
    slopes = []
    for width in sorted({p["width"] for p in points}):
        pts = sorted((p for p in points if p["width"] == width), key=lambda p: p["tokens"])
        lo, hi = pts[0], pts[-1]
        slopes.append((width, (hi["extra_bytes"] - lo["extra_bytes"]) / (hi["tokens"] - lo["tokens"])))
    d = np.array([w for w, _ in slopes], dtype=float)
    y = np.array([s for _, s in slopes], dtype=float)
    tau = float(d @ y / (d @ d))
    return {"per_width": round(tau, 3), "max_rel_residual": round(float(np.max(np.abs(tau * d - y) / y)), 4),
            "bytes_per_token": [{"width": int(w), "measured": round(s)} for w, s in slopes]}


# --------------------------------------------------------------------------- fits
def fit_objective(points: list[dict]) -> dict:
    r"""Least squares :math:`\Delta M = c_S N_S + c_T N_T + c_0` (one vocabulary, e.g. KL: :math:`c_S = c_T`)."""
    same = all(p["student_vocab"] == p["teacher_vocab"] for p in points) or not any(p["n_teacher"] for p in points)
    y = np.array([p["extra_bytes"] for p in points], dtype=float)
    ns = np.array([p["n_student"] for p in points], dtype=float)
    nt = np.array([p["n_teacher"] for p in points], dtype=float)
    if not any(nt):  # no teacher logits (CE, a cache)
        x = np.stack([ns, np.ones_like(ns)], 1)
        (cs, c0), *_ = np.linalg.lstsq(x, y, rcond=None)
        ct = 0.0
    elif same:  # one vocabulary, the same shapes on both sides: c_S = c_T
        x = np.stack([ns + nt, np.ones_like(ns)], 1)
        (c, c0), *_ = np.linalg.lstsq(x, y, rcond=None)
        cs = ct = c
    else:
        x = np.stack([ns, nt, np.ones_like(ns)], 1)
        (cs, ct, c0), *_ = np.linalg.lstsq(x, y, rcond=None)
    pred = cs * ns + ct * nt + c0
    return {"student_bytes_per_logit": round(float(cs), 3), "teacher_bytes_per_logit": round(float(ct), 3),
            "constant_bytes": round(float(c0)), "max_rel_residual": round(float(np.max(np.abs(pred - y) / y)), 4)}


def fit_activations(points: list[dict]) -> dict:
    r"""Per (layers, width, sequence length) the slope in tokens (bytes per token), then least squares
    :math:`\alpha n_\ell d + \beta d + \gamma n_\ell L`."""
    def slope(pts):
        lo, hi = sorted(pts, key=lambda p: p["tokens"])[::len(pts) - 1]
        return (hi["extra_bytes"] - lo["extra_bytes"]) / (hi["tokens"] - lo["tokens"])

    sizes = sorted({(p["layers"], p["width"], p["seq"]) for p in points})
    slopes = [(n, d, seq, slope([p for p in points if (p["layers"], p["width"], p["seq"]) == (n, d, seq)]))
              for n, d, seq in sizes]
    x = np.array([[n * d, d, n * seq] for n, d, seq, _ in slopes], dtype=float)
    y = np.array([s for *_, s in slopes], dtype=float)
    (alpha, beta, gamma), *_ = np.linalg.lstsq(x, y, rcond=None)
    pred = x @ np.array([alpha, beta, gamma])
    return {"per_layer_per_width": round(float(alpha), 3), "per_width": round(float(beta), 3),
            "per_layer_per_token_of_context": round(float(gamma), 3),
            "max_rel_residual": round(float(np.max(np.abs(pred - y) / y)), 4),
            "bytes_per_token": [{"layers": n, "width": d, "seq": seq, "measured": round(s), "fitted": round(float(f))}
                                for (n, d, seq, s), f in zip(slopes, pred)]}


# --------------------------------------------------------------------------- fresh processes
def _child(kind: str, args: list, device: str) -> list[dict]:
    """Run ``kind`` (objective or activations) in a fresh Python process; its JSON result."""
    code = ("import json, sys, torch; torch.set_num_threads(1); from uldviz.scale import measure as m; "
            f"print('RESULT' + json.dumps(m.{kind}_points(*{args!r}, device={device!r})))")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode or not lines:
        raise RuntimeError(f"measuring {kind} {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT"):])


def measure_memory(device: str = "cpu", losses=tuple(LOSS_KEYS), log=print) -> dict:
    """Every point of (a) and (b) in fresh processes, and the fits: the content of :data:`COEFFICIENTS`."""
    import torch

    from uldviz.env import load_average

    t0 = time.perf_counter()
    result = {"command": MEMORY_COMMAND, "device": device, "torch": torch.__version__,
              "method": ("peak RSS: VmHWM (reset by /proc/self/clear_refs) minus VmRSS before the step, fresh process, "
                         "1 torch thread, MALLOC_MMAP_THRESHOLD_=65536" if device == "cpu" else
                         "torch.cuda.max_memory_allocated minus memory_allocated before the step"),
              "load_average_before": load_average(), "objective": {}, "activations": {}}
    paths = ("torch", "cpu") if device == "cpu" else ("torch",)
    for precision in ("bf16", "fp32"):
        log(f"activations, {precision}")
        pts = _child("activation", [precision], device)
        result["activations"][precision] = {**fit_activations(pts), "points": pts}
        log(f"teacher forward, {precision}")
        pts = _child("teacher", [precision], device)
        result.setdefault("teacher", {})[precision] = {**fit_teacher(pts), "points": pts}
        log(f"whole step, {precision}")
        result.setdefault("check", {})[precision] = _child("step", [precision], device)[0]
        result["objective"][precision] = {}
        for key in losses:
            entry = {}
            for path in paths:
                if path == "cpu" and key not in NUMPY_KERNEL:
                    continue
                log(f"objective {key}, {precision}, {path} path")
                try:
                    pts = _child("objective", [key, precision, path], device)
                    entry[path] = {**fit_objective(pts), "points": pts}
                except RuntimeError as err:  # recorded: the loss cannot run this way (e.g. a missing bf16 kernel)
                    entry[path] = {"error": str(err).strip().splitlines()[-1]}
                    log(f"  failed: {entry[path]['error']}")
            result["objective"][precision][key] = entry
    result["load_average_after"] = load_average()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


# --------------------------------------------------------------------------- feed
#: The feed measurement: the tiny toy pair, ULD with offset pairing; the loop at its context (128 tokens), the
#: producer alone and a simulated GPU step at the docs' shape (8 x 512; 35 ms of GPU compute per step, the issue's
#: estimate for the 1B-teacher example), span-group pairing (hybrid) timed too.
FEED = {"size": "tiny", "batch_size": 8, "loop_tokens": 128, "loop_window_chars": 500, "gpu_tokens": 512,
        "gpu_window_chars": 2000, "gpu_step_seconds": 0.035, "workers": (0, 2), "losses": ("uld", "hybrid")}


def _feed_parts(pair: Path, loss: str, tokens: int, window: int, workers: int, steps: int, out: Path):
    """(config, examples, objective, student tokenizer, teacher tokenizer) of a feed measurement."""
    from uldviz.scale.config import ScaleConfig
    from uldviz.scale.data import load_examples
    from uldviz.scale.loading import load_tokenizer_of
    from uldviz.train.objectives import Objective

    cfg = ScaleConfig(teacher=str(pair / "teacher"), student=str(pair / "student"), loss=loss,
                      batch_size=FEED["batch_size"], max_tokens=tokens, window_chars=window, steps=steps,
                      warmup_steps=0, lr=1e-3, eval_every=steps, eval_chars=2000, eval_block=64, save_every=0,
                      workers=workers, cpu=True, progress=False, out_dir=str(out))
    examples, _ = load_examples(cfg)
    s_tok, t_tok = load_tokenizer_of(cfg.student), load_tokenizer_of(cfg.teacher)
    obj = Objective(cfg, s_tok, t_tok, student_vocab=len(s_tok), teacher_vocab=len(t_tok))
    return cfg, examples, obj, s_tok, t_tok


def _time_step_batches(parts, steps: int) -> dict:
    """Wall and CPU seconds of :meth:`StepBatches.step` (tokenize both sides + pair) in this process, per step."""
    from uldviz.scale.feed import StepBatches

    cfg, examples, obj, s_tok, t_tok = parts
    data = StepBatches(cfg, examples, obj, s_tok, t_tok, first_step=0, rank=0, world=1)
    data.step(0)  # warm-up
    wall, cpu = [], []
    for step in range(1, steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        data.step(step)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_ms": round(1e3 * float(np.median(wall)), 1), "cpu_ms": round(1e3 * float(np.median(cpu)), 1)}


def _time_feed(parts, steps: int, busy_seconds: float) -> dict:
    """The wait for each step's micro-batches when the consumer is busy ``busy_seconds`` per step without the CPU
    (``time.sleep``: a GPU computing): the first wait (workers starting) and the median of the others."""
    from uldviz.scale.feed import micro_batches

    cfg, examples, obj, s_tok, t_tok = parts
    feed = micro_batches(cfg, examples, obj, s_tok, t_tok, first_step=0, rank=0, world=1)
    waits = []
    t_start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        next(feed)
        waits.append(time.perf_counter() - t0)
        time.sleep(busy_seconds)
    total = time.perf_counter() - t_start
    feed.close()
    return {"first_wait_ms": round(1e3 * waits[0], 1), "wait_ms": round(1e3 * float(np.median(waits[1:])), 1),
            "step_ms": round(1e3 * (total - waits[0]) / (steps - 1), 1)}


def measure_feed(steps: int = 30) -> dict:
    """The feed's figures on the tiny toy pair (see :data:`FEED`); one process, timings of this machine now."""
    import tempfile

    import torch

    from uldviz.env import load_average
    from uldviz.scale.loop import train
    from uldviz.scale.toy import save_toy_pair

    f = FEED
    result = {"command": FEED_COMMAND, "steps": steps, "setup": {k: list(v) if isinstance(v, tuple) else v
                                                                  for k, v in f.items()},
              "cpus": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
              "load_average_before": load_average(), "step_batches": {}, "simulated_gpu": {}, "loop": {}}
    with tempfile.TemporaryDirectory() as tmp:
        pair = Path(tmp) / "pair"
        save_toy_pair(pair, f["size"])
        for loss in f["losses"]:
            for tokens, window in ((f["loop_tokens"], f["loop_window_chars"]),
                                   (f["gpu_tokens"], f["gpu_window_chars"])):
                parts = _feed_parts(pair, loss, tokens, window, 0, steps + 1, Path(tmp) / "x")
                result["step_batches"][f"{loss} {f['batch_size']}x{tokens}"] = _time_step_batches(parts, steps)
        for workers in f["workers"]:
            parts = _feed_parts(pair, "uld", f["gpu_tokens"], f["gpu_window_chars"], workers, steps, Path(tmp) / "x")
            result["simulated_gpu"][str(workers)] = _time_feed(parts, steps, f["gpu_step_seconds"])
        for workers in f["workers"]:
            cfg = _feed_parts(pair, "uld", f["loop_tokens"], f["loop_window_chars"], workers, steps,
                              Path(tmp) / f"run{workers}")[0]
            res = train(cfg)
            result["loop"][str(workers)] = {"tokens_per_second": round(res.tokens_per_second),
                                            "step_ms": round(1e3 * res.seconds / res.steps, 1),
                                            "data_wait_ms_per_step": round(1e3 * res.data_wait_seconds / res.steps, 1)}
    result["load_average_after"] = load_average()
    return result


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``memory``: measure and (``--write``) store the coefficients; ``feed``: the feed's timings."""
    parser = argparse.ArgumentParser(prog="python -m uldviz.scale.measure", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    mem = sub.add_parser("memory", help="peak memory of a step: objective per loss, student activations")
    mem.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    mem.add_argument("--loss", nargs="+", choices=list(LOSS_KEYS), default=list(LOSS_KEYS))
    mem.add_argument("--write", action="store_true", help=f"rewrite {COEFFICIENTS.name}")
    mem.add_argument("--out", default="", help="write the JSON here instead")
    feed = sub.add_parser("feed", help="the toy pair's loop with 0 and 2 workers; tokenization + pairing per step")
    feed.add_argument("--write", action="store_true", help=f"rewrite {FEED_RESULTS.relative_to(ROOT)}")
    feed.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    if args.what == "memory":
        result = measure_memory(args.device, tuple(args.loss), log=lambda m: print(m, file=sys.stderr, flush=True))
        text = json.dumps(result, indent=1) + "\n"
        target = args.out or (str(COEFFICIENTS) if args.write else "")
        if target:
            Path(target).write_text(text, encoding="utf-8")
            print(f"wrote {target}")
        else:
            print(text)
        return 0
    result = measure_feed(steps=args.steps)
    text = json.dumps(result, indent=1) + "\n"
    if args.write:
        FEED_RESULTS.write_text(text, encoding="utf-8")
        print(f"wrote {FEED_RESULTS}")
    else:
        print(text)
    return 0




if __name__ == "__main__":
    raise SystemExit(main())
