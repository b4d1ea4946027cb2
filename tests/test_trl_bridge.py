"""The TRL bridge (uldviz.scale.trl_bridge) on the toy pair, CPU: the kit's loss inside TRL's GOLD trainer.

The loss TRL trains on equals the kit's own objective on the same examples (float64, to 1e-6) for ULD, the hybrid,
chunk likelihood and X-Token P-KL, through the whole trainer (its data preparation, the step buffer, gradient
accumulation over two micro-batches); an off-policy and an on-policy run (generation with transformers, a chat
template) train end to end; bad input fails in one line. Offline, a few seconds per test.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl", reason="the TRL bridge needs the [scale] extra (make test installs it)")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from datasets import Dataset  # noqa: E402
from transformers import PreTrainedTokenizer, TrainerCallback  # noqa: E402

from uldviz.io.corpus import load_corpus  # noqa: E402
from uldviz.io.models import load_pretrained  # noqa: E402
from uldviz.scale.loading import output_vocab  # noqa: E402
from uldviz.scale.toy import save_toy_pair  # noqa: E402
from uldviz.scale.trl_bridge import KitGOLDConfig, KitGOLDTrainer, main  # noqa: E402
from uldviz.train.batch import encode_batch  # noqa: E402
from uldviz.train.config import LossConfig  # noqa: E402
from uldviz.train.objectives import Objective  # noqa: E402

MAX_LENGTH = 96  # tokens per side (the toy models' context is 128)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each trainer builds its own Accelerator (accelerate keeps one global state per process)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    """The toy teacher (byte-level BPE) and student (Unigram), saved like hub models."""
    root = tmp_path_factory.mktemp("trl_pair")
    save_toy_pair(root, "tiny")
    return root


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    """Four prompt/completion examples cut from the kit's corpus (distinct prompts)."""
    text = load_corpus()
    return [{"prompt": text[i:i + 50], "completion": text[i + 50:i + 120]} for i in range(0, 4000, 1000)]


def config(tmp_path, **changes) -> KitGOLDConfig:
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, gradient_accumulation_steps=2,
                max_steps=1, learning_rate=1e-2, max_length=MAX_LENGTH, max_completion_length=8, lmbda=0.0,
                logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0)
    base.update(changes)
    return KitGOLDConfig(**base)


def spy_losses(trainer) -> list[torch.Tensor]:
    """Record every micro-batch loss compute_loss returns (full precision, unlike the float32 logged sum)."""
    seen, inner = [], trainer.compute_loss

    def compute_loss(model, inputs, *args, **kwargs):
        out = inner(model, inputs, *args, **kwargs)
        seen.append((out.detach().clone(), inputs))
        return out

    trainer.compute_loss = compute_loss
    return seen


def first_parameter(model) -> torch.Tensor:
    return next(p for p in model.parameters() if p.requires_grad).detach().clone()


# --------------------------------------------------------------------------- the same loss as the kit's objective
@pytest.fixture(scope="module")
def models64(pair):
    """The toy pair in float64 (so that one batch and two micro-batches agree to rounding), with tokenizers."""
    student, s_tok = load_pretrained(str(pair / "student"))
    teacher, t_tok = load_pretrained(str(pair / "teacher"))
    return student.double(), s_tok, teacher.double(), t_tok


class _Gradients(TrainerCallback):
    """The gradients the optimizer is about to step with (max_grad_norm=0: unclipped)."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = [p.grad.detach().clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("loss", ["uld", "hybrid", "chunk", "xtoken-pkl"])
def test_the_loss_trl_trains_on_is_the_kits_objective(models64, rows, tmp_path, loss):
    """One TRL step (2 micro-batches of 2, divided by the step's global counts) = the kit's loss on all 4 rows,
    in value and in the gradient the optimizer steps with."""
    student, s_tok, teacher, t_tok = models64
    kit = Objective(LossConfig(loss=loss, lam=1.5), s_tok, t_tok, student_vocab=output_vocab(student, s_tok),
                    teacher_vocab=output_vocab(teacher, t_tok))
    batch = encode_batch([r["prompt"] + r["completion"] for r in rows], s_tok, t_tok, student_len=MAX_LENGTH,
                         teacher_len=MAX_LENGTH, prompt_chars=[len(r["prompt"]) for r in rows])
    pairs = kit.pair(batch)
    student.zero_grad()
    sums = kit.sums(student, teacher, batch, pairs)
    kit.loss(sums).backward()
    expected, kit_grads = float(kit.loss(sums)), [p.grad.clone() for p in student.parameters() if p.requires_grad]
    student.zero_grad()
    ce, distill = float(sums.ce) / sums.ce_count, float(sums.distill) / sums.distill_count
    assert pairs.count > 0 and distill > 0

    grads = _Gradients()
    trainer = KitGOLDTrainer(student, teacher, args=config(tmp_path, loss=loss, learning_rate=0.0, max_grad_norm=0.0),
                             train_dataset=Dataset.from_list(rows), callbacks=[grads])
    seen = spy_losses(trainer)
    trainer.train()
    assert len(seen) == 2 and {len(x["original_prompt_text"]) for _, x in seen} == {2}
    assert sorted(p for _, x in seen for p in x["original_prompt_text"]) == sorted(r["prompt"] for r in rows)
    got = float(sum(value for value, _ in seen))
    grad_diff = max(float((a - b).abs().max()) for a, b in zip(grads.grads, kit_grads, strict=True))
    print(f"{loss}: TRL step {got:.15f}, kit {expected:.15f}, |diff| {abs(got - expected):.1e}, "
          f"max |grad diff| {grad_diff:.1e}")
    assert abs(got - expected) < 1e-6, (loss, got, expected)
    for mine, theirs in zip(grads.grads, kit_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)
    logged = trainer.state.log_history[0]  # Trainer and the bridge's logs accumulate in float32
    assert math.isclose(logged["loss"], expected, rel_tol=1e-5)
    assert math.isclose(logged["ce"], ce, rel_tol=1e-5) and math.isclose(logged["distill"], distill, rel_tol=1e-5)


# --------------------------------------------------------------------------- training end to end
class _Logs(TrainerCallback):
    """What a tracker (TensorBoard, W&B, trackio) receives: the logs of every on_log call."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_off_policy_training_runs_reports_the_kits_terms_and_evaluates_with_the_kits_loss(pair, rows, tmp_path):
    logs = _Logs()
    trainer = KitGOLDTrainer(str(pair / "student"), str(pair / "teacher"),
                             args=config(tmp_path, loss="hybrid", max_steps=2, per_device_eval_batch_size=4),
                             train_dataset=Dataset.from_list(rows), eval_dataset=Dataset.from_list(rows),
                             callbacks=[logs])
    before = first_parameter(trainer.model)
    trainer.train()
    steps = [x for x in logs.logs if "loss" in x]
    assert len(steps) == 2
    for x in steps:  # total = ce + 1.5 distill, every term finite, the step off-policy
        assert math.isclose(x["loss"], x["ce"] + 1.5 * x["distill"], rel_tol=1e-5) and x["distill"] > 0
        assert "off_policy_loss" in x and "on_policy_loss" not in x
    assert not torch.equal(before, first_parameter(trainer.model))
    # evaluation scores the dataset's completions with the kit's loss (one batch of 4: its own counts)
    kit, s_tok, t_tok = trainer.objective, trainer.processing_class, trainer.teacher_tokenizer
    batch = encode_batch([r["prompt"] + r["completion"] for r in rows], s_tok, t_tok, student_len=MAX_LENGTH,
                         teacher_len=MAX_LENGTH, prompt_chars=[len(r["prompt"]) for r in rows])
    trainer.model.eval()
    with torch.no_grad():
        expected = float(kit.loss(kit.sums(trainer.model, trainer.teacher_model, batch, kit.pair(batch))))
    assert math.isclose(trainer.evaluate()["eval_loss"], expected, rel_tol=1e-5)
    trainer.save_model(str(tmp_path / "final"))
    assert (tmp_path / "final" / "model.safetensors").is_file() and (tmp_path / "final" / "tokenizer.json").is_file()


def test_lora_trains_the_adapters_only(pair, rows, tmp_path):
    """PEFT comes from TRL: peft_config wraps the student; the kit's loss trains the LoRA weights alone."""
    peft = pytest.importorskip("peft")
    trainer = KitGOLDTrainer(str(pair / "student"), str(pair / "teacher"), args=config(tmp_path, loss="uld"),
                             train_dataset=Dataset.from_list(rows),
                             peft_config=peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
                                                         fan_in_fan_out=True))
    named = dict(trainer.model.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    trainer.train()
    changed = {n for n, p in named.items() if not torch.equal(before[n], p.detach())}
    assert changed and all("lora_" in n for n in changed)
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def test_on_policy_training_generates_with_the_chat_template_and_learns_the_completion(pair, rows, tmp_path):
    """lmbda = 1: the student answers the templated prompt (transformers generate), the kit's loss on its answer."""
    _, s_tok = load_pretrained(str(pair / "student"))
    s_tok.chat_template = CHAT_TEMPLATE
    chat = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "completion": [{"role": "assistant", "content": r["completion"]}]} for r in rows]
    trainer = KitGOLDTrainer(str(pair / "student"), str(pair / "teacher"), processing_class=s_tok,
                             args=config(tmp_path, loss="chunk", lmbda=1.0, max_steps=2,
                                         per_device_train_batch_size=4, gradient_accumulation_steps=1),
                             train_dataset=Dataset.from_list(chat))
    seen = spy_losses(trainer)
    trainer.train()
    assert len(seen) == 2
    history = [x for x in trainer.state.log_history if "loss" in x and "train_loss" not in x]
    assert len(history) == 2 and all("on_policy_loss" in x and math.isfinite(x["loss"]) for x in history)
    prompts = {f"user: {r['prompt']}\nassistant:" for r in rows}
    for _, inputs in seen:
        batch = inputs["_kit"][0]
        for i, text in enumerate(batch.texts):
            head = next(p for p in prompts if text.startswith(p))  # the student's template, then its own answer
            learned = batch.student_answer[i].nonzero().flatten() + 1
            assert all(int(batch.student_offsets[i, j, 1]) > len(head) for j in learned)  # the completion only
            assert text[len(head):] not in {r["completion"] for r in rows}


def test_on_policy_rows_are_rebuilt_from_the_generated_ids(pair, rows, tmp_path):
    """Prompt + completion decoded together, cut at the first eos; only the completion is learned."""
    trainer = KitGOLDTrainer(str(pair / "student"), str(pair / "teacher"), args=config(tmp_path),
                             train_dataset=Dataset.from_list(rows))
    tok = trainer.processing_class
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    # (prompt, generated ids, how many of them GOLD labels: up to the first eos, included)
    made = [(ids("Answer:"), ids(" yes it") + [eos, pad], len(ids(" yes it")) + 1),
            (ids("x = 1 +"), ids(" 2") + [eos] + ids(" junk"), len(ids(" 2")) + 1),
            (ids("Answer:"), [eos] + ids(" junk"), 1)]
    width, cwidth = max(len(p) for p, _, _ in made), max(len(c) for _, c, _ in made)
    rows_ids, labels, prompt_mask = [], [], []
    for p, c, n in made:  # GOLD's layout: prompts left-padded, the completion after the prompt's width
        rows_ids.append([pad] * (width - len(p)) + p + c + [pad] * (cwidth - len(c)))
        labels.append([-100] * width + c[:n] + [-100] * (cwidth - n))
        prompt_mask.append([0] * (width - len(p)) + [1] * len(p))
    inputs = {"prompts": torch.tensor([r[:width] for r in rows_ids]), "input_ids": torch.tensor(rows_ids),
              "prompt_attention_mask": torch.tensor(prompt_mask), "labels": torch.tensor(labels)}
    texts, starts = trainer._generated_texts(inputs)
    assert texts == ["Answer: yes it", "x = 1 + 2", "Answer:"]
    assert starts == [7, 7, 7]
    batch, _ = trainer._kit_batch(texts, starts)
    learned = [tok.decode(batch.student_ids[i][batch.student_answer[i].nonzero().flatten() + 1].tolist())
               for i in range(3)]
    assert learned == [" yes it", " 2", ""]


# --------------------------------------------------------------------------- the command line
def test_the_command_line_trains_and_saves(pair, rows, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "cli"
    assert main(["--model_name_or_path", str(pair / "student"), "--teacher_model_name_or_path", str(pair / "teacher"),
                 "--data", str(data), "--loss", "uld", "--lam", "1.5", "--output_dir", str(out), "--max_steps", "1",
                 "--per_device_train_batch_size", "2", "--max_length", str(MAX_LENGTH), "--max_completion_length",
                 "8", "--lmbda", "0", "--use_cpu", "--report_to", "none", "--save_strategy", "no",
                 "--disable_tqdm", "true"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_the_command_is_registered():
    from uldviz.__main__ import COMMANDS

    assert COMMANDS["trl-train"][0] == "uldviz.scale.trl_bridge"


# --------------------------------------------------------------------------- refusals
class _CharTokenizer(PreTrainedTokenizer):
    """A slow (pure Python) tokenizer: no offsets mapping."""

    def __init__(self, **kwargs):
        self._vocab = {c: i for i, c in enumerate(["</s>"] + [chr(i) for i in range(32, 127)])}
        super().__init__(eos_token="</s>", pad_token="</s>", **kwargs)

    def get_vocab(self):
        return dict(self._vocab)

    @property
    def vocab_size(self):
        return len(self._vocab)

    def _tokenize(self, text):
        return list(text)

    def _convert_token_to_id(self, token):
        return self._vocab.get(token, 0)

    def _convert_id_to_token(self, index):
        return list(self._vocab)[index]


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("changes, match", [
    (dict(loss="gkd"), "loss must be one of ce, uld, kl, hybrid, chunk"),
    (dict(loss="uld", chunk_tau=5.0), "does not use chunk_tau"),
    (dict(uld_use_hybrid_loss=True), "use loss='hybrid' instead"),
    (dict(uld_crossentropy_weight=0.5), "use ce_weight instead"),
    (dict(divergence="kl"), "divergence must be one of"),
])
def test_bad_settings_fail_in_one_line(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match) as err:
        config(tmp_path, **changes)
    _one_line(err)


def test_bad_models_tokenizers_and_data_fail_in_one_line(pair, rows, tmp_path):
    student, teacher, data = str(pair / "student"), str(pair / "teacher"), Dataset.from_list(rows)
    with pytest.raises(ValueError, match="student tokenizer .* is not a fast tokenizer") as err:
        KitGOLDTrainer(student, teacher, args=config(tmp_path), processing_class=_CharTokenizer(), train_dataset=data)
    _one_line(err)
    with pytest.raises(ValueError, match="needs 'prompt' and 'completion'") as err:
        KitGOLDTrainer(student, teacher, args=config(tmp_path), train_dataset=Dataset.from_list([{"text": "abc"}]))
    _one_line(err)
    with pytest.raises(ValueError, match="must share one tokenizer") as err:
        KitGOLDTrainer(student, teacher, args=config(tmp_path, loss="kl"), train_dataset=data)
    _one_line(err)
    with pytest.raises(ValueError, match="max_length 512 is longer than the context") as err:
        KitGOLDTrainer(student, teacher, args=config(tmp_path, max_length=512), train_dataset=data)
    _one_line(err)
    with pytest.raises(TypeError, match="KitGOLDConfig") as err:
        from trl.experimental.gold import GOLDConfig

        KitGOLDTrainer(student, teacher, args=GOLDConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False),
                       train_dataset=data)
    _one_line(err)
