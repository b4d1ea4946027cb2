"""From the classroom to real models: the kit's losses on a distributed engine (Hugging Face ``accelerate``).

Orchestration only, no new maths: the objective, batch, schedule and configs are :mod:`uldviz.train`'s, shared
with the notebooks' loop.

- :mod:`~uldviz.scale.config`: :class:`ScaleConfig`, every knob of a run (and the command line built from it);
- :mod:`~uldviz.scale.data`: examples, their order (a function of seed and step), both tokenizations;
- :mod:`~uldviz.scale.feed`: a DataLoader whose workers tokenize and pair the next steps' micro-batches;
- :mod:`~uldviz.scale.checkpoint`: checkpoints written whole or not at all, and a resume that refuses drift;
- :mod:`~uldviz.scale.loop`: :func:`train` / ``python -m uldviz train`` (DDP/FSDP, bf16, accumulation, resume);
- :mod:`~uldviz.scale.generate`: ``python -m uldviz generate``, the teacher writes answers (sequence-level KD);
- :mod:`~uldviz.scale.cache`: ``python -m uldviz cache-teacher``, the teacher's top-k once, training without it;
- :mod:`~uldviz.scale.arithmetic`: memory and time of a run from parameter counts and measured coefficients;
- :mod:`~uldviz.scale.plan`: ``python -m uldviz train --dry-run``, that arithmetic from the two models' configs;
- :mod:`~uldviz.scale.measure`: the memory coefficients and the feed's timings, measured (docs/scale.md).
- :mod:`~uldviz.scale.trl_bridge`: ``python -m uldviz trl-train``, the same losses inside TRL's GOLD trainer
  (on-policy, chat templates, PEFT, trackers); imported on demand, it needs TRL 1.16.

Needs the ``scale`` extra: ``pip install -e '.[scale]'`` (accelerate, datasets, safetensors, transformers).
"""

from uldviz.scale.cache import cache_teacher
from uldviz.scale.config import ScaleConfig
from uldviz.scale.generate import generate_answers
from uldviz.scale.loop import train

__all__ = ["ScaleConfig", "train", "generate_answers", "cache_teacher"]
