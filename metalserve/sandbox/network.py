"""The sandbox's private network: a controller namespace with a bridge, one namespace per host.

Nothing is added to the root network namespace: no veth, no route, no address. The controller
namespace has no uplink, so hosts reach each other and the controller and nothing else.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from pathlib import Path

from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.layout import HostSlot, SandboxLayout
from metalserve.sandbox.system import run

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_FIX = "run `metalserve sandbox down`, then `metalserve sandbox up` again"


def _ip(*args: str, what: str) -> None:
    run(["ip", *args], what=what, fix=_FIX, timeout=30)


def list_netns() -> list[str]:
    """Names of the named network namespaces on this machine."""
    out = run(["ip", "netns", "list"], what="list network namespaces", fix=_FIX).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create_controller(layout: SandboxLayout) -> None:
    """Controller namespace, loopback up, bridge carrying the controller address."""
    ns = layout.controller_netns
    _ip("netns", "add", ns, what=f"create network namespace {ns}")
    _ip("-n", ns, "link", "set", "lo", "up", what=f"bring up lo in {ns}")
    _ip(
        "-n",
        ns,
        "link",
        "add",
        layout.bridge,
        "type",
        "bridge",
        what=f"create bridge {layout.bridge}",
    )
    _ip(
        "-n", ns, "addr", "add", f"{layout.controller_ip}/{layout.network.prefixlen}",
        "dev", layout.bridge, what=f"address bridge {layout.bridge}",
    )  # fmt: skip
    _ip("-n", ns, "link", "set", layout.bridge, "up", what=f"bring up bridge {layout.bridge}")


def attach_host(layout: SandboxLayout, slot: HostSlot) -> None:
    """Host namespace with `eth0`, joined to the controller bridge by a veth pair; no default route."""
    ctl = layout.controller_netns
    _ip("netns", "add", slot.netns, what=f"create network namespace {slot.netns}")
    _ip("-n", slot.netns, "link", "set", "lo", "up", what=f"bring up lo in {slot.netns}")
    _ip(
        "-n", ctl, "link", "add", slot.veth, "type", "veth", "peer", "name", "eth0",
        "netns", slot.netns, what=f"create veth {slot.veth}",
    )  # fmt: skip
    _ip("-n", ctl, "link", "set", slot.veth, "master", layout.bridge, what=f"bridge {slot.veth}")
    _ip("-n", ctl, "link", "set", slot.veth, "up", what=f"bring up {slot.veth}")
    _ip(
        "-n", slot.netns, "addr", "add", f"{slot.ip}/{slot.prefixlen}", "dev", "eth0",
        what=f"address eth0 of {slot.name}",
    )  # fmt: skip
    _ip("-n", slot.netns, "link", "set", "eth0", "up", what=f"bring up eth0 of {slot.name}")


def netns_pids(ns: str) -> list[int]:
    """Processes living in network namespace `ns` (empty when it does not exist)."""
    proc = run(["ip", "netns", "pids", ns], what=f"list processes in {ns}", fix=_FIX, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def delete_netns(ns: str) -> None:
    """Delete a namespace; its veth ends and bridge go with it."""
    if (NETNS_DIR / ns).exists():
        _ip("netns", "del", ns, what=f"delete network namespace {ns}")


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _socket_in_netns(ns: str) -> socket.socket:
    """A TCP socket created inside `ns`; it keeps that namespace for its whole life.

    setns() moves only the calling thread, so the switch happens in a short-lived thread and the
    rest of the process stays where it was.
    """
    result: list[socket.socket | BaseException] = []

    def enter_and_create() -> None:
        try:
            with open(NETNS_DIR / ns) as target:
                _setns(target.fileno())
            result.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as err:  # handed back to the caller's thread
            result.append(err)

    worker = threading.Thread(target=enter_and_create, name=f"netns-{ns}")
    worker.start()
    worker.join()
    made = result[0]
    if isinstance(made, BaseException):
        raise SandboxError(
            f"enter network namespace {ns}: expected it to exist; found {made} — fix: {_FIX}"
        )
    return made


def connect_in_netns(ns: str, ip: str, port: int, timeout: float = 2.0) -> socket.socket:
    """Open a TCP connection to `ip:port` as seen from inside namespace `ns`.

    Example::

        with connect_in_netns("ms-ctl", "10.77.0.11", 22) as sock:
            assert sock.recv(4).startswith(b"SSH-")
    """
    sock = _socket_in_netns(ns)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
    except OSError:
        sock.close()
        raise
    return sock
