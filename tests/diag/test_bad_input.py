"""Bad input to the diagnostic: logs and reports that are binary, UTF-16, huge, hand-edited or not
files at all. Each gives a result or one line (exit 2) — never a traceback, never a hang — and
``diag show`` neither runs a report's control characters nor repeats a verdict the judge would not
give."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalserve.catalog.busbw import expectation_for
from metalserve.catalog.profiles import PROFILES
from metalserve.cli import main
from metalserve.diag.judge import judge, topology_of
from metalserve.diag.parse import parse_output
from metalserve.diag.report import (
    build_report,
    checked,
    compare,
    comparison_text,
    load_report,
    report_json,
    summary_text,
)
from metalserve.errors import ParseError
from metalserve.types import first_control_char
from tests.bounded import within
from tests.diag.synthetic import fixture

PROFILE = "h100-sxm-8"
LOG = "a100-sxm4-8_pre213_superbench.log"
"""A run at 50 % of the H100 figure: the judge says FAIL (tests/diag/test_cli.py)."""


def _report_text(log: str = LOG, profile: str = PROFILE) -> str:
    parsed = parse_output(fixture(log))
    judged = judge(parsed, topology_of(PROFILES[profile]), expectation_for(profile))
    report = build_report(
        parsed, judged, host="gpu01", profile_id=profile, created_at="2026-11-30T00:00:00Z"
    )
    return report_json(report)


REPORT = json.loads(_report_text())


def _run(*args: str) -> Any:
    with within(20):
        result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1, 2)
    if result.exit_code == 2:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    for line in result.output.splitlines():
        assert first_control_char(line) is None, line
    return result


# --------------------------------------------------------------------------- files


def test_a_fifo_is_refused_by_every_command_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "run.log"
    os.mkfifo(fifo)
    for args in (["diag", "parse", str(fifo)], ["diag", "show", str(fifo)], ["check", str(fifo)]):
        result = _run(*args)
        assert result.exit_code == 2
        assert "found a FIFO (named pipe)" in result.stderr


def test_a_device_is_refused() -> None:
    assert "found a character device" in _run("diag", "show", "/dev/null").stderr
    assert "found a character device" in _run("diag", "parse", "/dev/zero").stderr


def test_a_report_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as handle:
        handle.truncate(65 << 20)  # sparse: nothing is written
    result = _run("diag", "show", str(big))
    assert result.exit_code == 2 and "of at most 64 MiB, found a larger file" in result.stderr


def test_a_binary_report_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "r.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    result = _run("diag", "show", str(binary))
    assert result.exit_code == 2 and "found binary data (a NUL byte at 8)" in result.stderr


def test_a_utf16_report_with_its_bom_is_read(tmp_path: Path) -> None:
    utf16 = tmp_path / "r.json"
    utf16.write_bytes(_report_text().encode("utf-16"))  # Python writes the BOM first
    result = _run("diag", "show", str(utf16))
    assert result.exit_code == 0 and "  verdict             FAIL" in result.output


def test_a_utf16_log_is_read_as_the_same_run(tmp_path: Path) -> None:
    utf8, utf16 = tmp_path / "a.log", tmp_path / "b.log"
    utf8.write_text(fixture(LOG))
    utf16.write_bytes(fixture(LOG).encode("utf-16"))
    first = _run("diag", "parse", str(utf8), "--profile", PROFILE).output.splitlines()
    second = _run("diag", "parse", str(utf16), "--profile", PROFILE).output.splitlines()
    assert second[1:] == first[1:]  # the title line holds the time of the parse
    assert "  verdict             FAIL" in second


def test_a_number_of_5000_digits_is_one_line_in_a_report_and_read_past_in_a_log(
    tmp_path: Path,
) -> None:
    report = tmp_path / "r.json"
    report.write_text(
        _report_text().replace('"schema_version": 1', '"schema_version": ' + "1" * 5000)
    )
    assert "found unreadable JSON" in _run("diag", "show", str(report)).stderr
    log = tmp_path / "a.log"
    log.write_text(fixture(LOG).replace("nThread 1", "nThread " + "1" * 5000))
    assert _run("diag", "parse", str(log), "--profile", PROFILE).exit_code == 0


# --------------------------------------------------------------------------- --stem


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stem=st.text(max_size=12) | st.sampled_from(["../../x", "/etc/x", "..", ".", "a/b", "-x"]))
def test_reports_land_inside_out_whatever_the_stem(tmp_path: Path, stem: str) -> None:
    base = tmp_path / "run"
    base.mkdir(exist_ok=True)
    (base / "a.log").write_text(fixture(LOG))
    before = set(tmp_path.rglob("*"))
    out = base / "out"
    result = _run("diag", "parse", str(base / "a.log"), "--out", str(out), "--stem", stem)
    created = set(tmp_path.rglob("*")) - before
    assert all(p == out or out in p.parents for p in created), created
    if result.exit_code == 0:
        assert {p.name for p in created if p.is_file()} == {
            f"{stem}.json",
            f"{stem}.txt",
            f"{stem}.png",
        }
    else:
        assert "--stem: expected a file name" in result.stderr
    for path in created:
        path.unlink() if path.is_file() else None


# --------------------------------------------------------------------------- diag show


def _write(tmp_path: Path, data: dict[str, Any], name: str = "r.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_show_does_not_repeat_a_verdict_the_judge_would_not_give(tmp_path: Path) -> None:
    forged = json.loads(json.dumps(REPORT))
    assert forged["judgement"]["verdict"] == "FAIL"
    forged["judgement"]["verdict"] = "PASS"
    forged["judgement"]["reasons"] = [{"verdict": "PASS", "code": "bandwidth-ok", "message": "ok"}]
    lines = _run("diag", "show", str(_write(tmp_path, forged))).output.splitlines()
    assert "  verdict             FAIL" in lines
    assert "  report claimed      PASS — not what the judge gives for its results" in lines
    assert any(line.startswith("    FAIL    busbw 235.26 GB/s at 8 GiB is 50 %") for line in lines)


def test_show_of_an_honest_report_claims_nothing_extra(tmp_path: Path) -> None:
    output = _run("diag", "show", str(_write(tmp_path, REPORT))).output
    assert "report claimed" not in output and "  verdict             FAIL" in output


def test_compare_uses_the_judged_verdicts(tmp_path: Path) -> None:
    forged = json.loads(json.dumps(REPORT))
    forged["judgement"]["verdict"] = "PASS"
    before = _write(tmp_path, REPORT, "a.json")
    after = _write(tmp_path, forged, "b.json")
    assert (
        "  verdict             FAIL → FAIL"
        in _run("diag", "compare", str(before), str(after)).output
    )


def test_show_escapes_a_reports_control_characters(tmp_path: Path) -> None:
    forged = json.loads(json.dumps(REPORT))
    forged["host"] = "gpu\x1b]0;pwned\x07"
    forged["judgement"]["reasons"][0]["message"] = "x\r\x1b[2Jcleared"
    output = _run("diag", "show", str(_write(tmp_path, forged))).output
    assert "gpu\\x1b]0;pwned\\x07" in output and "x\\r\\x1b[2Jcleared" in output


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(["FAIL", "PASS", "\x1b[31m", "\n", 10**30, -1, float("nan")]),
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [prefix] + [p for k, v in node.items() for p in _paths(v, (*prefix, k))]
    if isinstance(node, list):
        return [prefix] + [p for i, v in enumerate(node) for p in _paths(v, (*prefix, i))]
    return [prefix]


REPORT_PATHS = [p for p in _paths(REPORT) if p]


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(data))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


@settings(max_examples=150, deadline=None)
@given(
    edits=st.lists(st.tuples(st.sampled_from(REPORT_PATHS), json_leaves), min_size=1, max_size=3)
)
def test_an_edited_report_loads_or_is_one_line_and_shows_without_a_traceback(
    edits: list[tuple[tuple[Any, ...], Any]],
) -> None:
    data: Any = REPORT
    for path, value in edits:
        try:
            data = _set(data, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced a parent of this path
    with within(10):
        try:
            report = load_report(json.dumps(data), name="r.json")
        except ParseError as error:
            assert "\n" not in str(error)
            return
        shown, claimed = checked(report)
        assert shown.verdict.severity >= report.verdict.severity
        summary_text(shown, claimed)
        comparison_text(compare(shown, checked(load_report(json.dumps(REPORT)))[0]))


# --------------------------------------------------------------------------- any file, any command

file_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode()),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
    st.text(max_size=100).map(lambda t: t.encode("utf-16-le")),
    st.sampled_from([b"1" * 5000, b"[" * 100_000, b"{" + b'"a":' * 10 + b"1", b"\xff\xfe", b""]),
    st.builds(
        lambda line, junk: (line + junk).encode(),
        st.sampled_from(fixture(LOG).splitlines() + [_report_text()]),
        st.text(string.printable, max_size=10),
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=file_bytes, other=file_bytes)
def test_diag_commands_take_any_file(tmp_path: Path, content: bytes, other: bytes) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_bytes(content)
    second.write_bytes(other)
    _run("diag", "parse", str(first), "--profile", PROFILE)
    _run("diag", "parse", str(first), "--json", str(second))
    _run("diag", "show", str(first))
    _run("diag", "compare", str(first), str(second))


def test_long_pathological_lines_are_parsed_in_linear_time() -> None:
    fragments = ["NCCL INFO Channel 0/1 : ", "NCCL INFO x nranks ", "NCCL INFO NCCL_X set by "
                 "environment to ", "Test NCCL failure x:1 'a' ", "nThread 1 nGpus 1 "]  # fmt: skip
    with within(10):  # quadratic matching took ~30 s for the first fragment alone
        for fragment in fragments:
            parse_output(fragment * 10_000)


J_REPORT = json.loads(fixture("h100-8_json-v3_azure-chm.json"))
J_PATHS = [p for p in _paths(J_REPORT) if p]


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(st.tuples(st.sampled_from(J_PATHS), json_leaves), min_size=1, max_size=3))
def test_an_edited_nccl_tests_json_parses_or_is_one_line(
    edits: list[tuple[tuple[Any, ...], Any]],
) -> None:
    """nccl-tests -J output with any field of the wrong type (a string rank, a list for the
    arguments, a float size): a run with that field left out, or one ParseError line."""
    data: Any = J_REPORT
    for path, value in edits:
        try:
            data = _set(data, path, value)
        except (KeyError, IndexError, TypeError):
            continue
    with within(10):
        try:
            parsed = parse_output(json.dumps(data))
        except ParseError as error:
            assert "\n" not in str(error)
            return
    judge(parsed, topology_of(PROFILES[PROFILE]), expectation_for(PROFILE))
