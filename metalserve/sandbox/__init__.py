"""The sandbox: throwaway Debian 12 hosts booting real systemd, for deploying to over real SSH.

An edge package (it runs commands and writes files); the pure parts are `layout` and `recipe`.

Example::

    from metalserve.sandbox import up, down, status
    state = up(2)          # two hosts, a local apt repository, a file server
    print(status())
    down()
"""

from metalserve.sandbox.fileserver import serve_dir
from metalserve.sandbox.layout import SandboxLayout, default_layout
from metalserve.sandbox.lifecycle import down, status, up
from metalserve.sandbox.state import SandboxState, load_state

__all__ = [
    "SandboxLayout",
    "SandboxState",
    "default_layout",
    "down",
    "load_state",
    "serve_dir",
    "status",
    "up",
]
