"""pyinfra host data for sandbox hosts: the one place that builds it.

Example (what `inventories/sandbox.py` does)::

    state = load_state(default_layout().state_file)
    sandbox = inventory_hosts(state)   # [("ms-host1", {...}), ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metalserve.sandbox.demo import SandboxInputs, sandbox_cluster_data, sandbox_metalserve_data
from metalserve.sandbox.state import SandboxHostState, SandboxState


def clients(state: SandboxState) -> tuple[str, ...]:
    """The sandbox's one client network: the controller namespace, where the demo asks."""
    return (f"{state.controller_ip}/32",)


def host_data(
    state: SandboxState,
    host: SandboxHostState,
    inputs: SandboxInputs | None = None,
    bundle: Path | None = None,
) -> dict[str, Any]:
    """Connection data (SSH through the controller namespace) plus the host's `metalserve` data;
    with ``bundle``, every input comes from that offline bundle."""
    return {
        "ssh_hostname": host.name,
        "ssh_user": state.ssh_user,
        "ssh_key": str(state.ssh_key),
        "ssh_config_file": str(state.ssh_config),
        "ssh_known_hosts_file": str(state.ssh_known_hosts),
        "ssh_strict_host_key_checking": "yes",
        # Absent until the demo inputs are prepared (`metalserve demo`); the plan then says so.
        **(
            {"metalserve": sandbox_metalserve_data(state.apt_url, inputs, clients(state), bundle)}
            if inputs
            else {}
        ),
        # Kept beside, not inside, `metalserve`: the core validates that block strictly.
        "sandbox": {
            "ip": host.ip,
            "apt_url": state.apt_url,
            "http_base_url": state.http_base_url,
            "served": dict(state.served),
            "peers": [h.ip for h in state.hosts],
        },
    }


def inventory_hosts(
    state: SandboxState, inputs: SandboxInputs | None = None, bundle: Path | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """pyinfra inventory entries, one `(name, data)` per sandbox host (every input from
    ``bundle`` when given)."""
    return [(h.name, host_data(state, h, inputs, bundle)) for h in state.hosts]


def cluster_inventory_hosts(
    state: SandboxState, inputs: SandboxInputs | None
) -> list[tuple[str, dict[str, Any]]]:
    """The sandbox hosts as one llama.cpp RPC cluster: the first is the head (rank 0)."""
    entries = []
    for rank, h in enumerate(state.hosts):
        data = host_data(state, h)
        if inputs is not None:
            data["metalserve"] = sandbox_cluster_data(
                state.apt_url, inputs, clients(state), len(state.hosts), rank, h.ip
            )
        entries.append((h.name, data))
    return entries
