"""The host's Python and CPU architecture: which engine lock it can install.

Example (in a deploy)::

    from roles.engine_venv.facts import PythonTarget
    host.get_fact(PythonTarget)   # PythonTargetFact(python='3.11', arch='x86_64')
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pyinfra.api import FactBase

from metalserve.errors import ParseError

NO_PYTHON = "no-python3"
_LINE = re.compile(r"^(?P<python>3\.\d+) (?P<arch>[A-Za-z0-9_]+)$")


class PythonTargetFact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str
    arch: str


class PythonTarget(FactBase[PythonTargetFact | None]):
    """``python3``'s major.minor and ``platform.machine()`` (x86_64, aarch64), or None where the
    host has no python3 yet."""

    def command(self) -> str:
        code = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine())"
        return f'command -v python3 >/dev/null && python3 -c "{code}" || echo {NO_PYTHON}'

    def process(self, output: list[str]) -> PythonTargetFact | None:
        return parse_python_target(output)


def parse_python_target(output: list[str]) -> PythonTargetFact | None:
    lines = [line.strip() for line in output if line.strip()]
    if lines == [NO_PYTHON]:
        return None
    found = _LINE.match(lines[-1]) if lines else None
    if found is None:
        raise ParseError(
            f"python3 target: expected '<major.minor> <machine>', found {' | '.join(lines)[:120]!r}"
        )
    return PythonTargetFact(python=found["python"], arch=found["arch"])
