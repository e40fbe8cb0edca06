"""``python -m phonotheca``: the ``phonotheca`` command, quiet on Ctrl-C from its start.

Importing the command line takes a moment; Ctrl-C in that moment would end in a
``KeyboardInterrupt`` traceback printed by the interpreter, since no handler of ours is
running yet. Here the import itself is guarded, and click reports later ones. The demo
runs its steps so: a Ctrl-C that reaches a step as it starts ends it with one line.
"""

from __future__ import annotations

import sys


def run() -> int:
    try:
        from phonotheca.cli import main
    except KeyboardInterrupt:
        print("Aborted!", file=sys.stderr)  # what click says for a later Ctrl-C
        return 130
    main()
    return 0


if __name__ == "__main__":
    sys.exit(run())
