"""Facts only preflight reads: GPU persistence mode, the space of a filesystem path, the network
interfaces, the newest kernel's modules, PCI ACS, and a listening port.

Each is a command plus a pure ``process()``, tested on recorded outputs in
``tests/fixtures/facts/preflight.*``.
"""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api import FactBase

from metalserve.errors import ParseError
from metalserve.hardware import Frozen
from metalserve.preflight import DiskSpace, NetInterface, RocePfc


def parse_persistence(output: list[str]) -> dict[str, bool]:
    """Parse ``nvidia-smi --query-gpu=pci.bus_id,persistence_mode --format=csv,noheader``
    (``00000000:18:00.0, Enabled``); lines that are not such a pair (nvidia-smi failing) are left
    to the driver checks.

    Example::

        >>> parse_persistence(["00000000:18:00.0, Enabled", "00000000:2A:00.0, Disabled"])
        {'00000000:18:00.0': True, '00000000:2a:00.0': False}
    """
    modes: dict[str, bool] = {}
    for line in output:
        # one line at a time: a stray quote or line break in one line spoils only that line
        bus_id, comma, mode = line.strip().partition(",")
        if comma and mode.strip() in ("Enabled", "Disabled") and "\n" not in bus_id:
            modes[bus_id.strip().lower()] = mode.strip() == "Enabled"
    return modes


class NvidiaPersistenceMode(FactBase[dict[str, bool]]):
    """Persistence mode per GPU (bus id -> on); empty without a GPU or a working nvidia-smi."""

    default = dict

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "nvidia-smi"

    def command(self) -> str:
        return (
            "nvidia-smi --query-gpu=pci.bus_id,persistence_mode --format=csv,noheader "
            "2>/dev/null || true"
        )

    def process(self, output: list[str]) -> dict[str, bool]:
        return parse_persistence(output)


def parse_path_space(output: list[str]) -> DiskSpace | None:
    """Parse ``path <path>``, then ``df -B1 --output=avail,size`` (a header line, then ``<avail>
    <size>``) and an optional ``used <bytes>`` line from ``du -sxB1``; ``None`` when df printed
    nothing (the path's filesystem cannot be read).

    Example::

        >>> parse_path_space(["path /dev/shm", "      Avail    1B-blocks",
        ...                   "25276510208  25276510208"]).size_bytes
        25276510208
    """
    path = ""
    avail_size: tuple[int, int] | None = None
    used_bytes: int | None = None
    header = ""
    for raw in output:
        key, _, rest = raw.strip().partition(" ")
        if key == "path":
            path = rest.strip()
        elif key == "used":
            used_bytes = int(rest) if rest.strip().isdigit() else None
        elif key.isdigit() and rest.strip().isdigit() and avail_size is None:
            avail_size = (int(key), int(rest))
        elif raw.strip():
            header = raw.strip()
    if avail_size is None:
        if header and header.split()[0] != "Avail":
            raise ParseError(
                f"df {path}: expected '<avail> <size>' in bytes, found {header!r} — "
                "fix: check that df is GNU coreutils (df --output)"
            )
        return None
    return DiskSpace(
        path=path, avail_bytes=avail_size[0], size_bytes=avail_size[1], used_bytes=used_bytes
    )


class PathSpace(FactBase[DiskSpace | None]):
    """Free and total bytes of the filesystem that holds ``path`` (its nearest existing parent
    where it does not exist yet) and, where it exists, the bytes already under it."""

    def command(self, path: str) -> str:
        q = shlex.quote(path)
        return (
            f'echo "path "{q}; p={q}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
            'df -B1 --output=avail,size "$p" 2>/dev/null || true; '
            f'if [ -e {q} ]; then echo "used $(du -sxB1 {q} 2>/dev/null | cut -f1)"; fi'
        )

    def process(self, output: list[str]) -> DiskSpace | None:
        return parse_path_space(output)


def parse_interfaces(output: list[str]) -> tuple[NetInterface, ...]:
    """Parse ``ip -o link show`` (``2: eth0@if5: <BROADCAST,…> mtu 9000 qdisc …``) and ``ip -o
    addr show`` (``2: eth0    inet 10.0.0.2/24 brd … scope global eth0``); ``eth0@if5`` (a veth
    named with its peer) is ``eth0``. Both come over netlink, from the host's own network
    namespace (``/sys/class/net`` shows the namespace sysfs was mounted in, which in a container
    may be another's).

    Example::

        >>> parse_interfaces(["2: eth0@if5: <UP> mtu 9000 qdisc noqueue state UP",
        ...                   "2: eth0    inet 10.0.0.2/24 scope global eth0"])
        (NetInterface(name='eth0', mtu=9000, addresses=('10.0.0.2',)),)
    """
    addresses: dict[str, list[str]] = {}
    mtus: dict[str, int] = {}
    for line in output:
        words = line.split()
        if len(words) < 4 or not words[0].rstrip(":").isdigit():
            continue
        name = words[1].rstrip(":").split("@", 1)[0]
        if words[2] in ("inet", "inet6"):
            addresses.setdefault(name, []).append(words[3].split("/", 1)[0])
        elif "mtu" in words[:-1] and words[words.index("mtu") + 1].isdigit():
            mtus[name] = int(words[words.index("mtu") + 1])
    names = dict.fromkeys([*mtus, *addresses])
    return tuple(
        NetInterface(name=n, mtu=mtus.get(n), addresses=tuple(addresses.get(n, ()))) for n in names
    )


class NetInterfaces(FactBase[tuple[NetInterface, ...]]):
    """Every network interface with its addresses and MTU."""

    default = tuple

    def command(self) -> str:
        return "ip -o link show 2>/dev/null; ip -o addr show 2>/dev/null; true"

    def process(self, output: list[str]) -> tuple[NetInterface, ...]:
        return parse_interfaces(output)


class NewestKernel(Frozen):
    release: str | None
    modules: tuple[str, ...] = ()


def parse_newest_kernel(output: list[str]) -> NewestKernel:
    """Parse ``newest <release>`` and ``module <file>`` lines.

    Example::

        >>> parse_newest_kernel(["newest 6.8.0-60-generic", "module nvidia.ko.zst"])
        NewestKernel(release='6.8.0-60-generic', modules=('nvidia.ko.zst',))
    """
    release = None
    modules: list[str] = []
    for line in output:
        key, _, value = line.strip().partition(" ")
        if key == "newest" and value.strip():
            release = value.strip()
        elif key == "module" and value.strip():
            modules.append(value.strip())
    return NewestKernel(release=release, modules=tuple(sorted(modules)))


class NewestKernelModules(FactBase[NewestKernel]):
    """The newest kernel under /lib/modules (the one the next boot takes by default) and the
    nvidia*.ko files built for it (by DKMS or a precompiled package)."""

    def command(self) -> str:
        return (
            "k=$(ls -1 /lib/modules 2>/dev/null | sort -V | tail -n 1); "
            'echo "newest $k"; '
            'if [ -n "$k" ]; then find "/lib/modules/$k" -name \'nvidia*.ko*\' '
            "-printf 'module %f\\n' 2>/dev/null; fi; true"
        )

    def process(self, output: list[str]) -> NewestKernel:
        return parse_newest_kernel(output)


ACS_UNREADABLE = "unavailable"


def parse_acs(output: list[str]) -> tuple[str, ...] | None:
    """Parse ``<bdf> ACSCtl: SrcValid+ TransBlk- …`` lines (``lspci -vvv`` as root, each ACSCtl
    line prefixed with its device); the devices with source validation on. ``None`` when lspci
    could not be run.

    Example::

        >>> parse_acs(["0000:00:01.0 ACSCtl: SrcValid+ TransBlk- ReqRedir+ CmpltRedir+",
        ...            "0000:00:03.0 ACSCtl: SrcValid- TransBlk- ReqRedir- CmpltRedir-"])
        ('0000:00:01.0',)
    """
    if any(line.strip() == ACS_UNREADABLE for line in output):
        return None
    on = []
    for line in output:
        device, _, rest = line.strip().partition(" ")
        if "ACSCtl:" in rest and "SrcValid+" in rest.split():
            on.append(device)
    return tuple(on)


class PciAcs(FactBase[tuple[str, ...] | None]):
    """PCI devices with ACS source validation on (NCCL's troubleshooting guide: ``lspci -vvv |
    grep ACSCtl``); ``None`` without lspci."""

    def command(self) -> str:
        return (
            f"command -v lspci >/dev/null || {{ echo {ACS_UNREADABLE}; exit 0; }}; "
            "lspci -D -vvv 2>/dev/null | "
            "awk '/^[0-9a-f]/{dev=$1} /ACSCtl:/{$1=$1; print dev, $0}'"
        )

    def process(self, output: list[str]) -> tuple[str, ...] | None:
        return parse_acs(output)


class PortListening(FactBase[bool]):
    """Whether something listens on TCP ``port`` (``ss -Hltn``)."""

    default = bool

    def command(self, port: int) -> str:
        return f"ss -Hltn 'sport = :{int(port)}' 2>/dev/null || true"

    def process(self, output: list[str]) -> bool:
        return any(line.strip() for line in output)


PROBE_TIMEOUT_S = 3


def probe_command(peers: tuple[tuple[str, str], ...], port: int) -> str:
    """One line per peer: ``<host> ok``, or ``<host> <why>`` (bash's connect error, or a
    timeout), each connect bounded by :data:`PROBE_TIMEOUT_S`."""
    q = shlex.quote
    lines = []
    silent = f"timed out after {PROBE_TIMEOUT_S} s"
    for name, address in peers:
        connect = q(f"exec 3<>/dev/tcp/{address}/{int(port)}")
        # A live connection to the peer's port already proves it, and a new one would queue
        # behind it: llama.cpp's rpc-server serves one client at a time with a backlog of 1
        # (ggml/src/ggml-rpc/transport.cpp at 0c1e57098: listen(sockfd, 1)), so a probe's connection fills its accept queue.
        live = f"ss -Htn state established dst {q(address)} dport = :{int(port)}"
        lines.append(
            f"if {live} 2>/dev/null | grep -q .; then echo {q(name)} ok; "
            f"elif out=$(timeout {PROBE_TIMEOUT_S} bash -c {connect} 2>&1); then echo {q(name)} ok; "
            # bash's first line says why ("bash: connect: Connection refused", "bash: line 1:
            # x: Name or service not known"); timeout kills it silently. POSIX sh: pyinfra's shell.
            f"else why=$(printf '%s\\n' \"$out\" | head -n 1 | sed 's/^bash: //; s/^line [0-9]*: //'); "
            f'echo {q(name)} "${{why:-{silent}}}"; fi'
        )
    return "; ".join(lines) + "; true"


def peers_argument(peers: tuple[tuple[str, str], ...]) -> str:
    """``host=address,...``: the peers as one fact argument (facts are keyed by their arguments)."""
    return ",".join(f"{name}={address}" for name, address in peers)


def _peers_of(argument: str) -> tuple[tuple[str, str], ...]:
    pairs = (item.partition("=") for item in argument.split(",") if item)
    return tuple((name, address) for name, _, address in pairs)


class PeerPorts(FactBase[dict[str, str]]):
    """From this host, a TCP connect to each peer's ``port``: peer -> "ok" or why not."""

    def command(self, peers: str, port: int) -> str:
        return probe_command(_peers_of(peers), port)

    def process(self, output: list[str]) -> dict[str, str]:
        # the hosts are the command's own; a line that names another host is not ours
        return parse_port_probes(
            output, tuple(dict.fromkeys(line.split(" ", 1)[0] for line in output))
        )


class ClockNow(FactBase[float | None]):
    """This host's clock, in seconds since the epoch (``date +%s.%N``)."""

    def command(self) -> str:
        return "date +%s.%N"

    def process(self, output: list[str]) -> float | None:
        try:
            return float(output[0]) if output else None
        except ValueError:
            return None


def parse_port_probes(output: list[str], hosts: tuple[str, ...]) -> dict[str, str]:
    """Parse ``<host> ok`` / ``<host> <error>`` lines of the peers' probe; a host with no line
    (the probe cut short) is "no answer".

    Example::

        >>> parse_port_probes(["h2 ok", "h3 Connection refused"], ("h2", "h3", "h4"))
        {'h2': 'ok', 'h3': 'Connection refused', 'h4': 'no answer'}
    """
    found: dict[str, str] = {}
    for line in output:
        name, _, outcome = line.strip().partition(" ")
        if name in hosts and name not in found:
            found[name] = outcome.strip() or "no answer"
    return {h: found.get(h, "no answer") for h in hosts}


def parse_roce_pfc(output: list[str]) -> tuple[RocePfc, ...]:
    """Parse, per netdev, ``netdev <name>`` then ``dcb pfc show dev <name> prio-pfc`` (``prio-pfc
    0:off 1:off 2:off 3:on …``, dcb-pfc(8)) and ``dcb -N app show dev <name> dscp-prio``
    (``dscp-prio 26:3 48:6``, dcb-app(8), numeric); a netdev whose PFC could not be read has
    ``pfc_on`` None.

    Example::

        >>> parse_roce_pfc(["netdev ens1f0np0", "prio-pfc 0:off 1:off 2:off 3:on 4:off 5:off "
        ...                 "6:off 7:off", "dscp-prio 26:3"])[0].pfc_on
        (3,)
    """
    found: list[RocePfc] = []
    for line in output:
        key, _, rest = line.strip().partition(" ")
        if key == "netdev" and rest.strip():
            found.append(RocePfc(netdev=rest.strip(), pfc_on=None))
        elif found and key in ("prio-pfc", "pg-pfc"):
            pairs = [item.partition(":") for item in rest.split()]
            on = tuple(int(p) for p, _, state in pairs if p.isdigit() and state == "on")
            found[-1] = found[-1].model_copy(update={"pfc_on": on})
        elif found and key == "dscp-prio":
            pairs = [item.partition(":") for item in rest.split()]
            mapping = {int(d): int(p) for d, _, p in pairs if d.isdigit() and p.isdigit()}
            found[-1] = found[-1].model_copy(update={"dscp_prio": mapping})
    return tuple(found)


class RocePfcSettings(FactBase[tuple[RocePfc, ...]]):
    """PFC priorities and the DSCP map of each given netdev (comma-separated)."""

    default = tuple

    def command(self, netdevs: str) -> str:
        lines = []
        for netdev in netdevs.split(","):
            q = shlex.quote(netdev)
            lines.append(
                f"echo netdev {q}; dcb pfc show dev {q} prio-pfc 2>/dev/null; "
                f"dcb -N app show dev {q} dscp-prio 2>/dev/null"
            )
        return "; ".join(lines) + "; true"

    def process(self, output: list[str]) -> tuple[RocePfc, ...]:
        return parse_roce_pfc(output)
