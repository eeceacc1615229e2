"""Read the guides' commands (shell text, or the Modal post's Python list) into comparable form.

The commands are verbatim copies from the published guides in ``metalserve.catalog.guides``; see
``tests/fixtures/seeds/README.md``.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


def seed_argv(name: str) -> list[str]:
    text = (SEEDS / name).read_text()
    if name.endswith(".py-list.txt"):
        source = text.split("=", 1)[1].replace("\\{", "{").replace("\\}", "}")
        return [str(a) for a in ast.literal_eval(source.strip())]
    return shlex.split(text.replace("\\\n", " "))


def options(argv: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs and bare switches, order-free; numbers compared as numbers."""
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("-"):
            value = None
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = _normal(argv[i + 1])
                i += 1
            out[word] = value
        i += 1
    return out


def positionals(argv: list[str]) -> list[str]:
    """Words before the first flag: the program and, for vLLM, ``serve MODEL``."""
    head = []
    for word in argv:
        if word.startswith("-") and word != "-m":
            break
        head.append(word)
    return head


def _normal(value: str) -> str:
    try:
        return repr(float(value))
    except ValueError:
        return value
