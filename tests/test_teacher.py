"""The shipped teacher loads and reaches its recorded score; ``build-teacher --quick`` runs end to end, reproducibly."""

from __future__ import annotations

import json

import pytest
import torch

from uldviz.io.corpus import load_corpus, train_val_split
from uldviz.io.models import load_teacher, parameter_count, teacher_dir
from uldviz.io.tokenizers import offline_tokenizers
from uldviz.train.metrics import model_bits_per_byte
from uldviz.train.teacher import QUICK, TeacherConfig, build_teacher, main


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Nothing here may touch the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def shipped():
    """(model, tokenizer, card) of the shipped teacher."""
    return load_teacher()


def test_shipped_teacher_card_is_complete(shipped):
    model, tok, card = shipped
    for key in ("config", "seed", "command", "versions", "val_bits_per_byte", "parameters", "train_seconds"):
        assert key in card, key
    assert card["command"].startswith("python -m uldviz build-teacher")
    assert card["parameters"] == parameter_count(model)
    assert card["config"]["block_size"] <= model.config.n_positions
    weights = sum(f.stat().st_size for f in teacher_dir().glob("*.safetensors"))
    assert 0 < weights <= 10 * 1024 * 1024, "the checkpoint must stay under 10 MB"
    assert weights == card["weights_bytes"]


def test_shipped_teacher_tokenizer_is_the_shipped_teacher_tokenizer(shipped):
    _, tok, card = shipped
    student_tok, teacher_tok = offline_tokenizers()
    assert tok.get_vocab() == teacher_tok.get_vocab()
    assert len(tok) == card["tokenizers"]["teacher_vocab"]
    assert len(student_tok) == card["tokenizers"]["student_vocab"]


def test_shipped_teacher_reaches_recorded_validation_score(shipped):
    model, tok, card = shipped
    _, val = train_val_split(load_corpus(), card["config"]["val_fraction"])
    assert len(val) == card["val_chars"], "the held-out text changed since the teacher was built"
    bpb = model_bits_per_byte(model, tok, val, block_size=card["config"]["block_size"])
    assert bpb == pytest.approx(card["val_bits_per_byte"], abs=1e-3)
    # and it has learned something real: far below a uniform guess over its vocabulary
    n_tokens = len(tok(val, add_special_tokens=False)["input_ids"])
    uniform = n_tokens * torch.log2(torch.tensor(float(len(tok)))).item() / len(val.encode())
    assert bpb < 0.6 * uniform


def test_load_teacher_shows_no_progress_bar_and_restores_the_setting(capfd):
    """transformers 5 draws "Loading weights 0/40" on each from_pretrained: a notebook would store it in its outputs."""
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    capfd.readouterr()
    load_teacher()
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err
    assert hf_logging.is_progress_bar_enabled()  # only silenced while the teacher loads
    hf_logging.disable_progress_bar()
    load_teacher()
    assert not hf_logging.is_progress_bar_enabled()  # a setting the caller chose is kept
    hf_logging.enable_progress_bar()


def test_load_teacher_missing_folder_says_how_to_rebuild(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-teacher"):
        load_teacher(tmp_path)


@pytest.mark.slow
def test_build_teacher_quick_end_to_end(tmp_path, capsys):
    assert main(["--quick", "--out", str(tmp_path), "--quiet"]) == 0
    assert "bits per byte" in capsys.readouterr().out
    for sub in ("tokenizers/teacher/tokenizer.json", "tokenizers/student/tokenizer.json",
                "teacher/model.safetensors", "teacher/tokenizer.json", "teacher/card.json"):
        assert (tmp_path / sub).is_file(), sub
    model, tok, card = load_teacher(tmp_path / "teacher")
    assert card["config"]["steps"] == QUICK["steps"] and card["command"].endswith("--quiet")
    assert len(tok) == QUICK["teacher_vocab"]
    _, val = train_val_split(load_corpus(), card["config"]["val_fraction"])
    bpb = model_bits_per_byte(model, tok, val, block_size=card["config"]["block_size"])
    assert bpb == pytest.approx(card["val_bits_per_byte"], abs=1e-4)

    # deterministic: a second build gives the same tokenizers and bit-identical weights
    card2 = build_teacher(tmp_path / "again", TeacherConfig(**QUICK), progress=False)
    assert card2["val_bits_per_byte"] == card["val_bits_per_byte"]
    for sub in ("teacher/model.safetensors", "tokenizers/teacher/tokenizer.json", "tokenizers/student/tokenizer.json"):
        assert (tmp_path / sub).read_bytes() == (tmp_path / "again" / sub).read_bytes(), sub
    assert json.loads((tmp_path / "again" / "teacher" / "card.json").read_text())["seed"] == 0


def test_teacher_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        TeacherConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        TeacherConfig(lr=0)
