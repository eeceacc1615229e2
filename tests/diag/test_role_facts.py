"""The role's facts on real command outputs, and the control-host step that judges fetched runs."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import pytest

from metalserve.io.modelfiles import checkpoint_for_spec
from metalserve.plan import plan_alone
from metalserve.spec import host_spec
from roles.base import RoleError
from roles.nccl_diag import judge_and_file, judge_on_control_host
from roles.nccl_diag.facts import BuildStamp, NvidiaGpuCount
from tests.diag.synthetic import FIXTURES

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


def _plan(tmp_path: Path, fail_host: bool = True):  # type: ignore[no-untyped-def]
    name, data = runpy.run_path("inventories/h100.py")["hosts"][0]
    data = dict(data["metalserve"])
    data["diag"] = {"reports_dir": str(tmp_path), "fail_host": fail_host}
    spec = host_spec(name, data)
    return plan_alone(spec, checkpoint_for_spec(spec)).diag


def _stage(tmp_path: Path, dp, log: str, report: str | None) -> None:  # type: ignore[no-untyped-def]
    staging = tmp_path / "incoming" / dp.host
    staging.mkdir(parents=True)
    shutil.copy(FIXTURES / log, staging / "all_reduce.log")
    (staging / "all_reduce.json").write_text(
        (FIXTURES / report).read_text() if report else ""  # touched empty when -J wrote nothing
    )


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
