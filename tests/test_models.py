"""Model helpers: tiny GPT-2 construction, checkpoint round trip, local/hub loading, bits per byte."""

from __future__ import annotations

import math
import time

import pytest
import torch

from uldviz.io.models import (
    HUB_STUDENT,
    HUB_TEACHER,
    HubUnavailableError,
    load_pretrained,
    parameter_count,
    tiny_causal_lm,
)
from uldviz.io.tokenizers import offline_tokenizers
from uldviz.train.metrics import bits_per_byte, encode_blocks, model_bits_per_byte, model_nll, sample_blocks


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Hubs are unreachable here: force the offline path so nothing waits on the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def student_tok():
    """The shipped Unigram student tokenizer."""
    return offline_tokenizers().student


def test_tiny_causal_lm_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_causal_lm(100, n_layer=1, n_embd=32, n_head=2, n_positions=16, seed=7)
    after = torch.rand(3)
    assert torch.equal(before, after), "building a model changed the global RNG"
    b = tiny_causal_lm(100, n_layer=1, n_embd=32, n_head=2, n_positions=16, seed=7)
    c = tiny_causal_lm(100, n_layer=1, n_embd=32, n_head=2, n_positions=16, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.config.vocab_size == 100 and a.config.n_positions == 16


def test_parameter_count_counts_tied_embeddings_once():
    m = tiny_causal_lm(100, n_layer=1, n_embd=32, n_head=2, n_positions=16)
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()
    # by hand: wte 100*32 + wpe 16*32 + block (2 LN + attn + mlp) + final LN
    block = 2 * 2 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32)
    assert parameter_count(m) == 100 * 32 + 16 * 32 + block + 2 * 32
    for p in m.transformer.wte.parameters():
        p.requires_grad_(False)
    assert parameter_count(m, trainable_only=True) == parameter_count(m) - 100 * 32
    with pytest.raises(TypeError):
        parameter_count("not a model")


@pytest.mark.parametrize("kwargs, err", [
    (dict(vocab_size=0), ValueError), (dict(vocab_size=10.5), TypeError), (dict(vocab_size=50, n_embd=30, n_head=4),
                                                                          ValueError),
    (dict(vocab_size=50, n_layer=0), ValueError), (dict(vocab_size=50, dropout=1.0), ValueError),
])
def test_tiny_causal_lm_bad_arguments(kwargs, err):
    with pytest.raises(err):
        tiny_causal_lm(**kwargs)


def test_checkpoint_round_trip_and_load_pretrained(tmp_path, student_tok):
    model = tiny_causal_lm(len(student_tok), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=3)
    model.save_pretrained(tmp_path, safe_serialization=True)
    student_tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded, tok = load_pretrained(str(tmp_path))
    assert parameter_count(loaded) == parameter_count(model)
    x = torch.tensor([student_tok("The assert statement")["input_ids"]])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=x).logits, loaded(input_ids=x).logits, atol=1e-6)
    assert tok("café")["input_ids"] == student_tok("café")["input_ids"]
    loaded2, _ = load_pretrained(tmp_path, dtype=torch.float64)
    assert next(loaded2.parameters()).dtype == torch.float64


def test_load_pretrained_unknown_name_offline_is_fast_and_clear():
    t0 = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="nobody-here/tiny-model") as info:
        load_pretrained("nobody-here/tiny-model")
    assert time.perf_counter() - t0 < 10
    assert isinstance(info.value, OSError)
    assert "offline" in str(info.value).lower()


def test_load_pretrained_rejects_a_directory_without_a_model(tmp_path, student_tok):
    student_tok.save_pretrained(tmp_path)  # a tokenizer but no model
    with pytest.raises(ValueError, match="save_pretrained"):
        load_pretrained(tmp_path)


def test_hub_preset_names():
    assert HUB_TEACHER == "EleutherAI/pythia-160m" and HUB_STUDENT == "gpt2"


# --------------------------------------------------------------------------- bits per byte
def test_bits_per_byte_by_hand():
    # 3 tokens each predicted with probability 1/2 over a 2-byte text: 3 bits / 2 bytes
    assert bits_per_byte(3 * math.log(2), 2) == pytest.approx(1.5)
    assert bits_per_byte(torch.tensor(8 * math.log(2)), "é" * 2) == pytest.approx(2.0)  # 'é' is 2 bytes
    with pytest.raises(ValueError, match="bytes"):
        bits_per_byte(1.0, "")
    with pytest.raises(ValueError, match="non-negative"):
        bits_per_byte(float("nan"), 3)
    with pytest.raises(ValueError):
        bits_per_byte(-1.0, 3)


class _Uniform(torch.nn.Module):
    """A 'model' that predicts a uniform distribution: its NLL is known exactly."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.config = type("C", (), {"n_positions": 8})()

    def forward(self, input_ids, attention_mask=None):
        return type("O", (), {"logits": torch.zeros(*input_ids.shape, self.vocab) + 0 * self.dummy})()


def test_model_bits_per_byte_against_hand_computation(student_tok):
    text = "the cat sat on the mat. " * 5
    n_tokens = len(student_tok(text, add_special_tokens=False)["input_ids"])
    model = _Uniform(len(student_tok))
    total, count = model_nll(model, student_tok, text, block_size=8)
    assert count == n_tokens  # every token predicted exactly once
    assert total == pytest.approx(n_tokens * math.log(len(student_tok)), rel=1e-6)
    expected = n_tokens * math.log2(len(student_tok)) / len(text.encode())
    assert model_bits_per_byte(model, student_tok, text, block_size=8) == pytest.approx(expected, rel=1e-6)


def test_encode_and_sample_blocks_share_a_format(student_tok):
    text = "one two three four five six seven"
    ids = student_tok(text, add_special_tokens=False)["input_ids"]
    blocks = encode_blocks(student_tok, text, 5)
    assert blocks.shape[1] == 5 and (blocks[:, 0] == student_tok.eos_token_id).all()
    flat = blocks[:, 1:].reshape(-1)
    assert flat[flat != -100].tolist() == ids
    g = torch.Generator().manual_seed(0)
    x, y = sample_blocks(torch.tensor(ids), 4, 5, student_tok.eos_token_id, generator=g)
    assert x.shape == y.shape == (4, 4)
    assert (x[:, 0] == student_tok.eos_token_id).all() and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="block_size"):
        encode_blocks(student_tok, text, 1)
    with pytest.raises(ValueError, match="fewer than one block"):
        sample_blocks(torch.tensor(ids[:2]), 2, 10, 0)
