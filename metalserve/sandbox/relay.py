"""A stdin/stdout <-> TCP relay, run as an SSH ProxyCommand inside the controller namespace.

The sandbox's ssh_config says, per host::

    ProxyCommand ip netns exec ms-ctl /usr/bin/python3 .../relay.py %h %p

so `ssh`, paramiko and pyinfra in the root namespace reach hosts on a subnet that exists only
inside the sandbox's namespaces. Standard library only: it runs as a plain script.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

CHUNK = 65536


def _pump_stdin(sock: socket.socket) -> None:
    while True:
        data = os.read(0, CHUNK)
        if not data:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(data)


def relay(host: str, port: int) -> int:
    """Copy stdin to the connection and the connection to stdout until the peer closes."""
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as err:
        print(f"relay: cannot connect to {host}:{port}: {err}", file=sys.stderr)
        return 1
    sock.settimeout(None)
    threading.Thread(target=_pump_stdin, args=(sock,), daemon=True).start()
    while True:
        data = sock.recv(CHUNK)
        if not data:
            return 0
        view = memoryview(data)
        while view:
            written = os.write(1, view)
            view = view[written:]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: relay.py HOST PORT", file=sys.stderr)
        sys.exit(2)
    sys.exit(relay(sys.argv[1], int(sys.argv[2])))
