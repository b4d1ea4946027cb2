"""A live mini-distillation across two tokenizers (notebooks 03 and 04), in four layers:

- :mod:`~uldviz.distill.core`: the training core — config, batch, one step's objective, one run's loop
  (read it in one sitting);
- :mod:`~uldviz.train.objectives`: the distillation terms (ULD, KL, hybrid, chunk likelihood) and the
  shuffled-teacher control, passed to the loop as a parameter;
- :mod:`~uldviz.distill.data`: the teacher, the tokenizers, the train/validation/test splits, teacher-written text;
- :mod:`~uldviz.distill.experiment` and :mod:`~uldviz.distill.protocol`: named runs, seeds, worker
  processes, and the evaluation protocol; :mod:`~uldviz.distill.cli`: the command line.
"""

from uldviz.distill.core import (
    LOSSES,
    Batch,
    DistillConfig,
    RunResult,
    StopFlag,
    encode_texts,
    evaluate,
    label_mask,
    make_batch,
    step_loss,
    train,
)
from uldviz.distill.data import (
    Setup,
    build_student,
    generate,
    prepare,
    sample_windows,
    student_subset,
    teacher_generated_text,
)
from uldviz.distill.experiment import (
    DEFAULT_RUNS,
    RUN_LABELS,
    RUNS,
    default_config,
    fast_config,
    parse_run,
    run_config,
    run_experiment,
    run_label,
    run_parallel,
    summarize,
)
from uldviz.train.objectives import make_objective, pair_positions, shuffle_pairs

__all__ = [
    "LOSSES", "Batch", "DistillConfig", "RunResult", "StopFlag", "encode_texts", "evaluate", "label_mask",
    "make_batch", "step_loss", "train", "Setup", "build_student", "generate", "prepare", "sample_windows",
    "student_subset", "teacher_generated_text", "DEFAULT_RUNS", "RUN_LABELS", "RUNS", "default_config",
    "fast_config", "parse_run", "run_config", "run_experiment", "run_label", "run_parallel", "summarize",
    "make_objective", "pair_positions", "shuffle_pairs",
]
