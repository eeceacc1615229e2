"""Preflight reports on the control host: one JSON file per host, written whole, read back by
``metalserve preflight show``."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from metalserve.errors import MetalserveError
from metalserve.preflight import HostReport


def write_host_report(report: HostReport, folder: Path) -> Path:
    """``<folder>/<host>.json``, replaced whole, so a reader never sees half of it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report.host}.json"
    part = path.with_name(path.name + ".part")
    part.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    part.replace(path)
    return path


def read_host_report(path: Path) -> HostReport:
    """One host's report; anything else is one line naming the file and the fix."""
    fix = "fix: pass a <host>.json written by deploy/preflight.py"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MetalserveError(
            f"{path}: expected a readable preflight report, found {exc.strerror or exc} — {fix}"
        ) from None
    try:
        return HostReport.model_validate_json(text)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "the file"
        raise MetalserveError(
            f"{path}: expected a preflight report, found {where}: {exc.errors()[0]['msg']} — {fix}"
        ) from None
