"""A live mini-distillation across two tokenizers (notebooks 03 and 04), on the kit's shared training layer:

- :mod:`~uldviz.distill.core`: :class:`DistillConfig` and the notebooks' loop (read it in one sitting); the
  batch, the objective and the schedule it uses are :mod:`uldviz.train`'s, shared with the scale-out loop;
- :mod:`~uldviz.distill.data`: the teacher, the tokenizers, the train/validation/test splits, teacher-written text;
- :mod:`~uldviz.distill.experiment` and :mod:`~uldviz.distill.protocol`: named runs, seeds, worker
  processes, and the evaluation protocol; :mod:`~uldviz.distill.cli`: the command line.
"""

from uldviz.distill.core import LOSSES, DistillConfig, RunResult, StopFlag, evaluate, make_objective, train
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

__all__ = [
    "LOSSES", "DistillConfig", "RunResult", "StopFlag", "evaluate", "make_objective", "train", "Setup",
    "build_student", "generate", "prepare", "sample_windows", "student_subset", "teacher_generated_text",
    "DEFAULT_RUNS", "RUN_LABELS", "RUNS", "default_config", "fast_config", "parse_run", "run_config",
    "run_experiment", "run_label", "run_parallel", "summarize",
]
