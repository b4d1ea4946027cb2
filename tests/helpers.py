"""Small shared builders for the distillation tests: a tiny teacher and setup that train in well under a second."""

from __future__ import annotations

from uldviz.distill import DistillConfig, Setup
from uldviz.io.models import tiny_causal_lm
from uldviz.io.tokenizers import offline_tokenizers


def tiny_setup(corpus_chars: int = 80_000, heldout_chars: int = 1500) -> Setup:
    """The kit's two tokenizers, a 1-layer random teacher and a small slice of the corpus split three ways."""
    from uldviz.io.corpus import load_corpus, train_val_test_split

    s_tok, t_tok = offline_tokenizers()
    train_text, val_text, test_text = train_val_test_split(load_corpus()[:corpus_chars], 0.2)
    teacher = tiny_causal_lm(len(t_tok), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=1)
    return Setup(teacher, t_tok, s_tok, train_text, val_text[:heldout_chars], test_text[:heldout_chars])


def tiny_config(**changes) -> DistillConfig:
    """A few steps of a 1-layer student on the CPU."""
    base = dict(steps=4, batch_size=4, n_layer=1, n_embd=32, n_head=2, n_positions=96, eval_every=2,
                window_chars=120, train_fraction=0.5, device="cpu")
    return DistillConfig(**{**base, **changes})
