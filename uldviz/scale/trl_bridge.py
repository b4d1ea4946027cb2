r"""The kit's cross-tokenizer losses inside TRL's trainer: on-policy distillation, chat templates, PEFT, trackers.

:class:`KitGOLDTrainer` is TRL's ``GOLDTrainer`` (``trl.experimental.gold``, TRL pinned at 1.16 in the ``scale``
extra) with one change: the loss is the kit's :class:`~uldviz.train.objectives.Objective` (ULD with character-offset
pairs, the hybrid on surface strings, chunk likelihood, X-Token; any name of :data:`~uldviz.train.objectives.TERMS`)
instead of GOLD's ``ULDLoss``. :class:`KitGOLDConfig` is ``GOLDConfig`` plus the kit's loss fields
(:class:`~uldviz.train.config.LossConfig`), so one config object carries everything, on the command line too.

**Why GOLD, and why text.** Of TRL 1.16's trainers only GOLD accepts a teacher with another tokenizer: ``GKDTrainer``
and ``DistillationTrainer`` refuse two vocabulary sizes. GOLD already carries each example's prompt and completion
*as text* through its whole pipeline (``original_prompt_text`` / ``original_completion_text``: the chat template
applied, off-policy rows and on-policy generations alike), and text is what the kit aligns. So the bridge reads
that text, tokenizes it with both tokenizers the kit's way (:func:`~uldviz.train.batch.encode_batch`: ``[eos] +
tokens``, character offsets, the answer mask from the prompt's length) and calls the same ``Objective`` as
``python -m uldviz train``: the loss on a batch is the kit's, by construction, and the test suite checks it to 1e-6.
GOLD's own byte offsets are switched off (``use_extended_uld=False``), which lifts its refusal of non-ByteLevel
students; TRL's tokenization of the rows is used only to generate (on-policy), never for the loss.

Per optimizer step the bridge pairs every micro-batch of the step first (GOLD buffers them all, generations
included), adds the CE and distillation counts over the micro-batches and the processes, and divides each
micro-batch's sums by those global counts, as the kit's loop does: the loss of N processes × k micro-batches is
the loss of one big batch, and the logged ``loss``, ``ce`` and ``distill`` are that global step's values.

On-policy rows (GOLD's ``lmbda``, ``num_generations``, generation with ``transformers`` or vLLM) are rebuilt
from the generated ids: the text is the decoding of prompt + completion together (a completion decoded alone
can lose its leading space), cut at the first end-of-sequence token, and only the completion is learned.

Launch: ``python -m uldviz trl-train --model_name_or_path STUDENT --teacher_model_name_or_path TEACHER --data
FILE.jsonl --loss hybrid --lmbda 0.5 --output_dir runs/trl`` (every ``GOLDConfig`` flag works; ``--use_peft`` and
the LoRA flags come from TRL's ``ModelConfig``), or ``accelerate launch --num_processes 8 -m uldviz trl-train ...``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields

import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # GOLD lives in trl.experimental; the pin fixes its API

import trl  # noqa: E402
from trl.experimental.gold import GOLDConfig, GOLDTrainer  # noqa: E402

from uldviz.maths.losses import PAPER_LAMBDA  # noqa: E402
from uldviz.train.batch import encode_batch  # noqa: E402
from uldviz.train.config import LossConfig  # noqa: E402
from uldviz.train.objectives import Objective  # noqa: E402

__all__ = ["TRL_SERIES", "KitGOLDConfig", "KitGOLDTrainer", "BridgeArguments", "load_prompt_data", "main"]

#: The TRL minor series the bridge is written against (GOLD is experimental: its internals move between minors).
TRL_SERIES = "1.16"

#: GOLD's own loss settings, which the bridge does not read, and the kit's field that does the same job.
_GOLD_LOSS_FIELDS = {
    "uld_use_hybrid_loss": "loss='hybrid'",
    "uld_hybrid_matched_weight": "hybrid_weight",
    "uld_hybrid_unmatched_weight": "hybrid_weight",
    "uld_crossentropy_weight": "ce_weight",
    "uld_distillation_weight": "lam",
    "uld_student_temperature": "student_temperature",
    "uld_teacher_temperature": "teacher_temperature",
    "uld_token_merge_strategy": "the kit's merge (uldviz.maths.identity)",
    "uld_skip_student_eos": "the answer mask (the prompt/completion split)",
    "uld_skip_teacher_eos": "the answer mask (the prompt/completion split)",
    "beta": "divergence='jsd' (β = 0.5)",
    "seq_kd": "python -m uldviz generate (teacher-written completions as data)",
}


def _check_trl_version() -> None:
    if not trl.__version__.startswith(TRL_SERIES + "."):
        raise ImportError(f"uldviz.scale.trl_bridge is written against TRL {TRL_SERIES}.x (GOLDTrainer internals); "
                          f"found TRL {trl.__version__}: pip install 'trl=={TRL_SERIES}.*'")


_check_trl_version()


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class KitGOLDConfig(GOLDConfig):
    """``GOLDConfig`` (every TRL training, generation and logging option) plus the kit's loss, read by the bridge.

    ``temperature``, ``top_p`` and ``top_k`` are GOLD's sampling settings for on-policy generation; the loss's own
    temperatures are ``student_temperature`` / ``teacher_temperature`` and ULD's top-k is ``uld_top_k``.
    """

    loss: str = field(default="uld", metadata=_help(
        "the kit's distillation term D (uldviz.train.objectives.TERMS): uld, hybrid, chunk, xtoken-pkl, xtoken-hkl, "
        "kl (one tokenizer), ce (no D)"))
    lam: float = field(default=PAPER_LAMBDA, metadata=_help("weight λ of D (the ULD paper's 1.5 by default)"))
    ce_weight: float = field(default=1.0, metadata=_help("weight of the student's cross-entropy on the completion"))
    label_smoothing: float = field(default=0.0, metadata=_help("label smoothing α of the CE term"))
    align: str = field(default="offset", metadata=_help(
        "uld/kl position pairing: 'offset' (character offsets) or 'positional' (the paper's)"))
    shuffle_teacher: bool = field(default=False, metadata=_help(
        "control: the teacher's rows permuted among the batch's pairs (no context link)"))
    student_temperature: float = field(default=1.0, metadata=_help("uld: the student softmax's temperature"))
    teacher_temperature: float = field(default=1.0, metadata=_help("uld/kl: the teacher softmax's temperature"))
    uld_top_k: int = field(default=0, metadata=_help("uld on the k largest probabilities + tail mass (0: full ULD)"))
    hybrid_weight: float | None = field(default=None, metadata=_help(
        "hybrid: weight of the shared-string part (None: GOLD's |shared| / |V_teacher|)"))
    divergence: str = field(default="gkl", metadata=_help(
        "hybrid: divergence on shared strings, 'gkl' (generalised KL) or 'jsd' (GOLD's, β = 0.5)"))
    chunk_tau: float = field(default=100.0, metadata=_help("chunk: temperature τ of ALM's binarised divergence"))

    def __post_init__(self):
        if self.bf16 is None and not torch.cuda.is_available():
            self.bf16 = False  # TRL defaults to bf16, which a CPU-only machine refuses
        defaults = {f.name: f.default for f in fields(GOLDConfig)}
        for name, instead in _GOLD_LOSS_FIELDS.items():
            if getattr(self, name) != defaults[name]:
                raise ValueError(f"{name} is a setting of GOLD's own loss, which the uldviz bridge replaces; "
                                 f"use {instead} instead")
        self.use_uld_loss = True  # GOLD keeps the texts and loads the teacher's tokenizer
        self.use_extended_uld = False  # GOLD's byte offsets (ByteLevel students only) are not used
        super().__post_init__()
        self.loss_config()  # an unknown loss or an option the loss would ignore fails here, in one line

    def loss_config(self) -> LossConfig:
        """The kit's :class:`~uldviz.train.config.LossConfig` these fields describe (validated)."""
        return LossConfig(loss=self.loss, align=self.align, lam=self.lam, ce_weight=self.ce_weight,
                          label_smoothing=self.label_smoothing, shuffle_teacher=self.shuffle_teacher,
                          student_temperature=self.student_temperature, teacher_temperature=self.teacher_temperature,
                          top_k=self.uld_top_k, hybrid_weight=self.hybrid_weight, divergence=self.divergence,
                          chunk_tau=self.chunk_tau)


def _check_tokenizer(tok, role: str, name: str) -> None:
    """The kit aligns by character offsets (a fast tokenizer) and starts every row with eos."""
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"the {role} tokenizer ({name}) is not a fast tokenizer: the kit aligns the two tokenizations "
                         "by character offsets, which need one (AutoTokenizer.from_pretrained(..., use_fast=True))")
    if tok.eos_token_id is None:
        raise ValueError(f"the {role} tokenizer ({name}) has no eos token: every row of the kit starts with one")


def _check_dataset(dataset, which: str) -> None:
    """Prompt/completion or conversational rows: what GOLD generates from and the kit learns the completion of."""
    if dataset is None:
        return
    for one in dataset.values() if isinstance(dataset, dict) else [dataset]:
        row = next(iter(one))
        if "prompt" in row or "messages" in row:
            continue
        raise ValueError(f"the {which} dataset has columns {sorted(row)}: the TRL bridge needs 'prompt' and "
                         "'completion' (text or messages) or 'messages'; for plain text use python -m uldviz train")


def _name_of(model) -> str:
    return model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or type(model).__name__


class KitGOLDTrainer(GOLDTrainer):
    """TRL's GOLD trainer whose loss is the kit's :class:`~uldviz.train.objectives.Objective` on the rows' text.

    Arguments are ``GOLDTrainer``'s with ``args`` a :class:`KitGOLDConfig`; ``processing_class`` (the student's
    tokenizer) is loaded from ``model`` when not given. The teacher's tokenizer is GOLD's
    (``args.teacher_tokenizer_name_or_path``, else the teacher's own).
    """

    loss_is_scaled_for_ga = True  # each micro-batch is divided by the step's global counts (see compute_loss)

    def __init__(self, model, teacher_model, args: KitGOLDConfig, train_dataset=None, eval_dataset=None,
                 processing_class=None, callbacks=None, optimizers=(None, None), peft_config=None, data_collator=None):
        from transformers import ProcessorMixin

        if not isinstance(args, KitGOLDConfig):
            raise TypeError(f"args must be a uldviz.scale.trl_bridge.KitGOLDConfig (GOLDConfig plus the kit's loss), "
                            f"got {type(args).__name__}")
        if teacher_model is None:
            raise ValueError("teacher_model is required: a hub name, a save_pretrained folder or a loaded causal LM")
        if processing_class is None:
            from uldviz.io.tokenizers import load_tokenizer

            processing_class = load_tokenizer(_name_of(model))
        if isinstance(processing_class, ProcessorMixin):
            raise ValueError("the TRL bridge distils text models; vision-language processors are not supported")
        _check_tokenizer(processing_class, "student", _name_of(model))
        if processing_class.pad_token is None:
            processing_class.pad_token = processing_class.eos_token
        _check_dataset(train_dataset, "training")
        _check_dataset(eval_dataset, "evaluation")
        super().__init__(model, teacher_model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, callbacks=callbacks,
                         optimizers=optimizers, peft_config=peft_config)
        _check_tokenizer(self.teacher_tokenizer, "teacher", args.teacher_tokenizer_name_or_path)
        self.objective = self._make_objective(args.loss_config())
        eos = self.generation_config.eos_token_id
        self._stop_ids = {self._tokenizer.eos_token_id, *(eos if isinstance(eos, (list, tuple)) else
                                                           [eos] if eos is not None else [])}
        self._kit_means = torch.zeros(2, device=self.accelerator.device)  # ce, distill: global means, summed
        self._kit_steps = 0  # optimizer steps since the last log

    # ------------------------------------------------------------------ the objective
    def _make_objective(self, loss_cfg: LossConfig) -> Objective:
        """The kit's objective bound to both tokenizers and the logit columns that are tokens; refuses what it can't."""
        from uldviz.scale.loading import check_context, output_vocab, same_tokenizer

        student = self.accelerator.unwrap_model(self.model)
        teacher = self.accelerator.unwrap_model(self.teacher_model)
        s_tok, t_tok = self._tokenizer, self.teacher_tokenizer
        objective = Objective(loss_cfg, s_tok, t_tok, student_vocab=output_vocab(student, s_tok),
                              teacher_vocab=output_vocab(teacher, t_tok), seed=self.args.seed)
        if objective.term.same_tokenizer and not same_tokenizer(s_tok, t_tok):
            raise ValueError(f"loss {loss_cfg.loss!r} compares token i with token i: the student and the teacher must "
                             "share one tokenizer; with different tokenizers use loss 'uld', 'hybrid' or 'chunk'")
        if self.args.max_length is not None:
            check_context(student, "the student", self.args.max_length, "max_length")
            check_context(teacher, "the teacher", self.args.max_length, "max_length")
        return objective

    def set_loss(self, loss_cfg: LossConfig) -> None:
        """Train (or score) with another of the kit's losses from now on (the trainer, models and data stay)."""
        self.objective = self._make_objective(loss_cfg)

    def kit_batch(self, prompts: list[str], completions: list[str]):
        """(the kit's :class:`~uldviz.train.batch.TextBatch` of prompt + completion, its pairs), on the CPU."""
        texts = [p + c for p, c in zip(prompts, completions)]
        return self._kit_batch(texts, [len(p) for p in prompts])

    def _kit_batch(self, texts, prompt_chars):
        n = self.args.max_length
        batch = encode_batch(texts, self._tokenizer, self.teacher_tokenizer, student_len=n, teacher_len=n,
                             prompt_chars=prompt_chars)
        return batch, self.objective.pair(batch)

    def _generated_texts(self, inputs) -> tuple[list[str], list[int]]:
        """(prompt + completion texts, prompt lengths in characters) of an on-policy slice, from its ids."""
        width = inputs["prompts"].shape[1]
        prompts, prompt_mask = inputs["prompts"].cpu(), inputs["prompt_attention_mask"].cpu().bool()
        ids, keep = inputs["input_ids"][:, width:].cpu(), inputs["labels"][:, width:].cpu() != -100
        texts, starts = [], []
        for r in range(prompts.shape[0]):
            prompt = prompts[r][prompt_mask[r]].tolist()
            completion = ids[r][keep[r]].tolist()
            stop = next((i for i, t in enumerate(completion) if t in self._stop_ids), len(completion))
            head = self._decode(prompt)
            text = self._decode(prompt + completion[:stop])
            n = 0
            while n < min(len(head), len(text)) and head[n] == text[n]:
                n += 1
            texts.append(text)
            starts.append(n)
        return texts, starts

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _slice_texts(self, inputs, on_policy: bool) -> tuple[list[str], list[int]]:
        if on_policy:
            return self._generated_texts(inputs)
        prompts, completions = inputs["original_prompt_text"], inputs["original_completion_text"]
        return [p + c for p, c in zip(prompts, completions)], [len(p) for p in prompts]

    # ------------------------------------------------------------------ GOLD's hooks
    def _fill_buffer(self, generation_batch, buffer_steps: int):
        """GOLD's step buffer (generations included), then the kit's batch, pairs and the step's global counts."""
        super()._fill_buffer(generation_batch, buffer_steps)
        kit, counts = [], torch.zeros(2, dtype=torch.long)
        for i, inputs in enumerate(self._buffered_inputs):
            batch, pairs = self._kit_batch(*self._slice_texts(inputs, bool(self._buffered_on_policy[i])))
            kit.append((batch, pairs))
            counts += torch.tensor(self.objective.counts(batch, pairs))
        n_ce, n_d = self.accelerator.reduce(counts.to(self.accelerator.device), reduction="sum").tolist()
        for inputs, (batch, pairs) in zip(self._buffered_inputs, kit):
            inputs["_kit"] = (batch, pairs, n_ce, n_d)
        self._kit_steps += 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        r""":math:`w_{CE}\,\Sigma\mathrm{CE}/N_{CE} + \lambda\,\Sigma D/N_D` with the step's global counts (training)
        or this batch's (evaluation); times the number of processes in training, which DDP averages back."""
        if "_kit" in inputs:
            batch, pairs, n_ce, n_d = inputs["_kit"]
        else:  # evaluation: GOLD scores the dataset's completions, batch by batch
            batch, pairs = self._kit_batch(*self._slice_texts(inputs, False))
            n_ce, n_d = self.objective.counts(batch, pairs)
        device = self.accelerator.device
        batch = batch.to(device)
        pairs = pairs.to(device) if pairs is not None else None
        self.teacher_model.eval()
        sums = self.objective.sums(model, self.teacher_model, batch, pairs)
        loss = self.objective.loss(sums, n_ce, n_d)
        if model.training:
            part = torch.stack([sums.ce.detach() / max(n_ce, 1), sums.distill.detach() / max(n_d, 1)])
            self._kit_means += part.float()
            loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict, start_time: float | None = None) -> None:
        """GOLD's logs plus the kit's ``ce`` and ``distill`` (global means per step, averaged since the last log)."""
        if self.model.training and self._kit_steps:
            ce, distill = (self.accelerator.reduce(self._kit_means.clone(), reduction="sum") / self._kit_steps).tolist()
            logs["ce"], logs["distill"] = ce, distill
            self._kit_means.zero_()
            self._kit_steps = 0
        super().log(logs, start_time)


# --------------------------------------------------------------------------- command line
@dataclass
class BridgeArguments:
    """The data of ``python -m uldviz trl-train`` (the models are TRL's ``--model_name_or_path`` and
    ``--teacher_model_name_or_path``)."""

    data: list[str] = field(default_factory=list, metadata=_help(
        "JSON-lines files of {prompt, completion} (e.g. `python -m uldviz generate` output) or {messages}"))
    dataset_name: str = field(default="", metadata=_help("a Hugging Face dataset instead of --data (needs network)"))
    dataset_config: str = field(default="", metadata=_help("its configuration"))
    dataset_train_split: str = field(default="train", metadata=_help("its training split"))
    dataset_test_split: str = field(default="", metadata=_help("its evaluation split (none: no evaluation)"))


def load_prompt_data(script: BridgeArguments):
    """(training dataset, evaluation dataset or None) from ``--data`` files or ``--dataset-name``."""
    from datasets import load_dataset

    if bool(script.data) == bool(script.dataset_name):
        raise ValueError("give the training data as --data FILE.jsonl ... or as --dataset_name NAME (one of them)")
    if script.data:
        return load_dataset("json", data_files=list(script.data), split="train"), None
    ds = load_dataset(script.dataset_name, script.dataset_config or None)
    return ds[script.dataset_train_split], (ds[script.dataset_test_split] if script.dataset_test_split else None)


def main(argv: list[str] | None = None) -> int:
    """``python -m uldviz trl-train``: TRL's flags (``GOLDConfig``, ``ModelConfig``) plus the kit's loss and data."""
    from trl import ModelConfig, TrlParser, get_peft_config

    parser = TrlParser((BridgeArguments, KitGOLDConfig, ModelConfig), prog="python -m uldviz trl-train")
    script, args, model_args = parser.parse_args_and_config(list(sys.argv[1:] if argv is None else argv))
    if not model_args.model_name_or_path or not args.teacher_model_name_or_path:
        raise SystemExit("python -m uldviz trl-train: give --model_name_or_path STUDENT and "
                         "--teacher_model_name_or_path TEACHER (hub names or save_pretrained folders)")
    train_set, eval_set = load_prompt_data(script)
    trainer = KitGOLDTrainer(model_args.model_name_or_path, args.teacher_model_name_or_path, args=args,
                             train_dataset=train_set, eval_dataset=eval_set, peft_config=get_peft_config(model_args))
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    if args.push_to_hub:
        trainer.push_to_hub()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
