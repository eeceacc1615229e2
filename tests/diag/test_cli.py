"""`metalserve diag parse/show/compare` as an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from metalserve.catalog.busbw import EXPECTED_ALLREDUCE_BUSBW
from metalserve.cli import diag as diag_cli
from metalserve.cli.diag import diag_group
from tests.diag import synthetic
from tests.diag.synthetic import FIXTURES


def _parse(tmp_path: Path, log: Path, *extra: str) -> Path:
    result = CliRunner().invoke(
        diag_group, ["parse", str(log), "--out", str(tmp_path), "--host", "gpu01", *extra]
    )
    assert result.exit_code == 0, result.output
    return tmp_path / f"{log.stem}.json"


def test_show_prints_the_average_exactly_as_nccl_tests_did(tmp_path: Path) -> None:
    log = FIXTURES / "a100-sxm4-8_pre213_superbench.log"
    report = _parse(tmp_path, log, "--profile", "h100-sxm-8")
    printed = next(
        line.split(":")[1].strip()
        for line in log.read_text().splitlines()
        if "Avg bus bandwidth" in line
    )
    result = CliRunner().invoke(diag_group, ["show", str(report)])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert f"  avg bus bandwidth   {printed} GB/s (as nccl-tests printed)" in lines
    assert "  verdict             FAIL" in lines
    assert "  peak bus bandwidth  235.26 GB/s at 8 GiB" in lines
    assert any(line.startswith("    FAIL    busbw 235.26 GB/s at 8 GiB is 50 %") for line in lines)


def test_parse_writes_json_summary_and_png(tmp_path: Path) -> None:
    report = _parse(tmp_path, FIXTURES / "h100-8_json-v3_azure-chm.json", "--profile", "h100-sxm-8")
    data = json.loads(report.read_text())
    assert data["schema_version"] == 1 and data["judgement"]["verdict"] == "PASS"
    assert data["run"]["avg_busbw_text"] == "480.294297"
    png = report.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert report.with_suffix(".txt").read_text().splitlines()[1] == "  verdict             PASS"


def test_compare_shows_the_change_per_size(tmp_path: Path) -> None:
    before_log = tmp_path / "before.log"
    after_log = tmp_path / "after.log"
    before_log.write_text(synthetic.healthy_ib(470.0))
    after_log.write_text(synthetic.socket_fallback())
    before = _parse(tmp_path, before_log, "--profile", "h200-sxm-8x2-ib")
    after = _parse(tmp_path, after_log, "--profile", "h200-sxm-8x2-ib")
    result = CliRunner().invoke(diag_group, ["compare", str(before), str(after)])
    assert result.exit_code == 0, result.output
    assert "  verdict             PASS → FAIL" in result.output
    assert "       1 GiB        470        9.1  -98.1 %" in result.output
    assert "  avg bus bandwidth   470 → 9.1 GB/s" in result.output


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(diag_group, ["show", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2
    assert len(missing.output.strip().splitlines()) == 1
    assert "expected a readable diag report" in missing.output
    not_report = tmp_path / "x.json"
    not_report.write_text('{"schema_version": 7}')
    wrong = runner.invoke(diag_group, ["show", str(not_report)])
    assert wrong.exit_code == 2 and "schema_version 1, found 7" in wrong.output
    profile = runner.invoke(
        diag_group, ["parse", str(FIXTURES / "gb10-2_v2.20_dgx-spark-pr103.log"), "--profile", "x"]
    )
    assert profile.exit_code == 2 and profile.output.startswith("error: metalserve.profile:")
    assert "Traceback" not in profile.output


def test_show_says_which_gpudirect_rdma_path_nccl_used(tmp_path: Path) -> None:
    # NCCL's own line (NVIDIA/nccl-tests#245), printed where the GPU offers DMA-BUF
    dmabuf = "gpu01:4021:4090 [0] NCCL INFO DMA-BUF is available on GPU device 0\n"
    log = tmp_path / "ib_dmabuf.log"
    log.write_text(synthetic.run_text(synthetic.sizes_at(470.0), log=dmabuf + synthetic.IB_LOG))
    report = _parse(tmp_path, log, "--profile", "h200-sxm-8x2-ib")
    shown = CliRunner().invoke(diag_group, ["show", str(report)]).output.splitlines()
    transports = next(line for line in shown if line.startswith("  transports"))
    assert "GDRDMA (DMA-BUF)" in transports


# --------------------------------------------------------------------------- raw logs, no profile

H200_LOG = FIXTURES / "h200-8_single-16g_azurehpc-nhc142.log"
RECOGNISED = "(recognised from the log's device lines)"


def _lines(*args: str) -> list[str]:
    result = CliRunner().invoke(diag_group, list(args))
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def _row(lines: list[str], label: str) -> str:
    return next(line for line in lines if line.startswith(f"  {label:<19} ")).split(None, 1)[1]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """One report time for every command, so two summaries can be compared whole."""
    monkeypatch.setattr(diag_cli, "_now", lambda: "2026-12-01T00:00:00Z")


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize(
    ("name", "setup"),
    [
        ("h200-8_single-16g_azurehpc-nhc142.log", True),  # recognised, judged
        ("h100-8_json-v3_azure-chm.json", True),  # nccl-tests -J output, recognised, judged
        ("gb10-2_v2.20_dgx-spark-pr103.log", True),  # two nodes: recognised, no figure
        ("a100-sxm4-8_pre213_superbench.log", False),  # a GPU the catalogue lacks
        ("h100-2node_rows-then-abort_nccl-tests322.log", False),  # no device lines, an abort
    ],
)
def test_show_of_a_raw_output_is_show_of_the_report_parse_writes(
    tmp_path: Path, name: str, setup: bool
) -> None:
    _lines("parse", str(FIXTURES / name), "--out", str(tmp_path))
    from_report = _lines("show", str(tmp_path / f"{Path(name).stem}.json"))
    assert _lines("show", str(FIXTURES / name)) == from_report
    assert any(line.startswith("  setup ") for line in from_report) is setup


def test_show_of_a_synthetic_two_node_log_is_show_of_its_report(
    tmp_path: Path, frozen_clock: None
) -> None:
    log = tmp_path / "two-nodes.log"
    log.write_text(synthetic.healthy_ib(470.0))
    _lines("parse", str(log), "--out", str(tmp_path / "out"))
    from_report = _lines("show", str(tmp_path / "out" / "two-nodes.json"))
    assert _lines("show", str(log)) == from_report
    assert _row(from_report, "setup").startswith("16 × NVIDIA H100 80GB HBM3 on 2 nodes")


def test_parse_without_a_profile_judges_a_real_h200_run_against_the_h200_figure() -> None:
    expected = EXPECTED_ALLREDUCE_BUSBW["h200-sxm-8"].busbw_gbps
    assert expected is not None
    peak = 480.26  # the in-place busbw of the log's one 16 GiB row
    lines = _lines("parse", str(H200_LOG))
    assert lines[0].startswith("nccl-tests run on vm (profile h200-sxm-8) — ")
    assert _row(lines, "verdict") == "PASS"
    assert _row(lines, "setup") == f"8 × NVIDIA H200 on 1 node, profile h200-sxm-8 {RECOGNISED}"
    assert _row(lines, "expected") == (
        f"{expected:g} GB/s at ≥ 1 GiB; measured {peak:g} ({peak / expected * 100:.0f} %)"
    )


def test_parse_without_a_profile_judges_a_real_h100_json_against_the_h100_figure() -> None:
    expected = EXPECTED_ALLREDUCE_BUSBW["h100-sxm-8"].busbw_gbps
    lines = _lines("parse", str(FIXTURES / "h100-8_json-v3_azure-chm.json"))
    assert _row(lines, "verdict") == "PASS"
    assert _row(lines, "expected").startswith(f"{expected:g} GB/s at ≥ 1 GiB; measured 480.902 ")


def test_parse_without_a_profile_fails_a_slow_recognised_run(tmp_path: Path) -> None:
    """The H200 log's numbers at half speed: recognised as 8×H200, judged, and failed."""
    slow = tmp_path / "slow.log"
    slow.write_text(H200_LOG.read_text().replace("479.97", "239.98").replace("480.26", "240.13"))
    lines = _lines("parse", str(slow))
    assert _row(lines, "verdict") == "FAIL"
    assert _row(lines, "setup").startswith("8 × NVIDIA H200 on 1 node, profile h200-sxm-8")


def test_an_explicit_profile_wins_over_the_device_lines() -> None:
    expected = EXPECTED_ALLREDUCE_BUSBW["h100-sxm-8"].busbw_gbps
    lines = _lines("parse", str(H200_LOG), "--profile", "h100-sxm-8")
    assert "(profile h100-sxm-8)" in lines[0]
    assert not any(line.startswith("  setup") for line in lines)
    assert _row(lines, "expected").startswith(f"{expected:g} GB/s")


def test_expected_busbw_replaces_the_recognised_presets_figure() -> None:
    lines = _lines("parse", str(H200_LOG), "--expected-busbw", "600")
    assert _row(lines, "verdict") == "FAIL"  # 480.26 is 80 % of 600
    assert _row(lines, "expected") == f"600 GB/s at ≥ 1 GiB; measured 480.26 ({480.26 / 6:.0f} %)"


def test_a_gpu_the_catalogue_lacks_is_judged_as_before() -> None:
    lines = _lines("parse", str(FIXTURES / "a100-sxm4-8_pre213_superbench.log"))
    assert lines[0].startswith("nccl-tests run on localhost — ")  # no profile in the title
    assert not any(line.startswith(("  setup", "  expected")) for line in lines)
    assert _row(lines, "verdict") == "UNKNOWN"
    assert any("no sourced expected bus bandwidth" in line for line in lines)


def test_a_recognised_preset_without_a_public_figure_says_so(tmp_path: Path) -> None:
    log = tmp_path / "h100x4.log"
    log.write_text(synthetic.run_text(synthetic.sizes_at(300.0), hosts=("node",), gpus_per_host=4))
    lines = _lines("parse", str(log))
    assert _row(lines, "verdict") == "UNKNOWN"
    assert _row(lines, "setup").startswith(
        "4 × NVIDIA H100 80GB HBM3 on 1 node, profile h100-sxm-4"
    )
    basis = EXPECTED_ALLREDUCE_BUSBW["h100-sxm-4"].basis
    assert _row(lines, "expected") == f"unknown for this setup — {basis}"


def test_a_multi_node_log_is_recognised_but_not_judged_without_a_profile(tmp_path: Path) -> None:
    log = tmp_path / "two-nodes.log"
    log.write_text(synthetic.healthy_ib(470.0))
    lines = _lines("parse", str(log))
    assert _row(lines, "verdict") == "UNKNOWN"
    assert _row(lines, "setup") == f"16 × NVIDIA H100 80GB HBM3 on 2 nodes, 8 per node {RECOGNISED}"
    assert _row(lines, "expected").endswith(
        "no fabric between the nodes (kind, NICs, rate): pass --profile"
    )
    named = _lines("parse", str(log), "--profile", "h200-sxm-8x2-ib")
    assert _row(named, "verdict") == "PASS"


def test_show_still_refuses_json_that_is_neither_report_nor_nccl_tests(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    result = CliRunner().invoke(diag_group, ["show", str(other)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "expected a diag report with schema_version 1, found None" in result.output
