"""Counting what a sandbox host sends out of the site, from the control host.

Each host gets, in its own network namespace, an nftables table of its own (``table inet
e2e_egress``; the deploy's firewall role replaces only ``table inet metalserve``) whose output chain
counts, with named counters:

* ``outside``: every packet to an address outside the sandbox subnet (loopback, link-local and
  multicast aside), then rejects it as unreachable, as the air gap would;
* ``dns``: every DNS query (port 53), wherever it goes: the site has no resolver, so a name lookup is
  an attempt to reach something by name outside it;
* ``site``: every new connection the host opens to another address of the site (the controller's
  file server, another host): a deploy from a bundle alone opens none.

The hosts of a sandbox have no route out, so the kernel refuses a connection to the outside before
any packet exists and nothing could count it. :func:`watch` therefore gives each host a default
route into the site (IPv4 via the controller, IPv6 on its link): an attempt then leaves a packet the
table counts, and goes nowhere (the controller namespace has no uplink and the table rejects it).

Example::

    watch(state)                        # routes and tables on every host
    before = {h.name: read(h.netns) for h in state.hosts}
    ...                                 # the deploy
    read("mz-host1") - before["mz-host1"]
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass

from metalserve.sandbox.machines import ssh_run
from metalserve.sandbox.state import SandboxState

TABLE = "e2e_egress"
COUNTERS = ("outside", "dns", "site")
OUTSIDE_V4 = ("192.0.2.1", 80)
OUTSIDE_V6 = ("2001:db8::1", 80)
"""Documentation addresses (RFC 5737 TEST-NET-1, RFC 3849): outside every site, routed nowhere."""
OUTSIDE_NAME = "deb.debian.org"


@dataclass(frozen=True)
class Counts:
    outside: int
    dns: int
    site: int

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.outside - other.outside, self.dns - other.dns, self.site - other.site)


def ruleset(subnet: str) -> str:
    """The table ``nft -f`` loads in a host's namespace (priority -150: after conntrack's -200,
    so ``ct state`` is known, and before the filter chains)."""
    counters = "".join(f"\tcounter {name} {{ }}\n" for name in COUNTERS)
    return (
        f"table inet {TABLE}\ndelete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n{counters}"
        "\tchain output {\n"
        "\t\ttype filter hook output priority -150; policy accept;\n"
        '\t\tmeta l4proto { tcp, udp } th dport 53 counter name "dns"\n'
        '\t\toifname "lo" accept\n'
        f'\t\tip daddr {subnet} ct state new counter name "site" accept\n'
        f"\t\tip daddr {subnet} accept\n"
        '\t\tip6 daddr fe80::/10 ct state new counter name "site" accept\n'
        "\t\tip6 daddr { fe80::/10, ff00::/8 } accept\n"
        '\t\tcounter name "outside" reject with icmpx type host-unreachable\n'
        "\t}\n}\n"
    )


def _in_netns(netns: str, argv: list[str], stdin: str | None = None) -> str:
    run = subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if run.returncode != 0:
        raise AssertionError(f"{netns}: {shlex.join(argv)}: {run.stderr.strip() or run.returncode}")
    return run.stdout


def watch(state: SandboxState) -> None:
    """A default route into the site and the counting table, in every host's namespace."""
    for host in state.hosts:
        _in_netns(host.netns, ["ip", "route", "replace", "default", "via", state.controller_ip])
        _in_netns(host.netns, ["ip", "-6", "route", "replace", "default", "dev", "eth0"])
        _in_netns(host.netns, ["nft", "-f", "-"], stdin=ruleset(state.subnet))


def read(netns: str) -> Counts:
    """The counters of ``netns``; fails when the table is gone (something flushed it)."""
    listing = json.loads(
        _in_netns(netns, ["nft", "-j", "list", "counters", "table", "inet", TABLE])
    )
    found = {
        item["counter"]["name"]: int(item["counter"]["packets"])
        for item in listing["nftables"]
        if "counter" in item
    }
    return Counts(**{name: found[name] for name in COUNTERS})


def probe(state: SandboxState, name: str, port: int) -> None:
    """From inside host ``name``: a connection to the outside over IPv4 and IPv6, a name lookup,
    and a connection to the controller's ``port`` — one of each thing the counters count."""
    script = (
        "import socket\n"
        f"for family, address in ((socket.AF_INET, {OUTSIDE_V4!r}), "
        f"(socket.AF_INET6, {OUTSIDE_V6!r}), (socket.AF_INET, ({state.controller_ip!r}, {port}))):\n"
        "    s = socket.socket(family)\n"
        "    s.settimeout(5)\n"
        "    try:\n"
        "        s.connect(address)\n"
        "    except OSError:\n"
        "        pass\n"
        "    s.close()\n"
        "try:\n"
        f"    socket.getaddrinfo({OUTSIDE_NAME!r}, 80)\n"
        "except OSError:\n"
        "    pass\n"
    )
    run = ssh_run(state.ssh_config, name, f"python3 -c {shlex.quote(script)}", timeout=60)
    assert run.returncode == 0, f"{name}: the probe exited {run.returncode}: {run.stderr.strip()}"
