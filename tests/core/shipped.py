"""The plans metalserve ships: every inventory under inventories/ (the sandbox's are generated at
run time) and the sandbox's own host data, a single host and a two-node llama.cpp RPC cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from metalserve.io.inventory import plan_inventory
from metalserve.plan import HostPlan, plan_hosts
from metalserve.sandbox.demo import SandboxInputs, sandbox_cluster_data, sandbox_metalserve_data
from metalserve.spec import host_spec

REPO = Path(__file__).resolve().parents[2]
SANDBOX_APT = "http://10.77.0.1:8080/apt"
SANDBOX_CLIENTS = ("10.77.0.1/32",)
"""The sandbox's one client network: the controller, where the demo asks."""
SANDBOX_ADDRESSES = ("10.77.0.11", "10.77.0.12")


def inventory_plans() -> Iterator[HostPlan]:
    for inventory in sorted((REPO / "inventories").glob("*.py")):
        if not inventory.name.startswith("sandbox"):
            yield from plan_inventory(inventory)


def sandbox_inputs(root: Path = Path("/nonexistent/sandbox-run")) -> SandboxInputs:
    """Inputs as `metalserve sandbox up` prepares them; planning reads none of these files."""
    return SandboxInputs(
        llamacpp_tarball=root / "llama.cpp.tar.gz",
        llamacpp_sha256="0" * 64,
        wheelhouse=root / "wheels",
        checkpoint=root / "tiny-moe",
        hub_root=root / "hub",
        api_key_file=root / "api_key",
        hub_endpoint="http://10.77.0.1:8390",
    )


def sandbox_plans() -> list[HostPlan]:
    inputs = sandbox_inputs()
    single = host_spec("sandbox-1", sandbox_metalserve_data(SANDBOX_APT, inputs, SANDBOX_CLIENTS))
    cluster = [
        host_spec(
            f"sandbox-rpc-{rank}",
            sandbox_cluster_data(
                SANDBOX_APT, inputs, SANDBOX_CLIENTS, len(SANDBOX_ADDRESSES), rank, address
            ),
        )
        for rank, address in enumerate(SANDBOX_ADDRESSES)
    ]
    return [*plan_hosts([single]), *plan_hosts(cluster)]


def shipped_plans() -> list[HostPlan]:
    return [*inventory_plans(), *sandbox_plans()]
