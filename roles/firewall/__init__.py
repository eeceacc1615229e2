"""The node's nftables table (``table inet metalserve``): the serving port to the inventory's client
networks, the rendezvous port to the cluster's nodes; nothing else of the site's rules touched.

configure: the rules file (checked with ``nft -c`` before it replaces the old one) and a oneshot
unit that loads it at boot, before the engine. activate: loaded now when it changed or the table
is missing, so a second run changes nothing. SSH is never dropped (the plan keeps its port open).
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from metalserve.firewall import NFT_PATH, TABLE, UNIT
from metalserve.plan import HostPlan
from roles.base import record_changes, recorded_changes
from roles.firewall.facts import NftTableLoaded
from roles.nvidia_driver.common import file_matches

UNIT_PATH = f"/etc/systemd/system/{UNIT}.service"
CHANGES = "firewall"


def unit_text() -> str:
    return (
        "# Written by metalserve; do not edit.\n"
        "[Unit]\n"
        "Description=metalserve nftables table (serving and rendezvous ports)\n"
        "DefaultDependencies=no\n"
        "Before=network-pre.target\n"
        "Wants=network-pre.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart=/usr/sbin/nft -f {NFT_PATH}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def load_command(path: str) -> str:
    """Check the file first; a file nft refuses never replaces the loaded table."""
    q = shlex.quote(path)
    return f"nft -c -f {q} && nft -f {q}"


@deploy("Firewall: configure")
def configure(plan: HostPlan) -> None:
    firewall = plan.firewall
    if firewall is None:
        return
    text = firewall.nft_text()
    if not file_matches(NFT_PATH, text):
        # written beside, checked, then moved: the file the boot unit loads is never one nft refuses
        staged = f"{NFT_PATH}.new"
        files.put(name=f"Stage {NFT_PATH}", src=StringIO(text), dest=staged, mode="600")
        record_changes(
            CHANGES,
            server.shell(
                name="Check and install the nftables rules",
                commands=[f"nft -c -f {staged} && mv {staged} {NFT_PATH}"],
            ),
        )
    if not file_matches(UNIT_PATH, unit_text()):
        record_changes(
            CHANGES,
            files.put(name=f"Unit {UNIT}", src=StringIO(unit_text()), dest=UNIT_PATH, mode="644"),
        )


@deploy("Firewall: activate")
def activate(plan: HostPlan) -> None:
    if plan.firewall is None:
        return
    changed = bool(recorded_changes(CHANGES))
    if changed or not host.get_fact(NftTableLoaded, table=TABLE):
        server.shell(name=f"Load table inet {TABLE}", commands=[load_command(NFT_PATH)])
    systemd.service(
        name=f"Enable {UNIT} at boot",
        service=f"{UNIT}.service",
        enabled=True,
        running=None,
        daemon_reload=changed,
    )
