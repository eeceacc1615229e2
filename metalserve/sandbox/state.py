"""The sandbox state file: what `up` made, read by `status`, `down`, the inventory and the tests.

Written atomically (temp name, fsync, rename), so a reader never sees half a file.

Example::

    state = load_state(default_layout().state_file)
    print(state.hosts[0].ip, state.apt_url)
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from metalserve.sandbox.errors import SandboxError

STATE_VERSION = 1


class SandboxHostState(BaseModel):
    """One running sandbox host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    ip: str
    netns: str
    machine_dir: Path
    host_key_line: str


class SandboxState(BaseModel):
    """Everything a client of the sandbox needs to reach and use it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = STATE_VERSION
    prefix: str
    subnet: str
    controller_netns: str
    controller_ip: str
    hosts: tuple[SandboxHostState, ...]
    ssh_user: str = "root"
    ssh_key: Path
    ssh_known_hosts: Path
    ssh_config: Path
    http_base_url: str
    http_server_pid: int
    served: dict[str, str]
    apt_url: str
    ccache_dir: Path
    rootfs_tarball: Path

    def host(self, name: str) -> SandboxHostState:
        for h in self.hosts:
            if h.name == name:
                return h
        raise SandboxError(
            f"sandbox host {name!r} not found; found {', '.join(h.name for h in self.hosts)} "
            "— fix: use one of those names"
        )


def save_state(path: Path, state: SandboxState) -> None:
    """Write `state` to `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(state.model_dump_json(indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_state(path: Path) -> SandboxState:
    """Read the state file; a missing or foreign file is one operator line, not a traceback."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SandboxError(
            f"no sandbox is up: expected a state file at {path}; found none — fix: metalserve sandbox up"
        ) from None
    try:
        return SandboxState.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise SandboxError(
            f"sandbox state {path}: expected state version {STATE_VERSION}; found {where}: {first['msg']} "
            "— fix: metalserve sandbox down, then metalserve sandbox up"
        ) from None
