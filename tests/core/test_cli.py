"""The metalserve CLI, run as a user would run it: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.seedcmd import options, seed_argv

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = sorted((REPO / "inventories").glob("*.py"))


def metalserve(
    *args: str, cwd: Path = REPO, path: str = "/usr/bin:/bin"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metalserve.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": path},
        timeout=120,
    )


def test_plan_json_for_h200_gives_the_seed_004_command_and_a_sizing_that_fits() -> None:
    result = metalserve("plan", "inventories/h200.py", "--json")
    assert result.returncode == 0, result.stderr
    (host,) = json.loads(result.stdout)
    assert host["command"][:3] == ["vllm", "serve", "zai-org/GLM-5.2-FP8"]
    assert options(host["command"]) == options(seed_argv("004-vllm.py-list.txt"))
    assert host["fits"] is True
    assert host["sizing"]["weight_bytes"] == int(703.74 * (1 << 30))


def test_plan_says_which_gpudirect_rdma_path_each_node_gets() -> None:
    hosts = json.loads(metalserve("plan", "inventories/h200-ib.py", "--json").stdout)
    assert len(hosts) > 1
    for host in hosts:  # open kernel modules (the default on Hopper): DMA-BUF, no nvidia-peermem
        assert host["gpudirect_rdma"]["path"] == "DMA-BUF"
        assert "open kernel modules" in host["gpudirect_rdma"]["reason"]
    printed = metalserve("plan", "inventories/h200-ib.py").stdout.splitlines()
    assert any(line.startswith("rdma     GPUDirect RDMA: DMA-BUF  # ") for line in printed)
    single = json.loads(metalserve("plan", "inventories/h200.py", "--json").stdout)
    assert single[0]["gpudirect_rdma"] is None


def test_plan_for_rtxpro6000_gives_the_seed_003_command() -> None:
    (host,) = json.loads(metalserve("plan", "inventories/rtxpro6000.py", "--json").stdout)
    got = options(host["command"])
    # closed by default: with no address in the inventory the engine binds loopback, explicitly
    # (vLLM's own default binds every interface)
    assert got.pop("--host") == "127.0.0.1"
    assert got == options(seed_argv("003-vllm.txt"))
    assert host["sizing"]["headroom_bytes"] == 303 * 10**9


def test_plan_for_the_4090s_gives_the_seed_000_command_and_says_it_does_not_fit() -> None:
    result = metalserve("plan", "inventories/rtx4090.py", "--json")
    assert result.returncode == 1
    (host,) = json.loads(result.stdout)
    got, seed = options(host["command"]), options(seed_argv("000-llama-server.txt"))
    assert str(got.pop("-m")).endswith("/" + str(seed.pop("-m")))
    assert got.pop("--api-key-file") == "%d/api_key"  # every engine has a key, never in argv
    assert got == seed
    assert host["fits"] is False and host["smallest_setup"]


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_every_shipped_inventory_validates(inventory: Path) -> None:
    if inventory.name.startswith("sandbox"):
        pytest.skip("the sandbox inventory reads a running sandbox's state")
    result = metalserve("check", str(inventory))
    expected = 1 if inventory.name == "rtx4090.py" else 0
    assert result.returncode == expected, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_bad_inventory_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        'hosts = [("gpu9", {"metalserve": {"profile": "h200-sxm-8", '
        '"model": {"checkpoint": "zai-org/GLM-5.2-FP8"}, '
        '"engine": {"name": "vllm", "port": 0}}})]\n'
    )
    result = metalserve("check", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "host gpu9: metalserve.engine.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_inventory_and_unknown_host_are_one_line_errors(tmp_path: Path) -> None:
    missing = metalserve("plan", str(tmp_path / "nope.py"))
    assert missing.returncode == 2 and "no such inventory" in missing.stderr
    unknown = metalserve("plan", "inventories/h200.py", "--host", "nope")
    assert unknown.returncode == 2 and "no host 'nope'" in unknown.stderr


def test_an_inventory_with_a_syntax_error_is_reported_not_raised(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("hosts = [\n")
    result = metalserve("check", str(broken))
    assert result.returncode == 2 and "cannot load inventory" in result.stderr
    assert "Traceback" not in result.stderr


def test_render_writes_the_units_a_deploy_would_write(tmp_path: Path) -> None:
    result = metalserve(
        "render",
        "inventories/h200.py",
        "--host",
        "h200-01.example.internal",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "etc/systemd/system/metalserve-vllm.service"
    assert (
        "VLLM_API_KEY=api_key -- /opt/metalserve/venvs/vllm-0.33.0/bin/vllm serve "
        "/var/lib/metalserve/models/zai-org--GLM-5.2-FP8 --served-model-name glm-5.2-fp8"
    ) in unit.read_text()
    assert (tmp_path / "etc/systemd/system/metalserve-vllm-keepwarm.timer").exists()
    env = (tmp_path / "etc/metalserve/metalserve-vllm.env").read_text()
    assert "NCCL_P2P_LEVEL=NVL" in env and "HF_XET_HIGH_PERFORMANCE=1" in env


def test_audit_lists_where_seed_000_does_not_add_up() -> None:
    result = metalserve("audit")
    assert result.returncode == 0
    assert "cannot fit in 320.0 GB" in result.stdout
