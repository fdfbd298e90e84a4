"""What a command returns and how its result is printed: the one leaf module every stage's handler imports.

Usage: from edgemnist.output import Output; return Output(data, text, status)

`edgemnist.cli` stands on top of the stages: it imports them (to register their commands) and
prints what their handlers return; the stages import only this module from the command line's
side, never `cli` itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Output:
    """What a command's handler returns; `main` prints it (the JSON or the text) and exits with `status`."""

    data: Any  # JSON-ready: what --json prints (keys documented in docs/outputs.md)
    text: str  # what a person reads: a table or a summary
    status: int = 0  # exit status: 0 success, 1 a check failed (verify, mcu)


def print_json(obj) -> None:
    """Prints one JSON object on stdout (the --json output of every command)."""
    print(json.dumps(obj, indent=2, sort_keys=True))
