"""The pure preflight checks, each verdict at and around its boundary, and the cross-node diff."""

from __future__ import annotations

import pytest

from metalserve.preflight import (
    HOST_CHECKS,
    SHM_MIN_BYTES,
    DiskSpace,
    HostFacts,
    HostReport,
    NodeManifest,
    PreflightTarget,
    Verdict,
    check_fabric_manager,
    check_gid_index,
    check_held,
    check_installed_module,
    check_loaded_driver,
    check_persistence,
    check_secure_boot,
    check_shm,
    check_userspace,
    check_weights_space,
    cluster_checks,
    host_checks,
)
from metalserve.stack import KernelModuleFlavor

OPEN, PROP = KernelModuleFlavor.OPEN, KernelModuleFlavor.PROPRIETARY
PIN = "580.105.08"
TARGET = PreflightTarget(gpu=True, driver_version=PIN, flavor=OPEN, nccl=True)


def facts(**kw: object) -> HostFacts:
    base: dict[str, object] = {"kernel": "6.8.0-51-generic", "headers_present": True}
    return HostFacts(**{**base, **kw})


@pytest.mark.parametrize(
    ("version", "flavor", "verdict"),
    [(PIN, OPEN, Verdict.PASS), ("580.105.07", OPEN, Verdict.FAIL), (PIN, PROP, Verdict.FAIL),
     (None, None, Verdict.FAIL)],
)  # fmt: skip
def test_loaded_and_installed_module_must_be_the_pin(version, flavor, verdict) -> None:  # noqa: ANN001
    loaded = check_loaded_driver(TARGET, facts(loaded_driver=version, loaded_flavor=flavor))
    installed = check_installed_module(
        TARGET, facts(installed_driver=version, installed_flavor=flavor)
    )
    assert loaded.verdict is verdict and installed.verdict is verdict
    if verdict is Verdict.FAIL:
        assert loaded.fix == "run deploy/reprovision.py"


def test_userspace_fails_on_a_library_mismatch_and_on_a_gpu_at_another_version() -> None:
    mismatch = facts(smi_error="Failed to initialize NVML: Driver/library version mismatch")
    assert check_userspace(TARGET, mismatch).verdict is Verdict.FAIL
    assert "mismatch" in check_userspace(TARGET, mismatch).found
    assert check_userspace(TARGET, facts(smi_driver_versions=(PIN, PIN))).verdict is Verdict.PASS
    mixed = facts(smi_driver_versions=(PIN, "570.172.08"))
    assert check_userspace(TARGET, mixed).verdict is Verdict.FAIL
    assert check_userspace(TARGET, facts()).verdict is Verdict.FAIL  # no GPU answering


def test_every_pinned_package_must_be_held() -> None:
    target = TARGET.model_copy(update={"must_hold": ("libnccl2", "cuda-toolkit-13-0")})
    all_held = check_held(target, facts(held=frozenset({"libnccl2", "cuda-toolkit-13-0", "x"})))
    one_missing = check_held(target, facts(held=frozenset({"cuda-toolkit-13-0"})))
    assert all_held.verdict is Verdict.PASS
    assert (one_missing.verdict, one_missing.found) == (Verdict.FAIL, "not held: libnccl2")
    assert one_missing.fix.startswith("apt-mark hold libnccl2")


@pytest.mark.parametrize(
    ("state", "signer", "verdict"),
    [("enabled", None, Verdict.FAIL), ("enabled", "DKMS module signing key", Verdict.PASS),
     ("disabled", None, Verdict.PASS), ("unsupported", None, Verdict.PASS),
     ("unknown", None, Verdict.WARN)],
)  # fmt: skip
def test_secure_boot_refuses_only_an_unsigned_module(state, signer, verdict) -> None:  # noqa: ANN001
    assert check_secure_boot(facts(secure_boot=state, module_signer=signer)).verdict is verdict


def test_persistence_off_on_one_gpu_warns() -> None:
    assert check_persistence(facts(persistence={"a": True, "b": True})).verdict is Verdict.PASS
    off = check_persistence(facts(persistence={"a": True, "b": False}))
    assert (off.verdict, off.found) == (Verdict.WARN, "off on b")
    assert check_persistence(facts()).verdict is Verdict.SKIP


def test_fabric_manager_must_run_and_every_gpu_complete() -> None:
    ok = facts(fabric_manager_active=True, fabric_gpus=8)
    assert check_fabric_manager(ok).verdict is Verdict.PASS
    stopped = facts(fabric_manager_active=False, fabric_gpus=8)
    pending = facts(fabric_manager_active=True, fabric_gpus=8, fabric_pending=("0000:18:00.0",))
    nobody = facts(fabric_manager_active=True, fabric_gpus=0)
    for bad in (stopped, pending, nobody):
        assert check_fabric_manager(bad).verdict is Verdict.FAIL


def test_shm_at_one_gib_passes_and_one_byte_less_fails() -> None:
    def shm(size: int) -> DiskSpace:
        return DiskSpace(path="/dev/shm", avail_bytes=size, size_bytes=size)

    assert check_shm(shm(SHM_MIN_BYTES)).verdict is Verdict.PASS
    assert check_shm(shm(SHM_MIN_BYTES - 1)).verdict is Verdict.FAIL
    assert check_shm(shm(64 << 20)).found == "/dev/shm is 64 MiB"  # Docker's default
    assert check_shm(None).verdict is Verdict.FAIL


def test_weights_space_counts_what_is_already_there() -> None:
    target = TARGET.model_copy(update={"weights_bytes": 1000})
    space = DiskSpace(path="/w", avail_bytes=600, size_bytes=10_000, used_bytes=400)
    assert check_weights_space(target, space).verdict is Verdict.PASS  # 600 still needed
    short = space.model_copy(update={"avail_bytes": 599})
    assert check_weights_space(target, short).verdict is Verdict.FAIL
    empty = space.model_copy(update={"used_bytes": None})
    assert check_weights_space(target, empty).verdict is Verdict.FAIL  # 1000 needed, 600 free
    assert check_weights_space(TARGET, space).verdict is Verdict.SKIP  # size unknown


def test_gid_index_must_be_the_plans_on_every_hca() -> None:
    target = TARGET.model_copy(update={"gid_index": 3, "roce_devices": ("mlx5_0", "mlx5_1")})
    same = facts(roce_gid_indices={"mlx5_0": 3, "mlx5_1": 3})
    other = facts(roce_gid_indices={"mlx5_0": 3, "mlx5_1": 5})
    missing = facts(roce_gid_indices={"mlx5_0": 3})
    assert check_gid_index(target, same).verdict is Verdict.PASS
    assert check_gid_index(target, other).found == "mlx5_0: 3, mlx5_1: 5"
    assert check_gid_index(target, missing).verdict is Verdict.FAIL


def test_in_a_container_the_kernel_checks_are_skipped_with_the_reason() -> None:
    results = {r.check: r for r in host_checks(TARGET, facts(container="lxc"))}
    for name in ("driver-installed", "kernel-headers", "secure-boot", "rival-modules"):
        assert results[name].verdict is Verdict.SKIP and "lxc container" in results[name].found
    assert [r.check for r in host_checks(TARGET, facts())] == list(HOST_CHECKS)


def test_an_opt_out_turns_a_fail_into_a_skip_that_keeps_the_finding_and_reason() -> None:
    target = TARGET.model_copy(update={"skip": {"shm-size": "vLLM runs with --ipc=host"}})
    shm = DiskSpace(path="/dev/shm", avail_bytes=64 << 20, size_bytes=64 << 20)
    result = {r.check: r for r in host_checks(target, facts(shm=shm))}["shm-size"]
    assert result.verdict is Verdict.SKIP
    assert result.found == "/dev/shm is 64 MiB (opted out: vLLM runs with --ipc=host)"


def _report(host: str, cluster: str = "c", **manifest: object) -> HostReport:
    base: dict[str, object] = {"kernel": "6.8.0-51", "driver": PIN, "engine": "vllm 0.33.0"}
    return HostReport(
        host=host, cluster=cluster, results=(), manifest=NodeManifest(**{**base, **manifest})
    )


def test_the_diff_names_the_field_and_every_nodes_value() -> None:
    results = cluster_checks([_report("n0"), _report("n1", driver="570.172.08"), _report("n2")])
    bad = [r for r in results if r.verdict is Verdict.FAIL]
    assert [r.check for r in bad] == ["c: driver equal"]
    assert bad[0].found == f"n0: {PIN}; n1: 570.172.08; n2: {PIN}"


def test_the_diff_compares_nodes_of_one_cluster_only() -> None:
    assert cluster_checks([_report("a", "c1"), _report("b", "c2", kernel="6.1.0")]) == ()
    gid = cluster_checks([_report("a", gid_index="mlx5_0:3"), _report("b", gid_index="mlx5_0:5")])
    assert {r.check for r in gid if r.verdict is Verdict.FAIL} == {"c: gid_index equal"}
