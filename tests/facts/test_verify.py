"""End-of-role verification and driver drift, read from the recorded fact outputs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from metalserve.catalog.nvidia_stack import KernelModuleFlavor
from roles.fabric import dmabuf_problems
from roles.gpu_facts import facts
from roles.gpu_facts import verify as v

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"
OPEN, PROPRIETARY = KernelModuleFlavor.OPEN, KernelModuleFlavor.PROPRIETARY


def _fact(fact: str, case: str) -> Any:
    """The value a fact takes on one recorded output."""
    module, _, name = fact.partition(".")
    output = json.loads((FIXTURES / fact / f"{case}.json").read_text())["output"]
    return getattr(importlib.import_module(f"roles.{module}.facts"), name)().process(output)


def _one_line(problems: list[str]) -> str:
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert "expected" in problems[0] and "found" in problems[0] and "fix:" in problems[0]
    return problems[0]


def test_all_eight_h200_present_passes() -> None:
    assert v.check_gpus(_fact("gpu_facts.NvidiaGpus", "h200_sxm_8"), 8, "H200") == []


def test_a_missing_gpu_is_named_with_what_was_found() -> None:
    query = _fact("gpu_facts.NvidiaGpus", "h200_sxm_8")
    seven = facts.GpuQuery(gpus=query.gpus[:7])
    assert "expected 8 × H200, found 7" in _one_line(v.check_gpus(seven, 8, "H200"))


def test_wrong_model_for_the_profile() -> None:
    query = _fact("gpu_facts.NvidiaGpus", "rtx4090_4")
    assert "expected H100, found NVIDIA GeForce RTX 4090" in _one_line(
        v.check_gpus(query, 4, "H100")
    )


def test_library_mismatch_sends_the_operator_to_reprovision() -> None:
    query = _fact("gpu_facts.NvidiaGpus", "driver_library_mismatch")
    message = _one_line(v.check_gpus(query, 8, "H200"))
    assert "Driver/library version mismatch" in message and "deploy/reprovision.py" in message


def test_loaded_driver_must_equal_the_pin_and_flavor() -> None:
    loaded = _fact("gpu_facts.NvidiaLoadedDriver", "proprietary_580")
    assert v.check_loaded_driver(loaded, "580.105.08", PROPRIETARY) == []
    assert "expected 580.126.20 loaded, found 580.105.08" in _one_line(
        v.check_loaded_driver(loaded, "580.126.20", PROPRIETARY)
    )
    assert "expected the open kernel module, found proprietary" in _one_line(
        v.check_loaded_driver(loaded, "580.105.08", OPEN)
    )
    assert "found no module loaded" in _one_line(v.check_loaded_driver(None, "580.105.08", OPEN))


def test_nouveau_still_loaded_fails_until_reboot() -> None:
    fresh = _fact("gpu_facts.NvidiaKernelModules", "nouveau_and_nova")
    assert "nouveau/nova_core" in _one_line(v.check_no_rival_modules(fresh))
    busy = _fact("gpu_facts.NvidiaKernelModules", "nvidia_loaded_in_use")
    assert v.check_no_rival_modules(busy) == []


def test_fabric_needs_manager_active_and_every_gpu_completed() -> None:
    states = _fact("gpu_facts.NvidiaFabricStates", "h200_one_gpu_in_progress")
    assert "00000000:db:00.0 In Progress" in _one_line(v.check_fabric(states, True))
    assert "nvidia-fabricmanager active" in _one_line(v.check_fabric(states, False))
    done = {bus: facts.FabricState(state="Completed", status="Success") for bus in states}
    assert v.check_fabric(done, True) == []
    assert "no GPU reporting" in _one_line(v.check_fabric({}, True))


def test_infiniband_ports_active_at_ndr() -> None:
    ports = _fact("fabric.RdmaPorts", "h200_ib_ndr_8")
    hcas = tuple(f"mlx5_{i}" for i in range(8))
    assert v.check_rdma_ports(ports, hcas, 400) == []
    assert (
        "expected ACTIVE at 200 Gb/s, found ACTIVE at 400 Gb/s"
        in v.check_rdma_ports(ports, hcas[:1], 200)[0]
    )
    assert "found no such device" in _one_line(v.check_rdma_ports(ports, ("mlx5_9",), 400))


def test_roce_port_down_and_gid_index_checked() -> None:
    ports = _fact("fabric.RdmaPorts", "roce_v2_one_port_down")
    assert v.check_rdma_ports(ports, ("mlx5_0",), 400, roce_gid_index=3) == []
    assert "found 3" in _one_line(v.check_rdma_ports(ports, ("mlx5_0",), 400, roce_gid_index=1))
    down = v.check_rdma_ports(ports, ("mlx5_1",), 400, roce_gid_index=3)
    assert "found DOWN at 10 Gb/s" in down[0]
    assert "RoCE v2 IPv4 GID at index 3, found none" in down[1]


def test_drift_from_nothing_installed_to_in_sync() -> None:
    installed = _fact("gpu_facts.NvidiaInstalledModule", "open_signed")
    old = facts.LoadedDriver(version="570.195.03", flavor=OPEN)
    current = facts.LoadedDriver(version="580.105.08", flavor=OPEN)
    cases = [
        (None, None, v.DriftKind.NOT_INSTALLED, True),
        (
            _fact("gpu_facts.NvidiaInstalledModule", "proprietary_unsigned"),
            old,
            v.DriftKind.INSTALL,
            True,
        ),
        (installed, old, v.DriftKind.RELOAD, False),
        (installed, None, v.DriftKind.RELOAD, False),
        (installed, current, v.DriftKind.NONE, False),
    ]
    for on_disk, loaded, kind, install in cases:
        drift = v.driver_drift("580.105.08", OPEN, on_disk, loaded)
        assert (drift.kind, drift.needs_install) == (kind, install), drift.reason
        assert drift.needs_reload is (kind is not v.DriftKind.NONE)


def test_flavor_change_is_an_install_even_at_the_same_version() -> None:
    on_disk = facts.InstalledModule(version="580.105.08", flavor=PROPRIETARY)
    drift = v.driver_drift("580.105.08", OPEN, on_disk, None)
    assert drift.kind is v.DriftKind.INSTALL
    assert drift.reason == "expected 580.105.08 (open) installed, found 580.105.08 (proprietary)"


def test_verification_error_is_one_line_per_host() -> None:
    error = v.VerificationError.for_host("gpu01", ["a — fix: x", "b — fix: y"])
    assert str(error) == "host gpu01: a — fix: x; b — fix: y"


def test_dmabuf_needs_linux_5_12_and_the_open_module() -> None:
    # every supported distribution's kernel carries it (5.15, 6.1, 6.8)
    for release in ("5.15.0-126-generic", "6.1.0-28-amd64", "6.8.0-51-generic"):
        assert dmabuf_problems(release, KernelModuleFlavor.OPEN) == []
    assert dmabuf_problems("5.12.0-1-amd64", None) == []  # no module loaded yet: kernel only
    old = _one_line(dmabuf_problems("5.10.0-30-amd64", KernelModuleFlavor.OPEN))
    assert "expected Linux >= 5.12, found 5.10.0-30-amd64" in old
    proprietary = _one_line(dmabuf_problems("6.8.0-51-generic", PROPRIETARY))
    assert "expected the open nvidia.ko loaded, found the proprietary one" in proprietary
