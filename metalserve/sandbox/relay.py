"""A TCP forwarder from the control host's loopback into the sandbox's controller namespace.

Started by ``up``, one per host: it binds ``127.0.0.1:PORT`` in the root namespace, then moves
itself into the controller namespace (``setns``), so every connection it accepts is carried to the
host's sshd on the private subnet. ssh, paramiko and pyinfra then reach ``127.0.0.1:PORT`` with no
ProxyCommand: paramiko's ProxyCommand drops bytes on the non-blocking pipes of pyinfra's gevent
(partial writes, then "Corrupted MAC on input" in sshd on large uploads). The subnet itself still
exists only inside the sandbox's namespaces. Standard library only: it runs as a plain script.

    relay.py --netns /run/netns/ms-ctl --listen 27701 --to 10.77.0.11:22
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import socket
import sys
import threading

CHUNK = 65536
CLONE_NEWNET = 0x40000000


def enter_netns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def _serve(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError as err:
        print(f"relay: cannot reach {target[0]}:{target[1]}: {err}", file=sys.stderr, flush=True)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--netns", required=True, help="path of the namespace to enter")
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--to", required=True, help="HOST:PORT inside the namespace")
    args = parser.parse_args(argv)
    host, port = args.to.rsplit(":", 1)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.listen))  # in the root namespace: created before setns
    listener.listen(64)
    enter_netns(args.netns)
    print(f"relay: 127.0.0.1:{args.listen} -> {args.to} in {args.netns}", flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve, args=(client, (host, int(port))), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
