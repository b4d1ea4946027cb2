"""Command line: ``python -m uldviz <command> ...`` (also installed as ``uldviz``).

Each command lives in its own module with a ``main(argv)`` function; this file only dispatches.
The benchmark suite is not part of the package: run ``python benchmarks/bench.py`` from a checkout.
"""

from __future__ import annotations

import importlib
import sys

#: command name -> (module, one-line help)
COMMANDS = {
    "distill": ("uldviz.distill", "run the mini-distillation experiment (notebook 03) from a terminal"),
    "build-teacher": ("uldviz.teacher", "rebuild the shipped tokenizers and teacher checkpoint in data/"),
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
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
