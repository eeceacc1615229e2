"""The controller's static file server: directories registered by name, served over HTTP to hosts.

`serve_dir(layout, "apt", repo)` makes `repo` appear at `http://<controller-ip>:<port>/apt/`.
The server runs in the controller namespace, so only sandbox hosts can reach it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.layout import SandboxLayout
from metalserve.sandbox.network import connect_in_netns
from metalserve.sandbox.procs import process_cmdline, start_daemon
from metalserve.sandbox.state import load_state, save_state

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def served_url(layout: SandboxLayout, name: str) -> str:
    return f"{layout.http_base_url}/{name}/"


def serve_dir(layout: SandboxLayout, name: str, path: Path) -> str:
    """Serve directory `path` at `/<name>/` and return that URL (recorded in the state when up).

    Example::

        url = serve_dir(default_layout(), "wheels", Path("/srv/wheelhouse"))
    """
    if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
        raise SandboxError(
            f"served directory name must be lowercase letters, digits, '-', '_' or '.'; found {name!r} "
            "— fix: pick a plain name such as 'wheels'"
        )
    if not path.is_dir():
        raise SandboxError(
            f"serve {name}: expected a directory at {path}; found none — fix: create it first"
        )
    layout.www_dir.mkdir(parents=True, exist_ok=True)
    link = layout.www_dir / name
    tmp = layout.www_dir / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(path.resolve(), target_is_directory=True)
    os.replace(tmp, link)
    url = served_url(layout, name)
    if layout.state_file.exists():
        state = load_state(layout.state_file)
        save_state(
            layout.state_file, state.model_copy(update={"served": {**state.served, name: url}})
        )
    return url


def start_server(layout: SandboxLayout, log: Path) -> int:
    """Start the server in the controller namespace; return its pid once it accepts connections."""
    layout.www_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "ip", "netns", "exec", layout.controller_netns,
        sys.executable, "-m", "http.server", str(layout.http_port),
        "--bind", layout.controller_ip, "--directory", str(layout.www_dir),
    ]  # fmt: skip

    def listening() -> bool:
        connect_in_netns(layout.controller_netns, layout.controller_ip, layout.http_port).close()
        return True

    return start_daemon(argv, log, f"file server at {layout.http_base_url}", listening)


def is_file_server(pid: int, layout: SandboxLayout) -> bool:
    """Whether `pid` is this layout's file server (guards against a reused pid)."""
    cmdline = process_cmdline(pid)
    return "http.server" in cmdline and str(layout.www_dir) in cmdline
