"""A teacher/student pair with the kit's two different tokenizers, saved like hub models (``save_pretrained``).

Random GPT-2s with the kit's byte-level BPE (teacher) and Unigram (student) tokenizers: what the tests train, what
``benchmarks/gpu_check.py`` times at a hub-like size, and a way to try every command offline in a minute.
``python -m uldviz.scale.toy OUT [--size tiny|hub-like]`` writes ``OUT/teacher`` and ``OUT/student``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["SIZES", "save_toy_pair", "main"]

#: name -> (teacher kwargs, student kwargs) for :func:`uldviz.io.models.tiny_causal_lm`.
SIZES = {
    "tiny": (dict(n_layer=1, n_embd=32, n_head=2, n_positions=128), dict(n_layer=1, n_embd=32, n_head=2,
                                                                            n_positions=128)),
    "small": (dict(n_layer=2, n_embd=64, n_head=4, n_positions=256), dict(n_layer=2, n_embd=48, n_head=4,
                                                                             n_positions=256)),
    # GPT-2-small-like teacher, a 6-layer student: shapes of a real pair (vocabularies stay the kit's)
    "hub-like": (dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024), dict(n_layer=6, n_embd=576, n_head=9,
                                                                                  n_positions=1024)),
}


def save_toy_pair(out_dir, size: str = "tiny", seed: int = 0, student_dropout: float = 0.0) -> tuple[Path, Path]:
    """Write ``out_dir/teacher`` and ``out_dir/student`` (model + tokenizer each); returns the two folders."""
    from uldviz.io.models import tiny_causal_lm
    from uldviz.io.tokenizers import offline_tokenizers, save_tokenizer

    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    out = Path(out_dir)
    paths = []
    pair = offline_tokenizers()
    for role, tok, kwargs, s in zip(("teacher", "student"), (pair.teacher, pair.student), SIZES[size],
                                    (seed, seed + 1)):
        dropout = student_dropout if role == "student" else 0.0
        model = tiny_causal_lm(vocab_size=len(tok), seed=s, dropout=dropout, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id, **kwargs)
        path = out / role
        model.save_pretrained(path)
        save_tokenizer(tok, path)
        paths.append(path)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> int:
    """Command line: write the pair and print the two folders."""
    parser = argparse.ArgumentParser(prog="python -m uldviz.scale.toy", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    teacher, student = save_toy_pair(args.out_dir, args.size, args.seed)
    print(f"teacher: {teacher}\nstudent: {student}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
