"""What the GPU roles read from the facts: the derived answers, the failures, and the commands
themselves run for real on this (GPU-less) machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from metalserve.errors import ParseError
from roles.fabric.facts import RdmaPorts, parse_rdma_ports
from roles.gpu_facts import facts

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"


def _output(fact: str, case: str) -> list[str]:
    return json.loads((FIXTURES / fact / f"{case}.json").read_text())["output"]


def _run(command: str) -> list[str]:
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_nvswitch_host_has_eighteen_nvlinks_between_every_gpu_pair() -> None:
    topology = facts.parse_topology(_output("gpu_facts.NvidiaTopology", "h100_sxm_8_nvswitch"))
    assert topology.gpus == tuple(f"GPU{i}" for i in range(8))
    assert topology.min_nvlinks == 18
    assert topology.worst_pcie_path is None
    assert topology.nic_names["NIC3"] == "mlx5_3"


def test_pcie_host_reports_its_farthest_gpu_path() -> None:
    eight = facts.parse_topology(_output("gpu_facts.NvidiaTopology", "rtx4090_8_pcie"))
    two = facts.parse_topology(_output("gpu_facts.NvidiaTopology", "rtx5090_2_phb"))
    assert (eight.min_nvlinks, eight.worst_pcie_path) == (0, "SYS")
    assert (two.min_nvlinks, two.worst_pcie_path) == (0, "PHB")


def test_topology_cut_short_is_an_operator_error_not_a_wrong_answer() -> None:
    lines = _output("gpu_facts.NvidiaTopology", "rtx4090_8_pcie")[:4]
    with pytest.raises(ParseError, match="expected a row for every column.*GPU3"):
        facts.parse_topology(lines)


def test_nvidia_smi_failure_is_kept_as_the_reason_with_no_gpus() -> None:
    query = facts.parse_gpu_query(_output("gpu_facts.NvidiaGpus", "driver_library_mismatch"))
    assert query.gpus == ()
    assert query.error is not None and "Driver/library version mismatch" in query.error


def test_dgx_spark_gpu_without_memory_of_its_own_is_still_a_gpu() -> None:
    # GB10 shares the host's memory; nvidia-smi prints [N/A] for memory.total (NVIDIA's DGX Spark
    # known issues). Reading that as a failed query would fail every DGX Spark's verification.
    query = facts.parse_gpu_query(
        ["NVIDIA GB10, [N/A], 12.1, 0000000F:01:00.0, GPU-2dee1e25-b3b5-007e, 580.105.08"]
    )
    assert query.error is None
    assert [(g.name, g.memory_mib, g.pci_bus_id) for g in query.gpus] == [
        ("NVIDIA GB10", None, "0000000f:01:00.0")
    ]


def test_a_garbled_memory_field_is_still_an_error() -> None:
    query = facts.parse_gpu_query(["NVIDIA H200, lots, 9.0, 00000000:18:00.0, GPU-1, 580.105.08"])
    assert query.gpus == ()
    assert query.error is not None and "lots" in query.error


def test_unknown_version_file_format_is_reported() -> None:
    with pytest.raises(ParseError, match="expected an 'NVRM version"):
        facts.parse_loaded_driver(["NVRM: something else entirely"])


def test_nvswitches_and_gpus_are_told_apart_on_pci_and_audio_functions_ignored() -> None:
    h200 = facts.parse_pci_devices(_output("gpu_facts.NvidiaPci", "h200_sxm_8_with_nvswitches"))
    rtx = facts.parse_pci_devices(_output("gpu_facts.NvidiaPci", "rtx4090_4_with_audio"))
    assert (len(h200.gpus), len(h200.nvswitches)) == (8, 4)
    assert (len(rtx.gpus), len(rtx.nvswitches)) == (4, 0)


def test_rival_drivers_and_nvidia_unload_order() -> None:
    busy = facts.parse_proc_modules(
        _output("gpu_facts.NvidiaKernelModules", "nvidia_loaded_in_use")
    )
    fresh = facts.parse_proc_modules(_output("gpu_facts.NvidiaKernelModules", "nouveau_and_nova"))
    assert busy.rivals == ()
    assert busy.nvidia == ("nvidia_peermem", "nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidia")
    assert busy.loaded["nvidia"].refcount == 96
    assert fresh.rivals == ("nouveau", "nova_core")


def test_fabric_state_completed_only_with_success() -> None:
    states = facts.parse_fabric_states(
        _output("gpu_facts.NvidiaFabricStates", "h200_one_gpu_in_progress")
    )
    assert [bus for bus, state in states.items() if not state.completed] == ["00000000:db:00.0"]


def test_roce_gid_index_is_the_ipv4_roce_v2_entry() -> None:
    ports = parse_rdma_ports(_output("fabric.RdmaPorts", "roce_v2_one_port_down"))
    assert ports[0].roce_v2_ipv4_gid_index() == 3
    assert ports[0].gids[3].ipv4 == "10.10.1.1"
    assert ports[1].roce_v2_ipv4_gid_index() is None  # link-local only: NCCL would pick wrongly
    assert [p.active for p in ports] == [True, False]


def test_unreadable_rate_is_an_operator_error() -> None:
    with pytest.raises(ParseError, match="expected a rate like"):
        parse_rdma_ports(["port mlx5_0 1", "state 4: ACTIVE", "rate garbage"])


@pytest.mark.parametrize(
    "fact",
    [
        facts.NvidiaLoadedDriver,
        facts.NvidiaInstalledModule,
        facts.NvidiaKernelModules,
        facts.NvidiaNcclLibraries,
        RdmaPorts,
    ],
)
def test_a_host_without_a_gpu_gets_empty_facts_not_errors(fact: type) -> None:
    instance = fact()
    value = instance.process(_run(instance.command()))
    assert value in (None, (), {}, instance.default())


def test_kernel_secure_boot_and_toolkit_commands_run_here() -> None:
    headers = facts.NvidiaKernelHeaders()
    release = _run("uname -r")[0]
    assert headers.process(_run(headers.command())).release == release
    secure_boot = facts.NvidiaSecureBoot()
    assert secure_boot.process(_run(secure_boot.command())).state in (
        "enabled",
        "disabled",
        "unsupported",
        "unknown",
    )
    toolkits = facts.NvidiaCudaToolkits()
    found = toolkits.process(_run(toolkits.command()))
    installed = sorted(
        str(p) for p in Path("/usr/local").glob("cuda-*") if (p / "bin/nvcc").exists()
    )
    assert sorted(t.path for t in found.toolkits) == installed


def test_gpu_facts_need_nvidia_smi_and_default_to_empty() -> None:
    for fact in (facts.NvidiaGpus, facts.NvidiaTopology, facts.NvidiaFabricStates):
        assert fact().requires_command() == "nvidia-smi"
    assert facts.NvidiaGpus.default() == facts.GpuQuery()
    assert facts.NvidiaTopology.default().gpus == ()


def test_gpu_query_command_reports_failure_as_data(tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch'\nexit 18\n"
    )
    fake.chmod(0o755)
    command = facts.NvidiaGpus().command()
    lines = _run(f"PATH={tmp_path}:$PATH; {command}")
    query = facts.parse_gpu_query(lines)
    assert query.error == (
        "Failed to initialize NVML: Driver/library version mismatch; "
        "nvidia-smi exited with status 18"
    )


def test_rdma_command_reads_a_real_sysfs_layout(tmp_path: Path) -> None:
    port = tmp_path / "mlx5_0" / "ports" / "1"
    (port / "gids").mkdir(parents=True)
    (port / "gid_attrs" / "types").mkdir(parents=True)
    (port / "gid_attrs" / "ndevs").mkdir(parents=True)
    (port / "link_layer").write_text("Ethernet\n")
    (port / "state").write_text("4: ACTIVE\n")
    (port / "rate").write_text("200 Gb/sec (2X NDR)\n")
    gids = {
        "0": ("fe80:0000:0000:0000:0690:81ff:fe39:e3e8", "IB/RoCE v1"),
        "1": ("fe80:0000:0000:0000:0690:81ff:fe39:e3e8", "RoCE v2"),
        "2": ("0000:0000:0000:0000:0000:ffff:c0a8:0606", "RoCE v2"),
        "3": ("0000:0000:0000:0000:0000:0000:0000:0000", None),  # unused: types/3 is unreadable
    }
    for index, (gid, kind) in gids.items():
        (port / "gids" / index).write_text(gid + "\n")
        if kind:
            (port / "gid_attrs" / "types" / index).write_text(kind + "\n")
            (port / "gid_attrs" / "ndevs" / index).write_text("enp1s0f0np0\n")

    class LocalRdmaPorts(RdmaPorts):
        sysfs_root = str(tmp_path)

    fact = LocalRdmaPorts()
    (parsed,) = fact.process(_run(fact.command()))
    assert (parsed.device, parsed.port, parsed.rate_gbps, parsed.is_roce) == (
        "mlx5_0",
        1,
        200.0,
        True,
    )
    assert [g.index for g in parsed.gids] == [0, 1, 2]
    assert parsed.roce_v2_ipv4_gid_index() == 2
    assert parsed.gids[2].ipv4 == "192.168.6.6"
