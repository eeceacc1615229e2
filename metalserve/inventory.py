"""Edge: load a pyinfra inventory file and plan every host in it, without connecting to any."""

from __future__ import annotations

from pathlib import Path

from metalserve.errors import MetalserveError, SpecError
from metalserve.modelfiles import checkpoint_for_spec
from metalserve.plan import HostPlan, build_plan
from metalserve.spec import DATA_KEY, host_spec


def load_hosts(path: str | Path) -> dict[str, dict]:
    """``{host name: its metalserve data}`` in inventory order, read with pyinfra's own loader."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory_from_files

    path = Path(path)
    if not path.is_file():
        raise MetalserveError(f"{path}: no such inventory file")
    try:
        # pyinfra's loader executes the file under a state context, as its CLI does
        with ctx_state.use(State(Inventory(([], {})), Config())):
            inventory = make_inventory_from_files(str(path))
    except MetalserveError:
        raise
    except Exception as exc:  # noqa: BLE001 - an inventory is user code; report it in one line
        raise MetalserveError(
            f"{path}: cannot load inventory: {type(exc).__name__}: {exc}"
        ) from None
    hosts = {h.name: h.data.get(DATA_KEY) for h in inventory}
    if not hosts:
        raise MetalserveError(f"{path}: the inventory defines no hosts")
    return hosts


def plan_host(name: str, data: object) -> HostPlan:
    spec = host_spec(name, data)
    return build_plan(spec, checkpoint_for_spec(spec))


def plan_inventory(path: str | Path, only: str | None = None) -> list[HostPlan]:
    hosts = load_hosts(path)
    if only is not None:
        if only not in hosts:
            raise SpecError(f"{path}: no host {only!r} (hosts: {', '.join(hosts)})")
        hosts = {only: hosts[only]}
    return [plan_host(name, data) for name, data in hosts.items()]
