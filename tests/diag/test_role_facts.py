"""The role's facts on real command outputs, and the control-host step that judges fetched runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from metalserve.diag.spec import DiagSpec
from roles.base import RoleError
from roles.nccl_diag import judge_and_file, judge_on_control_host
from roles.nccl_diag.facts import BuildStamp, NvidiaGpuCount
from tests.diag import synthetic
from tests.diag.synthetic import FIXTURES
from tests.faultkit import diag_plan, stage_log

# `nvidia-smi -L` on an 8×H100 HGX (format: "GPU <i>: <name> (UUID: GPU-<uuid>)")
NVIDIA_SMI_L = [
    f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-0c4a{i}f1e-6d2b-8f3c-2a7e-55d1c0b1e9a{i})"
    for i in range(8)
]
# what `nvidia-smi -L` prints on a host whose driver is not loaded
NO_DRIVER = [
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that "
    "the latest NVIDIA driver is installed and running.",
]


def test_gpu_count_fact() -> None:
    fact = NvidiaGpuCount()
    assert fact.process(NVIDIA_SMI_L) == 8
    assert fact.process(NO_DRIVER) == 0
    assert fact.process([]) == 0
    assert fact.command() == "nvidia-smi -L 2>/dev/null || true"


def test_build_stamp_fact() -> None:
    fact = BuildStamp()
    assert fact.process(["61e94d0c46f9ea6e"]) == "61e94d0c46f9ea6e"
    assert fact.process([]) is None
    assert fact.command("/var/lib/x y") == "cat '/var/lib/x y' 2>/dev/null || true"


def _plan(tmp_path: Path, fail_host: bool = True, inventory: str = "inventories/h100.py",
          **diag: object):  # type: ignore[no-untyped-def]  # fmt: skip
    return diag_plan(tmp_path, inventory, fail_host=fail_host, **diag)


def _stage(tmp_path: Path, dp, log: str, report: str | None) -> None:  # type: ignore[no-untyped-def]
    stage_log(tmp_path, dp, (FIXTURES / log).read_text(),
              (FIXTURES / report).read_text() if report else "")  # fmt: skip


def test_a_passing_run_is_filed_under_a_dated_folder(tmp_path: Path) -> None:
    dp = _plan(tmp_path)
    _stage(
        tmp_path, dp, "a100-pcie-4_socket-fallback_nccl1812.log", "h100-8_json-v3_azure-chm.json"
    )
    judge_and_file(dp, dp.runs)
    (folder,) = [p for p in tmp_path.iterdir() if p.name != "incoming"]
    written = sorted(p.name for p in (folder / dp.host).iterdir())
    assert written == ["all_reduce.json", "all_reduce.log", "all_reduce.png", "all_reduce.txt"]
    summary = (folder / dp.host / "all_reduce.txt").read_text()
    assert "  avg bus bandwidth   480.294297 GB/s" in summary


def test_a_failing_run_fails_the_host_in_one_line(tmp_path: Path) -> None:
    dp = _plan(tmp_path)
    _stage(tmp_path, dp, "a100-sxm4-8_pre213_superbench.log", None)
    with pytest.raises(RoleError) as failure:
        judge_and_file(dp, dp.runs)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith(
        "host h100-01.example.internal: NCCL diagnostic FAIL — all_reduce: busbw"
    )


def test_fail_host_off_only_reports(tmp_path: Path) -> None:
    dp = _plan(tmp_path, fail_host=False)
    _stage(tmp_path, dp, "a100-sxm4-8_pre213_superbench.log", None)
    judge_and_file(dp, dp.runs)


class _Host:
    """What pyinfra hands a callback: somewhere to log a styled line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log_styled(self, message: str, **_style: object) -> None:
        self.lines.append(message)


def test_under_pyinfra_a_fail_is_one_red_line_and_a_failed_step(tmp_path: Path) -> None:
    dp = _plan(tmp_path)
    _stage(tmp_path, dp, "a100-sxm4-8_pre213_superbench.log", None)
    host = _Host()
    assert judge_on_control_host(None, host, dp) is False  # pyinfra stops this host here
    (line,) = host.lines
    assert "NCCL diagnostic FAIL — all_reduce: busbw" in line and "Traceback" not in line


def test_under_pyinfra_a_pass_lets_the_next_step_run(tmp_path: Path) -> None:
    dp = _plan(tmp_path)
    _stage(
        tmp_path, dp, "a100-pcie-4_socket-fallback_nccl1812.log", "h100-8_json-v3_azure-chm.json"
    )
    host = _Host()
    assert judge_on_control_host(None, host, dp) is True
    assert host.lines == []


# What a run that measured nothing leaves in its log: dash's "not found" for a missing binary, the
# shell's report of a segfault or a SIGKILL (the OOM killer, a timeout), or nothing at all.
STARTED = "# nccl-tests version 2.19.6 nccl-headers=22703 nccl-library=22703\n"
NO_RESULT = {
    "empty": ("", "the log is empty"),
    "not-found": (
        "sh: 1: /opt/metalserve/src/nccl-tests-v2.17.6/build/all_reduce_perf: not found\n",
        "the log ends with 'sh: 1: /opt/metalserve/src/nccl-tests-v2.17.6/build/all_reduce_perf: "
        "not found'",
    ),
    "segfault": (
        STARTED + "Segmentation fault (core dumped)\n",
        "the log ends with 'Segmentation fault (core dumped)'",
    ),  # fmt: skip
    "killed": (STARTED + "Killed\n", "the log ends with 'Killed'"),
}


@pytest.mark.parametrize("case", sorted(NO_RESULT))
def test_as_a_gate_a_run_that_produced_nothing_keeps_the_engine_stopped(
    tmp_path: Path, case: str
) -> None:
    log, last_words = NO_RESULT[case]
    dp = _plan(tmp_path)
    stage_log(tmp_path, dp, log)
    with pytest.raises(RoleError) as stopped:
        judge_and_file(dp, dp.runs, gate=True)
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith(
        f"host h100-01.example.internal: NCCL gate: all_reduce produced no result ({last_words}), "
        "so nothing vouches for the new stack; the engine stays stopped — fix: "
    )
    assert "metalserve.diag.gate_accepts_no_result" in message


def test_the_inventory_may_accept_no_result_with_a_reason(tmp_path: Path) -> None:
    reason = "nccl-tests cannot run under this site's MIG layout; checked by hand"
    dp = _plan(tmp_path, gate_accepts_no_result=reason)
    stage_log(tmp_path, dp, NO_RESULT["killed"][0])
    notes = judge_and_file(dp, dp.runs, gate=True)
    assert notes == [
        "host h100-01.example.internal: NCCL gate: all_reduce produced no result (the log ends "
        f"with 'Killed'); accepted: {reason}"
    ]


def test_accepting_no_result_takes_a_reason() -> None:
    with pytest.raises(ValidationError, match="gate_accepts_no_result"):
        DiagSpec(gate_accepts_no_result="")


def test_outside_the_gate_a_run_without_result_is_reported_not_failed(tmp_path: Path) -> None:
    dp = _plan(tmp_path)
    stage_log(tmp_path, dp, NO_RESULT["empty"][0])
    assert judge_and_file(dp, dp.runs) == [
        "host h100-01.example.internal: NCCL diagnostic: all_reduce produced no result (the log "
        "is empty)"
    ]


def test_under_pyinfra_a_gate_without_result_is_one_red_line_and_a_failed_step(
    tmp_path: Path,
) -> None:
    dp = _plan(tmp_path)
    stage_log(tmp_path, dp, NO_RESULT["segfault"][0])
    host = _Host()
    assert judge_on_control_host(None, host, dp, gate=True) is False
    (line,) = host.lines
    assert "NCCL gate: all_reduce produced no result" in line and "Traceback" not in line


# 4×H100 without NVSwitch: no public all_reduce figure, so bandwidth cannot be judged there
NO_FIGURE = "inventories/h100x4.py"


@pytest.mark.parametrize(
    ("log", "reason"),
    [
        (synthetic.wrong_results(), "all_reduce: data corruption: #wrong > 0 at 4 size(s)"),
        (synthetic.aborted(), "all_reduce: aborted: gpu02: Test NCCL failure common.cu:1128"),
    ],
    ids=["wrong-results", "aborted"],
)
def test_without_a_sourced_figure_wrong_results_and_aborts_still_fail_the_gate(
    tmp_path: Path, log: str, reason: str
) -> None:
    dp = _plan(tmp_path, inventory=NO_FIGURE)
    assert dp.expectation.busbw_gbps is None
    stage_log(tmp_path, dp, log)
    with pytest.raises(RoleError, match=re.escape(f"NCCL diagnostic FAIL — {reason}")):
        judge_and_file(dp, dp.runs, gate=True)


def test_without_a_sourced_figure_a_clean_run_is_bandwidth_unknown_not_pass(
    tmp_path: Path,
) -> None:
    dp = _plan(tmp_path, inventory=NO_FIGURE)
    stage_log(tmp_path, dp, synthetic.run_text(synthetic.sizes_at(300.0), hosts=("node",)))
    (note,) = judge_and_file(dp, dp.runs, gate=True)
    assert note.startswith(
        "host h100x4-01.example.internal: NCCL diagnostic all_reduce UNKNOWN — bandwidth unknown: "
        "busbw 300 GB/s at 1 GiB, but no sourced expected bus bandwidth for this profile"
    )
