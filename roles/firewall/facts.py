"""Facts about the node's nftables state."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class NftTableLoaded(FactBase[bool]):
    """Whether ``table inet TABLE`` is loaded (nft list fails for a missing table).

    Example::

        host.get_fact(NftTableLoaded, table="metalserve")  # True
    """

    def command(self, table: str) -> str:
        return f"nft list table inet {shlex.quote(table)} >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return "".join(output).strip() == "yes"
