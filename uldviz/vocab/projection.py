r"""X-Token's projection W built from string rules: which teacher tokens each student token's text becomes.

For every student token s (special tokens excepted) its surface text is re-tokenized by the teacher
(:func:`uldviz.vocab.strings.normalized_token`, then the teacher's tokenizer without special tokens). The first
:data:`MAX_PIECES` teacher pieces :math:`\tau_1..\tau_n` receive decaying weights, most of the row on the first
piece (the token that a next-token distribution over the teacher's vocabulary would put the mass on):

.. math:: W_{s,\tau_k} \mathrel{+}= \frac{0.9\cdot 0.1^{\,k-1}}{\sum_{j=1}^{n} 0.9\cdot 0.1^{\,j-1}}

A student token whose text is exactly one teacher token (the kit's surface rule, :mod:`uldviz.vocab.shared`) gets a
one-hot row. Each row keeps its :data:`ROW_TOP_K` largest weights and is renormalised to sum to 1. This follows
X-Token's released recipe (NeMo RL's ``minimal_projection_via_multitoken`` and ``reapply_exact_map``, as run in its
tests: exact matches pinned, no reverse pass, top 4 per row) and leaves out its optional extras (a reverse
teacher→student pass, fuzzy matching of special-token names, a "scale" column). Nothing is learned.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from uldviz.vocab.shared import surface_vocab
from uldviz.vocab.strings import is_byte_level, normalized_token

__all__ = ["Projection", "MAX_PIECES", "ROW_TOP_K", "piece_weights", "build_projection", "describe_rows",
           "surface_by_id"]


@dataclass
class Projection:
    """A sparse student→teacher map W, stored as coordinates: ``W[student[k], teacher[k]] = weight[k]``.

    Each row sums to 1 or is empty (a student token that maps nowhere, e.g. a special token). ``student_size``
    and ``teacher_size`` are the vocabulary sizes (logits widths) it was built for.
    """

    student: torch.Tensor
    teacher: torch.Tensor
    weight: torch.Tensor
    student_size: int
    teacher_size: int
    _dense: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        s, t, w = (torch.as_tensor(x) for x in (self.student, self.teacher, self.weight))
        if not (s.dim() == t.dim() == w.dim() == 1 and s.shape == t.shape == w.shape):
            raise ValueError("student, teacher and weight must be 1-D of one length (one entry per non-zero of W)")
        if s.numel() and (int(s.min()) < 0 or int(s.max()) >= self.student_size
                          or int(t.min()) < 0 or int(t.max()) >= self.teacher_size):
            raise ValueError(f"W has an index outside its {self.student_size} x {self.teacher_size} shape")
        if w.numel() and (not bool(torch.isfinite(w).all()) or bool((w < 0).any())):
            raise ValueError("W's weights must be finite and >= 0")
        rows = torch.zeros(self.student_size, dtype=torch.float64, device=s.device).index_add_(0, s.long(), w.double())
        if bool(((rows > 0) & ((rows - 1).abs() > 1e-5)).any()):
            raise ValueError("every non-empty row of W must sum to 1 (W is row-stochastic)")
        self.student, self.teacher, self.weight = s.long().cpu(), t.long().cpu(), w.float().cpu()

    @property
    def nnz(self) -> int:
        """How many non-zero weights W has."""
        return int(self.weight.numel())

    def row(self, s: int) -> dict[int, float]:
        """Student token ``s``'s teacher tokens and weights, largest first."""
        keep = self.student == s
        pairs = sorted(zip(self.teacher[keep].tolist(), self.weight[keep].tolist()), key=lambda x: -x[1])
        return dict(pairs)

    def transposed(self, device, dtype) -> torch.Tensor:
        r""":math:`W^\top` as a sparse CSR tensor (teacher × student) on ``device`` in ``dtype``, built once each."""
        key = (str(device), dtype)
        if key not in self._dense:
            idx = torch.stack([self.teacher, self.student]).to(device)
            wt = torch.sparse_coo_tensor(idx, self.weight.to(device=device, dtype=dtype),
                                         (self.teacher_size, self.student_size), check_invariants=True).coalesce()
            if wt.device.type == "cpu":  # CSR multiplies faster on the CPU
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
                    wt = wt.to_sparse_csr()
            self._dense[key] = wt
        return self._dense[key]

    def project(self, student_probs: torch.Tensor) -> torch.Tensor:
        r""":math:`W^\top p` for rows ``student_probs`` (N, V_S) -> (N, V_T): each student token's mass sent to its
        teacher tokens (differentiable in ``student_probs``)."""
        p = student_probs
        if p.dim() != 2 or p.shape[-1] != self.student_size:
            raise ValueError(f"student_probs must be (rows, {self.student_size}), got {tuple(p.shape)}")
        with torch.autocast(p.device.type, enabled=False):  # in p's precision (float32 at least), not autocast's
            # contiguous: the (rows, V_T) result is read several times by the loss (measured ~15 % faster)
            return torch.sparse.mm(self.transposed(p.device, p.dtype), p.t()).t().contiguous()


#: How many teacher pieces of a student token's text receive weight.
MAX_PIECES = 4
#: How many teacher tokens each row of W keeps.
ROW_TOP_K = 4


def piece_weights(n: int) -> list[float]:
    """The decaying weights of n pieces, 0.9 · 0.1^(k-1) renormalised (n = 1: [1]; n = 2: [0.909, 0.091])."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    raw = [0.9 * 0.1 ** k for k in range(n)]
    return [w / sum(raw) for w in raw]


def build_projection(student_tok, teacher_tok, *, max_pieces: int = MAX_PIECES, top_k: int = ROW_TOP_K) -> Projection:
    """W for two tokenizers (student rows, teacher columns), from the string rules of the module docstring."""
    if max_pieces < 1 or top_k < 1:
        raise ValueError(f"max_pieces and top_k must be >= 1, got {max_pieces} and {top_k}")
    s_size, t_size = len(student_tok), len(teacher_tok)
    teacher_surface = surface_vocab(teacher_tok)
    specials = set(getattr(student_tok, "all_special_ids", []))
    byte_level = is_byte_level(student_tok)
    vocab = student_tok.get_vocab()
    rows: dict[int, dict[int, float]] = {}
    for token, s in vocab.items():
        if s in specials or s >= s_size:
            continue
        text = normalized_token(token, byte_level)
        if not text:  # part of a multi-byte character: it spells no text of its own
            continue
        if text in teacher_surface:
            rows[s] = {teacher_surface[text]: 1.0}
            continue
        pieces = teacher_tok(text, add_special_tokens=False)["input_ids"][:max_pieces]
        if not pieces:
            continue
        row: dict[int, float] = {}
        for t, w in zip(pieces, piece_weights(len(pieces))):
            row[t] = row.get(t, 0.0) + w
        rows[s] = row
    student, teacher, weight = [], [], []
    for s in sorted(rows):
        kept = sorted(rows[s].items(), key=lambda x: (-x[1], x[0]))[:top_k]
        total = sum(w for _, w in kept)
        for t, w in kept:
            student.append(s)
            teacher.append(t)
            weight.append(w / total)
    cpu = dict(device="cpu")  # W is stored on the CPU; Projection.transposed moves it once per device
    return Projection(torch.tensor(student, dtype=torch.long, **cpu), torch.tensor(teacher, dtype=torch.long, **cpu),
                      torch.tensor(weight, dtype=torch.float32, **cpu), s_size, t_size)


def describe_rows(projection: Projection, student_tok, teacher_tok, student_ids) -> list[list]:
    """Rows of W as a table: the student token's surface text, then its teacher tokens with their weights.

    Texts are shown with ``repr`` (spaces and newlines visible); a row that maps nowhere reads "(maps nowhere)".
    """
    s_text = surface_by_id(student_tok)
    t_text = surface_by_id(teacher_tok)
    rows = []
    for s in student_ids:
        row = projection.row(int(s))
        pieces = ", ".join(f"{t_text[t]!r} {w:.3f}" for t, w in row.items()) or "(maps nowhere)"
        rows.append([repr(s_text[int(s)]), pieces])
    return rows


def surface_by_id(tok) -> list[str]:
    """Each id's surface text (decoded; '' for special tokens and half characters), for tables."""
    from uldviz.vocab.strings import surface_vocab_by_id

    specials = set(getattr(tok, "all_special_ids", []))
    return ["" if i in specials else w for i, w in enumerate(surface_vocab_by_id(tok))]
