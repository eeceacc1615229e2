"""Edge: score a plan's service units with ``systemd-analyze security``.

``systemd-analyze security --offline=yes PATH…`` scores unit files that are not installed on this
machine (systemd 252 and later): the plan's units are rendered into a temporary directory and
scored there in one call. Timers have no process to sandbox; only ``.service`` units are scored.

Example::

    for score in score_plan(plan): print(score.unit, score.exposure, score.verdict)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from metalserve.errors import MetalserveError, ParseError
from metalserve.hardware import Frozen
from metalserve.io.templating import render
from metalserve.plan import HostPlan

SYSTEMD_ANALYZE = "systemd-analyze"
_OVERALL = re.compile(
    r"Overall exposure level for (?P<unit>\S+): (?P<exposure>\d+(?:\.\d+)?) (?P<verdict>[A-Z]+)"
)


class UnitScore(Frozen):
    unit: str
    exposure: float
    verdict: str = Field(description="OK, MEDIUM, EXPOSED or UNSAFE, as systemd-analyze words it")


class NoAnalyzer(MetalserveError):
    """``systemd-analyze`` is not on this machine's PATH."""


def analyzer() -> str:
    found = shutil.which(SYSTEMD_ANALYZE)
    if found is None:
        raise NoAnalyzer(
            f"{SYSTEMD_ANALYZE} not found — fix: install systemd 252 or newer (Debian: "
            "apt-get install systemd) to score the units"
        )
    return found


def parse_scores(output: str) -> list[UnitScore]:
    """Every "Overall exposure level for UNIT: 1.7 OK" line of ``systemd-analyze security``."""
    return [
        UnitScore(unit=m["unit"], exposure=float(m["exposure"]), verdict=m["verdict"])
        for m in _OVERALL.finditer(output)
    ]


def _security(units: Mapping[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    exe = analyzer()
    with tempfile.TemporaryDirectory(prefix="metalserve-units-") as tmp:
        paths = []
        for name, content in units.items():
            path = Path(tmp) / name
            path.write_text(content)
            paths.append(str(path))
        return subprocess.run(
            [exe, "security", "--offline=yes", "--no-pager", *options, *paths],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def score_units(units: Mapping[str, str]) -> list[UnitScore]:
    """Score unit files given as ``{file name: content}`` (names ending in ``.service``)."""
    result = _security(units)
    scores = parse_scores(result.stdout + result.stderr)
    if result.returncode != 0 or len(scores) != len(units):
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ParseError(
            f"{SYSTEMD_ANALYZE} security: expected a score for each of {', '.join(units)}, "
            f"got {len(scores)} (exit {result.returncode}: {last})"
        )
    return scores


def unmet_checks(name: str, content: str) -> frozenset[str]:
    """The checks one unit fails, named as systemd-analyze names them (``ProtectClock=``,
    ``RestrictNamespaces=~user``, ``CapabilityBoundingSet=~CAP_SYS_TIME``)."""
    result = _security({name: content}, "--json=short")
    try:
        checks = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ParseError(
            f"{SYSTEMD_ANALYZE} security --json=short: no JSON for {name} (exit "
            f"{result.returncode})"
        ) from None
    return frozenset(c["name"] for c in checks if c.get("set") is False)


def service_units(plan: HostPlan) -> dict[str, str]:
    """The plan's rendered ``.service`` units, by file name."""
    return {Path(f.path).name: f.content for f in render(plan) if f.path.endswith(".service")}


def score_plan(plan: HostPlan) -> list[UnitScore]:
    return score_units(service_units(plan))
