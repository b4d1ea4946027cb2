r"""Teacher top-k cache: run the teacher once, then distil with no teacher in memory.

For every training example and every student position paired with a teacher position (the run's pairing, answer
positions only) the cache keeps the teacher's k largest probabilities (at its temperature), their token ids and
the tail mass :math:`1 - \sum_{r<k} p_{(r)}`: exactly what ULD's top-k + tail form needs
(:func:`uldviz.maths.losses.uld_topk_from_teacher_topk`). Shards are safetensors files; ``cache.json`` records the
format version, the teacher, the student tokenizer, the pairing, k and a fingerprint of the examples, so a
mismatched training run fails clearly. ``python -m uldviz cache-teacher`` takes the same flags as ``train``.

Encodings (``--cache-dtype``): ``q8`` (the default) stores each probability as an 8-bit code of its log-ratio to
the row's largest, :math:`c_r = \mathrm{round}\big((\log p_{(1)} - \log p_{(r)})/\Delta\big)`,
:math:`\Delta = 16/255` nats (a relative error of at most :math:`\pm\Delta/2 \approx 3\,\%`, none on the largest,
kept as float16); ``float16``/``bfloat16``/``float32`` store the probabilities themselves. Token ids take the
narrowest integer type the teacher's vocabulary allows (16 bits up to 65,536 tokens), student positions 16 bits
(below 32,768 tokens per sequence):

    bytes per position = k (size(code or prob) + size(id)) + [2 B row max for q8] + 4 B tail + 2 B position

(+ small per-shard headers): 3k + 8 = 200 B at k = 64 with q8. Format 1 caches (int32 ids and positions, probs as
stored) are still read.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from uldviz.scale.config import ScaleConfig, parse_and_run
from uldviz.scale.data import encode_examples, fingerprint, load_examples
from uldviz.scale.loading import output_vocab
from uldviz.train.objectives import CachedPairs, pair_positions

__all__ = ["CACHE_FORMAT", "READABLE_FORMATS", "CACHE_DTYPES", "Q8_RANGE", "TeacherCache", "cache_row_bytes",
           "encode_probs", "decode_probs", "write_teacher_cache", "cache_teacher", "main"]

CACHE_FORMAT = "uldviz-teacher-topk-cache/2"
#: Formats this version reads (1: int32 ids and positions, probabilities as stored).
READABLE_FORMATS = ("uldviz-teacher-topk-cache/1", CACHE_FORMAT)
META = "cache.json"
CACHE_DTYPES = {"q8": torch.uint8, "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
#: The log-ratio range (nats below the row's largest probability) the 8-bit codes span.
Q8_RANGE = 16.0


def _id_dtype(vocab: int) -> torch.dtype:
    """The narrowest signed type that holds ids 0..vocab-1 (16-bit ids are stored wrapped, read back & 0xFFFF)."""
    return torch.int16 if vocab <= 2 ** 16 else torch.int32


def cache_row_bytes(k: int, dtype: str = "q8", vocab: int = 2 ** 16) -> int:
    """Payload bytes of one cached position (see the module docstring's formula)."""
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"cache dtype must be one of {list(CACHE_DTYPES)}, got {dtype!r}")
    size = torch.finfo(CACHE_DTYPES[dtype]).bits // 8 if dtype != "q8" else 1
    id_size = torch.iinfo(_id_dtype(vocab)).bits // 8
    return k * (size + id_size) + (2 if dtype == "q8" else 0) + 4 + 2


def encode_probs(probs: torch.Tensor, dtype: str) -> dict:
    """Top-k probabilities (N, k), sorted descending, as stored: ``{"topk_probs": ...}`` (+ ``"topk_max"`` for q8)."""
    if dtype != "q8":
        return {"topk_probs": probs.to(CACHE_DTYPES[dtype])}
    top = probs[:, :1].clamp_min(1e-30)
    ratio = (top.log() - probs.clamp_min(1e-30).log()) / (Q8_RANGE / 255)
    return {"topk_probs": ratio.round().clamp(0, 255).to(torch.uint8), "topk_max": top[:, 0].to(torch.float16)}


def decode_probs(stored: dict, dtype: str) -> torch.Tensor:
    """The float32 probabilities of :func:`encode_probs`' output."""
    if dtype != "q8":
        return stored["topk_probs"].float()
    codes = stored["topk_probs"].to(torch.float32)
    return stored["topk_max"].float()[:, None] * torch.exp(-codes * (Q8_RANGE / 255))


def _shard_tensors(rows: list[dict], k: int, dtype: str, id_dtype: torch.dtype, pos_dtype: torch.dtype) -> dict:
    """One shard: per-example rows concatenated, ``example_start`` (E+1) marking where each example begins."""
    cpu = dict(device="cpu")  # shards are written from the CPU
    counts = torch.tensor([0] + [len(r["pos"]) for r in rows], **cpu)
    cat = lambda key, shape, dt: (torch.cat([r[key] for r in rows]) if int(counts.sum())  # noqa: E731
                                  else torch.zeros(shape, dtype=dt, **cpu))
    probs = cat("probs", (0, k), torch.float32).float()
    return {
        "example_start": torch.cumsum(counts, 0).to(torch.int64),
        "student_index": cat("pos", (0,), torch.int32).to(pos_dtype).contiguous(),
        **{key: v.contiguous() for key, v in encode_probs(probs, dtype).items()},
        "topk_ids": cat("ids", (0, k), torch.int32).to(id_dtype).contiguous(),
        "tail": cat("tail", (0,), torch.float32).to(torch.float32).contiguous(),
    }


@torch.no_grad()
def write_teacher_cache(teacher, teacher_tok, student_tok, examples, out_dir, *, k: int, align: str = "offset",
                        max_tokens: int = 512, teacher_temperature: float = 1.0, dtype: str = "float16",
                        batch_size: int = 8, shard_examples: int = 1024, rank: int = 0, world: int = 1,
                        device=None, autocast=nullcontext) -> list[dict]:
    """Write this process's shards (``rank::world``) of the cache of ``examples``; returns their descriptions.

    ``autocast`` (a context-manager factory, e.g. ``accelerator.autocast``) wraps the teacher's forward pass only;
    the shards are assembled outside it, in the cache's dtype.
    """
    from safetensors.torch import save_file

    if dtype not in CACHE_DTYPES:
        raise ValueError(f"cache dtype must be one of {list(CACHE_DTYPES)}, got {dtype!r}")
    t_vocab = output_vocab(teacher, teacher_tok)
    if not 1 <= k <= t_vocab:
        raise ValueError(f"top_k must be between 1 and the teacher's vocabulary ({t_vocab}), got {k}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or next(teacher.parameters()).device
    shards = []
    for s, first in enumerate(range(0, len(examples), shard_examples)):
        if s % world != rank:
            continue
        last = min(first + shard_examples, len(examples))
        rows = []
        for b0 in range(first, last, batch_size):
            idx = list(range(b0, min(b0 + batch_size, last)))
            batch = encode_examples([examples[i] for i in idx], idx, student_tok, teacher_tok, max_tokens)
            pairs = pair_positions(batch, align)  # on the CPU, as the training loop pairs them
            with autocast():
                logits = teacher(input_ids=batch.teacher_ids.to(device),
                                 attention_mask=batch.teacher_valid.long().to(device)).logits[..., :t_vocab]
            for j in range(len(idx)):
                keep = pairs.sample == j
                t_pos = pairs.teacher[keep].to(device)
                p = torch.softmax(logits[j, t_pos].float() / teacher_temperature, dim=-1)
                top = torch.topk(p, k, dim=-1)
                rows.append({"pos": pairs.student[keep].to(torch.int32), "probs": top.values.float().cpu(),
                             "ids": top.indices.cpu().to(torch.int32), "tail": (p.sum(-1) - top.values.sum(-1)).cpu()})
        name = f"shard_{s:05d}.safetensors"
        pos_dtype = torch.int16 if max_tokens < 2 ** 15 else torch.int32
        tensors = _shard_tensors(rows, k, dtype, _id_dtype(t_vocab), pos_dtype)
        save_file(tensors, str(out / name))
        shards.append({"file": name, "first": first, "count": last - first,
                       "positions": int(tensors["student_index"].numel()), "bytes": (out / name).stat().st_size})
    return shards


class TeacherCache:
    """Read a cache written by :func:`cache_teacher`: ``lookup(example indices) -> CachedTargets``."""

    def __init__(self, path):
        self.path = Path(path)
        meta_file = self.path / META
        if not meta_file.is_file():
            raise FileNotFoundError(f"no teacher cache at {self.path} (missing {META}); write one with "
                                    "`python -m uldviz cache-teacher ... --teacher-cache DIR`")
        try:
            self.meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"cache file {meta_file} is unreadable ({err})") from None
        if self.meta.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{meta_file} was written as format {self.meta.get('format')!r}; this kit reads "
                             f"{', '.join(READABLE_FORMATS)}: rewrite it with this kit's cache-teacher")
        self.k = int(self.meta["k"])
        self.dtype = self.meta.get("dtype", "float16")
        self._shards = sorted(self.meta["shards"], key=lambda s: s["first"])
        self._open: dict = {}

    def check_matches(self, cfg, student_tok, examples) -> None:
        """Raise a ValueError naming every setting in which this training run differs from the cache."""
        want = {"student_tokenizer_vocab": len(student_tok), "align": cfg.align, "max_tokens": cfg.max_tokens,
                "teacher_temperature": cfg.teacher_temperature, "fingerprint": fingerprint(examples),
                "n_examples": len(examples)}
        if cfg.top_k:
            want["k"] = cfg.top_k
        if cfg.teacher:  # a run that names a teacher must name the cache's (result.json records the cache's)
            want["teacher"] = cfg.teacher
        bad = [f"{key}: cache {self.meta.get(key)!r}, run {val!r}" for key, val in want.items()
               if self.meta.get(key) != val]
        if bad:
            raise ValueError(f"the teacher cache at {self.path} was written for other settings or data ("
                             + "; ".join(bad) + "); rewrite it with cache-teacher and the same flags as train")

    def _shard(self, i: int) -> tuple[dict, object]:
        from safetensors import safe_open

        lo, hi = 0, len(self._shards) - 1
        while lo < hi:  # the shard whose range holds example i
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self._shards[mid]["first"] <= i else (lo, mid - 1)
        desc = self._shards[lo]
        if not desc["first"] <= i < desc["first"] + desc["count"]:
            raise IndexError(f"example {i} is not in the teacher cache at {self.path}")
        if desc["file"] not in self._open:
            try:
                f = safe_open(str(self.path / desc["file"]), framework="pt")
            except Exception as err:  # noqa: BLE001 - a truncated or foreign file: name it in one line
                raise ValueError(f"cache shard {self.path / desc['file']} is unreadable ({err})") from None
            self._open[desc["file"]] = (f, f.get_tensor("example_start"))
        return desc, self._open[desc["file"]]

    def example(self, i: int) -> dict:
        """The cached rows of example ``i``: student positions, top-k probabilities (float32) and ids, tail masses."""
        desc, (f, starts) = self._shard(i)
        a, b = int(starts[i - desc["first"]]), int(starts[i - desc["first"] + 1])
        try:
            stored = {name: f.get_slice(name)[a:b] for name in f.keys() if name != "example_start"}
        except Exception as err:  # noqa: BLE001 - a damaged shard: name it in one line
            raise ValueError(f"cache shard {self.path / desc['file']} is unreadable ({err})") from None
        ids = stored["topk_ids"].to(torch.int64)
        return {"pos": stored["student_index"].to(torch.int64), "probs": decode_probs(stored, self.dtype),
                "ids": ids & 0xFFFF if stored["topk_ids"].dtype == torch.int16 else ids, "tail": stored["tail"]}

    def lookup(self, batch) -> CachedPairs:
        """The cached targets of a batch's examples (``batch.index``), flattened: one row per cached position."""
        rows = [self.example(int(i)) for i in batch.index]
        counts = [len(r["pos"]) for r in rows]
        cpu = dict(device="cpu")  # read on the CPU (a DataLoader worker), moved with the batch
        sample = torch.repeat_interleave(torch.arange(len(rows), **cpu), torch.tensor(counts, dtype=torch.long, **cpu))
        return CachedPairs(sample,
                           torch.cat([r["pos"].long() for r in rows]),
                           torch.cat([r["probs"] for r in rows]).reshape(-1, self.k),
                           torch.cat([r["tail"].float() for r in rows]))


def cache_teacher(cfg: ScaleConfig) -> dict:
    """Run the teacher of ``cfg`` once over its training examples and write the cache to ``cfg.teacher_cache``.

    Runs under ``accelerate launch`` too (each process writes every n-th shard). Returns the cache's metadata,
    including its size on disk and bytes per cached position.
    """
    from uldviz.scale.loading import check_context, load_teacher, load_tokenizer_of, make_accelerator

    if not cfg.teacher_cache:
        raise ValueError("--teacher-cache DIR is required: the folder the cache is written to")
    if not cfg.top_k:
        raise ValueError("--top-k K is required: how many teacher probabilities to keep per position (e.g. 64)")
    if not cfg.teacher:
        raise ValueError("--teacher is required to write a teacher cache")
    acc = make_accelerator(cfg)
    start = time.perf_counter()
    examples, _ = load_examples(cfg)
    s_tok = load_tokenizer_of(cfg.student)
    teacher, t_tok = load_teacher(cfg, acc.device, bf16=acc.mixed_precision == "bf16")
    check_context(teacher, cfg.teacher, cfg.max_tokens)
    out = Path(cfg.teacher_cache)
    if acc.is_main_process:  # a cache left in the folder must not mix with this one
        out.mkdir(parents=True, exist_ok=True)
        for old in [*out.glob("shard_*.safetensors"), *out.glob("shards.*.json"), out / META]:
            old.unlink(missing_ok=True)
    acc.wait_for_everyone()
    shards = write_teacher_cache(teacher, t_tok, s_tok, examples, out, k=cfg.top_k, align=cfg.align,
                                 max_tokens=cfg.max_tokens, teacher_temperature=cfg.teacher_temperature,
                                 dtype=cfg.cache_dtype, batch_size=cfg.batch_size,
                                 shard_examples=cfg.cache_shard_examples, rank=acc.process_index,
                                 world=acc.num_processes, device=acc.device, autocast=acc.autocast)
    (out / f"shards.{acc.process_index}.json").write_text(json.dumps(shards))
    acc.wait_for_everyone()
    meta = {}
    if acc.is_main_process:
        parts = sorted(out.glob("shards.*.json"))
        shards = sorted((s for p in parts for s in json.loads(p.read_text())), key=lambda s: s["first"])
        for p in parts:
            p.unlink()
        total = sum(s["bytes"] for s in shards)
        positions = sum(s["positions"] for s in shards)
        meta = {"format": CACHE_FORMAT, "k": cfg.top_k, "dtype": cfg.cache_dtype, "teacher": cfg.teacher,
                "student": cfg.student, "student_tokenizer_vocab": len(s_tok), "align": cfg.align,
                "max_tokens": cfg.max_tokens, "teacher_temperature": cfg.teacher_temperature,
                "fingerprint": fingerprint(examples), "n_examples": len(examples), "positions": positions,
                "bytes": total, "bytes_per_position": total / max(1, positions),
                "row_bytes": cache_row_bytes(cfg.top_k, cfg.cache_dtype, len(t_tok)), "processes": acc.num_processes,
                "seconds": round(time.perf_counter() - start, 2), "shards": shards}
        (out / META).write_text(json.dumps(meta, indent=1) + "\n")
    acc.wait_for_everyone()
    return meta


def _run(cfg: ScaleConfig) -> int:
    meta = cache_teacher(cfg)
    if meta:
        print(f"teacher cache: {meta['positions']:,} positions, k = {meta['k']}, {meta['bytes'] / 2**20:,.1f} MiB on "
              f"disk ({meta['bytes_per_position']:,.1f} B per position, i.e. {meta['bytes_per_position']:,.0f} MB per "
              f"million positions) in {os.fspath(cfg.teacher_cache)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m uldviz cache-teacher``: the flags of ``train``; --teacher, --top-k and --teacher-cache required."""
    return parse_and_run(ScaleConfig, _run, argv, "python -m uldviz cache-teacher", main.__doc__)
