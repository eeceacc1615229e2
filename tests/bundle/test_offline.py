"""What a bundle must hold for an inventory, decided from the plans (no I/O)."""

from __future__ import annotations

from metalserve.catalog import pins
from metalserve.catalog.nvidia_stack import (
    Distro,
    KernelModuleFlavor,
    NvidiaStackPins,
    cuda_pin,
    driver_lock_pin,
    driver_pin,
    fabricmanager_pin,
    nccl_pin,
)
from metalserve.catalog.packages import RELEASES
from metalserve.io.inventory import plan_inventory
from metalserve.offline import bundle_needs, shortfall
from metalserve.target import Target
from tests.bundle.conftest import CPU_HOST, needs_of

H200 = "inventories/h200.py"


def test_an_inventory_without_os_is_bundled_for_every_release_of_its_architecture() -> None:
    needs = bundle_needs([(plan, None) for plan in plan_inventory(H200)])
    assert [t.name for t in needs.targets] == [f"{d.value}-amd64" for d in Distro]
    assert any("metalserve.os not given" in note for note in needs.notes)
    assert any("metalserve.os.kernel not given" in note for note in needs.notes)


def test_the_nvidia_packages_are_the_pins_the_roles_install_for_each_release() -> None:
    needs = bundle_needs([(plan, None) for plan in plan_inventory(H200)])
    stack = NvidiaStackPins()
    for distro in Distro:
        (nvidia,) = [n for n in needs.inputs if n.id == f"apt/{distro.value}-amd64/nvidia"]
        # H200 SXM boards carry NVSwitches: fabric manager is part of the stack
        expected = [driver_lock_pin(stack), driver_pin(stack, distro, KernelModuleFlavor.OPEN),
                    cuda_pin(stack), nccl_pin(stack), fabricmanager_pin(stack)]  # fmt: skip
        assert list(nvidia.preferences) == expected
        assert nvidia.items == tuple(name for pin in expected for name in pin.packages)


def test_wheels_are_resolved_per_host_python_and_platform() -> None:
    needs = bundle_needs([(plan, None) for plan in plan_inventory(H200)])
    for distro in Distro:
        target = Target(release=distro, arch="amd64")
        python = RELEASES[distro.value].python
        (vllm,) = [n for n in needs.inputs if n.id == f"wheels/{target.wheel_tag}/vllm"]
        assert vllm.items == (pins.VLLM.requirement,)
        assert vllm.python == python
        glibc_minor = int(RELEASES[distro.value].glibc.split(".")[1])
        # every manylinux tag from the release's glibc down to 2.17, then manylinux2014
        assert len(vllm.platforms) == glibc_minor - 17 + 2
        assert vllm.platforms[0] == f"manylinux_2_{glibc_minor}_x86_64"
        assert vllm.platforms[-1] == "manylinux2014_x86_64"


def test_a_declared_release_bundles_that_release_only_with_its_kernel_headers() -> None:
    host = {
        **CPU_HOST,
        "profile": "h200-sxm-8",
        "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
        "engine": {"name": "vllm", "tensor_parallel_size": 8},
        "os": {"release": "ubuntu2204", "arch": "amd64", "kernel": "5.15.0-126-generic"},
    }
    needs = needs_of({"gpu01": host})
    assert [t.name for t in needs.targets] == ["ubuntu2204-amd64"]
    (distro,) = [n for n in needs.inputs if n.id == "apt/ubuntu2204-amd64/distro"]
    assert {"linux-headers-5.15.0-126-generic", "linux-headers-generic"} <= set(distro.items)
    assert not any("kernel not given" in note for note in needs.notes)


def test_a_cpu_llamacpp_host_needs_the_source_the_converter_and_the_snapshot() -> None:
    needs = needs_of({"node-1": CPU_HOST})
    ids = {n.id for n in needs.inputs}
    tag = Target(release=Distro.DEBIAN_12, arch="amd64").wheel_tag
    assert ids == {
        "apt/debian12-amd64/distro",
        f"wheels/{tag}/hub",
        f"wheels/{tag}/converter",
        "source/llama.cpp",
        "weights/metalserve/tiny-moe",
    }
    assert needs.pins["llama.cpp"] == pins.LLAMA_CPP.version


def test_shortfall_names_a_missing_input_a_smaller_input_and_another_pin() -> None:
    needs = needs_of({"node-1": CPU_HOST})
    from metalserve.offline import BundleManifest, InputRecord

    apt = next(n for n in needs.inputs if n.kind == "apt")
    manifest = BundleManifest(
        format=1,
        hosts=needs.hosts,
        pins={**needs.pins, "llama.cpp": "0000000"},
        key_fingerprint=None,
        inputs=(InputRecord(id=apt.id, kind="apt", items=apt.items[1:], origin="t", files=()),),
        files={},
    )
    problems = shortfall(manifest, needs)
    assert f"{apt.id}: lacks {apt.items[0]}" in problems
    assert "source/llama.cpp: not in the bundle" in problems
    assert (
        f"pin llama.cpp: the inventory needs {pins.LLAMA_CPP.version}, the bundle was built for "
        "0000000" in problems
    )
    assert not [p for p in shortfall(manifest, needs) if p.startswith("hosts")]
    other = needs_of({"node-2": CPU_HOST})
    assert shortfall(manifest, other, hosts=True)[-1] == (
        "hosts: the bundle was built for node-1, the inventory has node-2"
    )
