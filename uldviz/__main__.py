"""Command line: ``python -m uldviz <command> ...`` (also installed as ``uldviz``).

Each command lives in its own module with a ``main(argv)`` function; this file only dispatches.
The benchmark suite is not part of the package: run ``python benchmarks/bench.py`` from a checkout.
"""

from __future__ import annotations

import importlib
import sys

#: command name -> (module, one-line help)
COMMANDS = {
    "distill": ("uldviz.distill.cli", "train named distillation runs over several seeds (notebook 03), JSON out"),
    "protocol": ("uldviz.distill.cli:protocol_main",
                 "notebooks 03/04's experiment: grids on validation, 5 seeds, two regimes, test scores"),
    "build-teacher": ("uldviz.train.teacher", "rebuild the shipped tokenizers and teacher checkpoint in data/"),
    # real models on 1..N GPUs with accelerate (docs/scale.md; needs the [scale] extra)
    "train": ("uldviz.scale.loop", "distil a causal-LM teacher into a causal-LM student (accelerate launch-able)"),
    "generate": ("uldviz.scale.generate", "the teacher answers a prompt file: data for sequence-level KD"),
    "cache-teacher": ("uldviz.scale.cache", "store the teacher's top-k probabilities once; train without it"),
    "trl-train": ("uldviz.scale.trl_bridge",
                  "the kit's losses inside TRL's GOLD trainer (on-policy, chat templates, PEFT, trackers)"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command's module; print the list of commands on -h or an unknown name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print("usage: python -m uldviz <command> [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<14} {text}")
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module_name, _, func = COMMANDS[argv[0]][0].partition(":")
    module = importlib.import_module(module_name)
    return int(getattr(module, func or "main")(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
