"""pyinfra host data for sandbox hosts: the one place that builds it.

Example (what `inventories/sandbox.py` does)::

    state = load_state(default_layout().state_file)
    sandbox = inventory_hosts(state)   # [("ms-host1", {...}), ...]
"""

from __future__ import annotations

import copy
from typing import Any

from metalserve.sandbox.state import SandboxHostState, SandboxState

# The `metalserve` block the core validates into a HostSpec; the lead finalises its keys.
SANDBOX_METALSERVE_DATA: dict[str, Any] = {"profile": "sandbox-cpu", "engine": {"name": "llamacpp"}}


def host_data(state: SandboxState, host: SandboxHostState) -> dict[str, Any]:
    """Connection data (SSH through the controller namespace) plus the host's `metalserve` data."""
    return {
        "ssh_hostname": host.name,
        "ssh_user": state.ssh_user,
        "ssh_key": str(state.ssh_key),
        "ssh_config_file": str(state.ssh_config),
        "ssh_known_hosts_file": str(state.ssh_known_hosts),
        "ssh_strict_host_key_checking": "yes",
        "metalserve": {
            **copy.deepcopy(SANDBOX_METALSERVE_DATA),
            # The local flat repository is the hosts' only package source, as on an air-gapped site.
            "sources": {"apt": {"kind": "mirror", "url": state.apt_url}},
        },
        # Kept beside, not inside, `metalserve`: the core validates that block strictly.
        "sandbox": {
            "ip": host.ip,
            "apt_url": state.apt_url,
            "http_base_url": state.http_base_url,
            "served": dict(state.served),
            "peers": [h.ip for h in state.hosts],
        },
    }


def inventory_hosts(state: SandboxState) -> list[tuple[str, dict[str, Any]]]:
    """pyinfra inventory entries, one `(name, data)` per sandbox host."""
    return [(h.name, host_data(state, h)) for h in state.hosts]
