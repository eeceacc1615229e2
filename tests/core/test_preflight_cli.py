"""``metalserve preflight show`` on reports as deploy/preflight.py writes them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from metalserve.cli import main
from metalserve.io.preflight import write_host_report
from metalserve.preflight import CheckResult, HostReport, NodeManifest, Verdict

PIN = "580.105.08"


def _report(host: str, driver: str, verdict: Verdict) -> HostReport:
    loaded = CheckResult(
        check="driver-loaded",
        verdict=verdict,
        expected=f"nvidia.ko {PIN} (open) loaded",
        found=f"{driver} (open) loaded",
        fix="" if verdict is Verdict.PASS else "run deploy/reprovision.py",
    )
    skipped = CheckResult(
        check="roce-gid-index", verdict=Verdict.SKIP, expected="RoCE GID index",
        found="no RoCE fabric in the plan",
    )  # fmt: skip
    manifest = NodeManifest(kernel="6.8.0-51-generic", driver=driver, engine="vllm 0.33.0")
    return HostReport(host=host, cluster="h200-ib", results=(loaded, skipped), manifest=manifest)


def _show(tmp_path: Path, *reports: HostReport) -> tuple[int, str]:
    paths = [str(write_host_report(r, tmp_path)) for r in reports]
    result = CliRunner().invoke(main, ["preflight", "show", *paths])
    return result.exit_code, result.output


def test_a_clean_cluster_exits_0_and_lists_each_check(tmp_path: Path) -> None:
    code, out = _show(tmp_path, _report("n0", PIN, Verdict.PASS), _report("n1", PIN, Verdict.PASS))
    assert code == 0
    rows = [line.split()[:2] for line in out.splitlines()[:-1]]
    assert ["n0", "driver-loaded"] in rows and ["n1", "roce-gid-index"] in rows
    assert ["(cluster)", "h200-ib:"] in rows and "h200-ib: driver equal" in out
    # 2 hosts x 2 checks, 10 manifest fields compared once, the clocks not measured (a report
    # written without a deploy's probe)
    assert out.splitlines()[-1] == "12 PASS, 0 WARN, 0 FAIL, 3 SKIP"
    clocks = next(line for line in out.splitlines() if "h200-ib: clocks in sync" in line)
    assert clocks.split()[-9:] == [
        "SKIP",
        "not",
        "measured:",
        "preflight",
        "measures",
        "them",
        "during",
        "a",
        "deploy",
    ]


def test_a_drifted_node_is_named_with_its_fix_and_exits_1(tmp_path: Path) -> None:
    code, out = _show(
        tmp_path, _report("n0", PIN, Verdict.PASS), _report("n1", "570.172.08", Verdict.FAIL)
    )
    assert code == 1
    lines = out.splitlines()
    failing = [i for i, line in enumerate(lines) if " FAIL " in line]
    assert [lines[i].split()[0] for i in failing] == ["n1", "(cluster)"]
    assert lines[failing[0] + 1].strip().endswith("fix: run deploy/reprovision.py")
    assert f"n0: {PIN}; n1: 570.172.08" in lines[failing[1]]


def test_a_file_that_is_not_a_report_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "all_reduce.json"
    bad.write_text('{"host": "n0"}')
    result = CliRunner().invoke(main, ["preflight", "show", str(bad)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "expected a preflight report" in result.output
    missing = CliRunner().invoke(main, ["preflight", "show", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "No such file" in missing.output
