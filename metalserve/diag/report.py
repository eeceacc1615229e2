"""The diagnostic report: one versioned model per host and run, its summary, and run-to-run diffs.

Pure: builds and reads models and text; ``metalserve.io.reports`` writes them to disk.

Example::

    >>> report = build_report(parsed, judgement, host="gpu01", profile_id="h100-sxm-8",
    ...                       created_at="2026-11-23T18:00:00Z")
    >>> print(summary_text(report).splitlines()[1])
      verdict             PASS
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from metalserve.catalog.busbw import OVERRIDE_SOURCE, BusBwExpectation, expectation_for
from metalserve.catalog.profiles import PROFILES
from metalserve.diag.judge import Judgement, Reason, Verdict, human_bytes, judge, topology_of
from metalserve.diag.parse import (
    NcclTestsRun,
    ParsedOutput,
    TransportSummary,
    looks_like_json,
    parse_output,
)
from metalserve.diag.recognise import RecognisedSetup, recognise
from metalserve.errors import ParseError
from metalserve.types import printable

SCHEMA_VERSION: Literal[1] = 1
"""Bump when a field changes meaning or goes away; readers refuse other versions."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiagReport(_Frozen):
    """What one nccl-tests run on one host showed, and the verdict on it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    host: str | None
    profile_id: str | None
    created_at: str
    command: tuple[str, ...] = ()
    run: NcclTestsRun
    transport: TransportSummary
    judgement: Judgement
    setup: RecognisedSetup | None = None
    """The setup recognised from the run's device lines where no profile was named (then
    ``profile_id`` is its preset, if it has one)."""

    @property
    def verdict(self) -> Verdict:
        return self.judgement.verdict

    @property
    def title(self) -> str:
        where = f" on {self.host}" if self.host else ""
        profile = f" (profile {self.profile_id})" if self.profile_id else ""
        return f"nccl-tests {self.run.collective or 'run'}{where}{profile} — {self.created_at}"


def build_report(
    parsed: ParsedOutput,
    judgement: Judgement,
    *,
    host: str | None,
    profile_id: str | None,
    created_at: str,
    command: tuple[str, ...] = (),
    setup: RecognisedSetup | None = None,
) -> DiagReport:
    return DiagReport(
        host=host,
        profile_id=profile_id,
        created_at=created_at,
        command=command,
        run=parsed.run,
        transport=parsed.transport,
        judgement=judgement,
        setup=setup,
    )


def judged_report(
    parsed: ParsedOutput,
    *,
    profile_id: str | None,
    expected_busbw: float | None,
    host: str | None,
    created_at: str,
) -> DiagReport:
    """A parsed run judged against the named profile or, without one, against the setup its device
    lines show (:func:`metalserve.diag.recognise.recognise`): its preset where the catalogue has
    one, else no expected figure (UNKNOWN). ``expected_busbw`` replaces the preset's figure; the
    host defaults to the run's first."""
    setup = None if profile_id else recognise(parsed.run)
    chosen = profile_id or (setup.profile_id if setup is not None else None)
    expectation = expectation_for(chosen, expected_busbw) if chosen else None
    profile = PROFILES.get(chosen) if chosen else None
    return build_report(
        parsed,
        judge(parsed, topology_of(profile) if profile is not None else None, expectation),
        host=host or (parsed.run.hosts[0] if parsed.run.hosts else None),
        profile_id=chosen,
        created_at=created_at,
        setup=setup,
    )


def report_json(report: DiagReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def load_report(text: str, name: str = "report") -> DiagReport:
    """Read a report written by :func:`report_json`; one-line ParseError otherwise."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"{name}: expected a metalserve diag report (JSON), found invalid JSON "
            f"({exc.msg}, line {exc.lineno}) — fix: pass the .json written by diag parse or the role"
        ) from None
    except (ValueError, RecursionError) as exc:  # a number past 4300 digits, nesting too deep
        raise ParseError(
            f"{name}: expected a metalserve diag report (JSON), found unreadable JSON "
            f"({printable(str(exc))[:80]}) — fix: pass the .json written by diag parse or the role"
        ) from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ParseError(
            f"{name}: expected a diag report with schema_version {SCHEMA_VERSION}, found "
            f"{version!r} — fix: regenerate it with 'metalserve diag parse LOG'"
        )
    try:
        return DiagReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = printable(".".join(str(p) for p in first["loc"]))[:120]
        raise ParseError(
            f"{name}: expected a valid diag report, found {where}: {first['msg']} — fix: "
            "regenerate it with 'metalserve diag parse LOG'"
        ) from None


# --------------------------------------------------------------------------- a loaded report


def expectation_of(report: DiagReport) -> BusBwExpectation | None:
    """The figure a loaded report is judged against: the catalogue's for a known profile (or the
    override the report records, which the summary names as its source); for another profile, the
    figure the report records."""
    j = report.judgement
    override = j.expected_busbw if j.expected_source == OVERRIDE_SOURCE else None
    if report.profile_id in PROFILES:
        return expectation_for(report.profile_id, override)
    if j.expected_busbw is None or not j.expected_busbw > 0:
        return None
    return BusBwExpectation(
        profile_id=report.profile_id or "unknown",
        busbw_gbps=j.expected_busbw,
        basis="as recorded in the report",
        source=j.expected_source or "the report",
    )


def checked(report: DiagReport) -> tuple[DiagReport, Verdict | None]:
    """A loaded report as it may be shown: its results judged again (profile from the catalogue,
    figure from :func:`expectation_of`). Where the report claims a milder verdict than the judge
    gives — or than its own reasons — the judge's verdict is shown and the claim returned beside
    it; a report can make itself look worse, never better."""
    profile = PROFILES.get(report.profile_id or "")
    again = judge(
        ParsedOutput(run=report.run, transport=report.transport),
        topology_of(profile) if profile is not None else None,
        expectation_of(report),
    )
    claimed = report.judgement.verdict
    stored = max(
        (claimed, *(r.verdict for r in report.judgement.reasons)), key=lambda v: v.severity
    )
    if again.verdict.severity > stored.severity:
        return report.model_copy(update={"judgement": again}), claimed
    if stored is not claimed:
        judgement = report.judgement.model_copy(update={"verdict": stored})
        return report.model_copy(update={"judgement": judgement}), claimed
    return report, None


def holds_report(text: str) -> bool:
    """Whether a file's text is a saved diag report rather than nccl-tests output, by content:
    nccl-tests text is not JSON; its ``-J`` report is JSON with a ``results`` list and no
    ``schema_version``; any other JSON is taken for a report, whose reader says what is wrong."""
    if not looks_like_json(text):
        return False
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # invalid JSON, a number of 5000 digits, deep nesting
        return True
    return not (isinstance(data, dict) and "results" in data and "schema_version" not in data)


def shown_report(text: str, name: str, created_at: str) -> tuple[DiagReport, Verdict | None]:
    """What ``diag show`` prints for a file: a saved report judged again (:func:`checked`), or
    nccl-tests output (text or ``-J``) judged as ``diag parse`` judges it without a profile."""
    if holds_report(text):
        return checked(load_report(text, name))
    judged = judged_report(
        parse_output(text), profile_id=None, expected_busbw=None, host=None, created_at=created_at
    )
    return judged, None


# --------------------------------------------------------------------------- summary


def _transports_line(transport: TransportSummary) -> str:
    parts = [f"{kind}×{n}" for kind, n in sorted(transport.channels.items())]
    if transport.gpudirect_path:
        parts.append(f"GDRDMA ({transport.gpudirect_path})")
    if transport.nvls_channels:
        parts.append(f"NVLS×{transport.nvls_channels}")
    return ", ".join(parts) if parts else "not logged (run with NCCL_DEBUG=INFO)"


def _row(label: str, value: str) -> str:
    return f"  {label:<19} {value}"


def _unknown_for_setup(report: DiagReport) -> str | None:
    """Why a recognised setup has no expected figure; None where it has one, or none was
    recognised."""
    setup = report.setup
    if setup is None:
        return None
    known = expectation_of(report)
    if known is not None and known.busbw_gbps is not None:
        return None
    return setup.why_no_profile or (known.basis if known is not None else "no figure recorded")


def summary_text(report: DiagReport, claimed: Verdict | None = None) -> str:
    """A short summary a person reads after a run: the verdict first, then why. ``claimed``: the
    verdict a loaded report gave itself where the judge gives another (see :func:`checked`)."""
    run, j = report.run, report.judgement
    lines = [report.title, _row("verdict", j.verdict.value)]
    if claimed is not None:
        lines.append(
            _row("report claimed", f"{claimed.value} — not what the judge gives for its results")
        )
    if report.setup is not None:
        lines.append(_row("setup", f"{report.setup.text} (recognised from the log's device lines)"))
    if run.avg_busbw_text is not None:
        lines.append(
            _row("avg bus bandwidth", f"{run.avg_busbw_text} GB/s (as nccl-tests printed)")
        )
    if (peak := run.peak_busbw) is not None:
        at = next((r.size for r in run.rows if r.best_busbw == peak), None)
        where = f" at {human_bytes(at)}" if at is not None else ""
        lines.append(_row("peak bus bandwidth", f"{peak:g} GB/s{where}"))
    if j.measured_busbw is not None and j.expected_busbw is not None and j.ratio is not None:
        lines.append(
            _row(
                "expected",
                f"{j.expected_busbw:g} GB/s at ≥ 1 GiB; measured {j.measured_busbw:g} "
                f"({j.ratio * 100:.0f} %)",
            )
        )
    elif (unknown := _unknown_for_setup(report)) is not None:
        lines.append(_row("expected", f"unknown for this setup — {unknown}"))
    ranks = len(run.devices) or report.transport.n_ranks
    hosts = len(run.hosts) or report.transport.n_nodes
    versions = ", ".join(
        v
        for v in (
            f"NCCL {run.nccl_version}" if run.nccl_version else "",
            f"nccl-tests {run.tests_version}" if run.tests_version else "",
        )
        if v
    )
    lines.append(
        _row(
            "ranks",
            f"{ranks if ranks is not None else '?'} on {hosts or '?'} host(s)"
            + (f"; {versions}" if versions else ""),
        )
    )
    lines.append(_row("transports", _transports_line(report.transport)))
    lines.append("  reasons")
    lines += [f"    {r.verdict.value:<7} {r.message}" for r in j.reasons]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- compare


class SizeDelta(_Frozen):
    size: int
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None or self.before == 0:
            return None
        return (self.after - self.before) / self.before


class Comparison(_Frozen):
    """Run B against run A (say, after a driver upgrade against before)."""

    before: str
    after: str
    verdict_before: Verdict
    verdict_after: Verdict
    avg_before: str | None
    avg_after: str | None
    sizes: tuple[SizeDelta, ...]
    reasons_gone: tuple[Reason, ...]
    reasons_new: tuple[Reason, ...]
    nccl_before: str | None
    nccl_after: str | None


def _busbw_by_size(run: NcclTestsRun) -> dict[int, float | None]:
    return {r.size: r.best_busbw for r in run.rows}


def compare(a: DiagReport, b: DiagReport) -> Comparison:
    before, after = _busbw_by_size(a.run), _busbw_by_size(b.run)
    sizes = sorted(set(before) | set(after))
    codes_a = {r.code for r in a.judgement.reasons}
    codes_b = {r.code for r in b.judgement.reasons}
    return Comparison(
        before=a.title,
        after=b.title,
        verdict_before=a.verdict,
        verdict_after=b.verdict,
        avg_before=a.run.avg_busbw_text,
        avg_after=b.run.avg_busbw_text,
        sizes=tuple(SizeDelta(size=s, before=before.get(s), after=after.get(s)) for s in sizes),
        reasons_gone=tuple(r for r in a.judgement.reasons if r.code not in codes_b),
        reasons_new=tuple(r for r in b.judgement.reasons if r.code not in codes_a),
        nccl_before=a.run.nccl_version,
        nccl_after=b.run.nccl_version,
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def comparison_text(c: Comparison) -> str:
    lines = [f"A: {c.before}", f"B: {c.after}"]
    lines.append(_row("verdict", f"{c.verdict_before.value} → {c.verdict_after.value}"))
    lines.append(_row("avg bus bandwidth", f"{c.avg_before or '—'} → {c.avg_after or '—'} GB/s"))
    if c.nccl_before != c.nccl_after:
        lines.append(_row("NCCL", f"{c.nccl_before or '?'} → {c.nccl_after or '?'}"))
    lines.append(f"  {'size':>10}  {'A busbw':>9}  {'B busbw':>9}  change")
    for d in c.sizes:
        change = "" if d.change is None else f"{d.change * 100:+.1f} %"
        lines.append(
            f"  {human_bytes(d.size):>10}  {_fmt(d.before):>9}  {_fmt(d.after):>9}  {change}"
        )
    lines += [f"  gone:  {r.verdict.value:<7} {r.message}" for r in c.reasons_gone]
    lines += [f"  new:   {r.verdict.value:<7} {r.message}" for r in c.reasons_new]
    return "\n".join(lines) + "\n"
