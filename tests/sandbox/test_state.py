"""The state file that `up` writes and everything else reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metalserve.catalog.packages import RELEASES
from metalserve.catalog.profiles import PROFILES
from metalserve.sandbox.demo import SandboxInputs
from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.inventory import host_data, inventory_hosts
from metalserve.sandbox.recipe import ROOTFS
from metalserve.sandbox.state import SandboxHostState, SandboxState, load_state, save_state
from metalserve.sources import SourceKind
from metalserve.spec import host_spec


def make_state(run_dir: Path, n: int = 2) -> SandboxState:
    return SandboxState(
        prefix="ms",
        subnet="10.77.0.0/24",
        controller_netns="ms-ctl",
        controller_ip="10.77.0.1",
        hosts=tuple(
            SandboxHostState(
                name=f"ms-host{i}",
                ip=f"10.77.0.{10 + i}",
                netns=f"ms-host{i}",
                machine_dir=run_dir / "machines" / f"ms-host{i}",
                host_key_line=f"ssh-ed25519 AAAAkey{i}",
            )
            for i in range(1, n + 1)
        ),
        ssh_key=run_dir / "id_ed25519",
        ssh_known_hosts=run_dir / "known_hosts",
        ssh_config=run_dir / "ssh_config",
        http_base_url="http://10.77.0.1:8080",
        http_server_pid=4242,
        served={"apt": "http://10.77.0.1:8080/apt/"},
        apt_url="http://10.77.0.1:8080/apt/",
        ccache_dir=Path("/c/ccache/bookworm-x"),
        rootfs_tarball=Path("/c/rootfs/x.tar.zst"),
    )


def test_state_round_trips_through_the_file(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    save_state(tmp_path / "state.json", state)
    assert load_state(tmp_path / "state.json") == state
    assert not list(tmp_path.glob(".*tmp")), "the temporary file is renamed into place"


def test_a_missing_state_file_says_how_to_bring_the_sandbox_up(tmp_path: Path) -> None:
    with pytest.raises(
        SandboxError,
        match=r"^no sandbox is up: expected a state file at .* — fix: metalserve sandbox up$",
    ):
        load_state(tmp_path / "state.json")


def test_a_foreign_state_file_is_one_line_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    data = json.loads(make_state(tmp_path).model_dump_json())
    del data["apt_url"]
    path.write_text(json.dumps(data))
    with pytest.raises(
        SandboxError, match=r"apt_url: Field required — fix: metalserve sandbox down"
    ):
        load_state(path)


def test_unknown_host_names_list_the_real_ones(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="found ms-host1, ms-host2"):
        make_state(tmp_path).host("gpu01")


def test_inventory_hosts_connect_through_the_sandbox_ssh_config(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    hosts = inventory_hosts(state)
    assert [name for name, _ in hosts] == ["ms-host1", "ms-host2"]
    data = hosts[1][1]
    assert data["ssh_hostname"] == "ms-host2"
    assert data["ssh_config_file"] == str(tmp_path / "ssh_config")
    assert data["ssh_key"] == str(tmp_path / "id_ed25519")
    assert data["ssh_strict_host_key_checking"] == "yes"
    assert data["sandbox"]["apt_url"] == state.apt_url
    assert data["sandbox"]["peers"] == ["10.77.0.11", "10.77.0.12"]


def _inputs(tmp_path: Path) -> SandboxInputs:
    return SandboxInputs(
        llamacpp_tarball=tmp_path / "llama.cpp.tar.gz",
        llamacpp_sha256="0" * 64,
        wheelhouse=tmp_path / "wheels",
        checkpoint=tmp_path / "tiny-moe",
        hub_root=tmp_path / "hub",
        api_key_file=tmp_path / "api_key",
        hub_token_file=tmp_path / "hub_token",
        hub_endpoint="http://10.77.0.1:8390",
    )


def test_without_prepared_inputs_hosts_carry_no_metalserve_data(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    assert "metalserve" not in host_data(state, state.hosts[0])


def test_with_inputs_every_host_carries_data_the_core_validates(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    for name, data in inventory_hosts(state, _inputs(tmp_path)):
        spec = host_spec(name, data["metalserve"])
        assert spec.profile in PROFILES and spec.engine.name == "llamacpp"
        assert spec.sources.apt.kind is SourceKind.MIRROR
        assert spec.sources.apt.url == "http://10.77.0.1:8080/apt/"
        assert spec.sources.python.kind is SourceKind.BUNDLE
        assert spec.sources.weights.endpoint == "http://10.77.0.1:8390"
        assert spec.secrets.api_key_file == str(tmp_path / "api_key")
        assert spec.secrets.hf_token_file == str(tmp_path / "hub_token"), "the mirror's token"


def test_every_host_gets_its_own_copy_of_the_metalserve_data(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    first = host_data(state, state.hosts[0], _inputs(tmp_path))
    first["metalserve"]["engine"]["name"] = "vllm"
    second = host_data(state, state.hosts[1], _inputs(tmp_path))["metalserve"]
    assert second["engine"]["name"] == "llamacpp"


def test_with_a_bundle_every_input_comes_from_it_for_the_sandbox_release(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    bundle = tmp_path / "bundle"
    for name, data in inventory_hosts(state, _inputs(tmp_path), bundle):
        spec = host_spec(name, data["metalserve"])
        assert spec.sources.bundle == str(bundle)
        assert spec.sources.apt.kind is SourceKind.BUNDLE
        assert spec.sources.python.wheelhouse == f"{bundle}/wheels"
        assert spec.sources.weights.kind is SourceKind.BUNDLE
        # bundled for the release the hosts' root tree is debootstrapped from, that one only
        assert spec.os is not None and spec.os.arch == ROOTFS.arch
        assert RELEASES[spec.os.release.value].suite == ROOTFS.suite
        assert spec.model.local_dir == str(tmp_path / "tiny-moe"), "what the bundle is built from"
