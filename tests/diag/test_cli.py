"""`metalserve diag parse/show/compare` as an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

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
    dmabuf = "gpu01:4021:4090 [0] NCCL INFO NET/IB : GPU Direct RDMA (DMABUF) enabled for HCA 0 'mlx5_0\n"
    log = tmp_path / "ib_dmabuf.log"
    log.write_text(synthetic.run_text(synthetic.sizes_at(470.0), log=dmabuf + synthetic.IB_LOG))
    report = _parse(tmp_path, log, "--profile", "h200-sxm-8x2-ib")
    shown = CliRunner().invoke(diag_group, ["show", str(report)]).output.splitlines()
    transports = next(line for line in shown if line.startswith("  transports"))
    assert "GDRDMA (DMA-BUF)" in transports
