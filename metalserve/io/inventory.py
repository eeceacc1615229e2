"""Edge: load a pyinfra inventory file and plan every host in it, without connecting to any."""

from __future__ import annotations

import runpy
from pathlib import Path

from metalserve.errors import MetalserveError, SpecError
from metalserve.io.modelfiles import checkpoint_for_spec
from metalserve.io.textfiles import INVENTORY_LIMIT, missing, regular_file_problem
from metalserve.plan import HostPlan, plan_hosts
from metalserve.spec import DATA_KEY, HostSpec, host_spec
from metalserve.types import printable, shown


def _is_host(item: object) -> bool:
    return isinstance(item, str) or (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], dict)
    )


def _group(value: object) -> tuple[list, dict] | None:
    """pyinfra's group forms: ``[hosts]`` or ``([hosts], group_data)``."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        hosts, data = value
    else:
        hosts, data = value, {}
    if isinstance(hosts, list | tuple) and hosts and all(_is_host(h) for h in hosts):
        return list(hosts), data
    return None


def load_hosts(path: str | Path) -> dict[str, object]:
    """``{host name: its metalserve data}`` in inventory order.

    Reads pyinfra's inventory-file format (module-level lists of ``"name"`` or ``("name", data)``,
    optionally ``(hosts, group_data)``; names starting with ``_`` are private) without importing
    pyinfra's CLI, which monkey-patches the process with gevent.
    """
    path = Path(path)
    if missing(path):
        raise MetalserveError(f"{printable(str(path))}: no such inventory file")
    found = regular_file_problem(path)
    if found is not None:  # a FIFO is named, never opened: reading it would wait for a writer
        raise MetalserveError(
            f"{printable(str(path))}: expected an inventory file, found {found} — fix: pass the "
            "pyinfra inventory (.py)"
        )
    if path.stat().st_size > INVENTORY_LIMIT:
        raise MetalserveError(
            f"{printable(str(path))}: expected an inventory of at most {INVENTORY_LIMIT >> 20} "
            "MiB, found a larger file — fix: pass the pyinfra inventory (.py)"
        )
    try:
        namespace = runpy.run_path(str(path))
    except SystemExit as exc:  # sys.exit() in an inventory must not end `check` with its code
        raise MetalserveError(
            f"{path}: the inventory exited (sys.exit({shown(exc.code)})) while loading — fix: "
            "define hosts without exiting"
        ) from None
    except Exception as exc:  # noqa: BLE001 - an inventory is user code; report it in one line
        raise MetalserveError(
            f"{path}: cannot load inventory: {type(exc).__name__}: {printable(str(exc))[:200]}"
        ) from None
    data: dict[str, dict] = {}
    for name, value in namespace.items():
        group = None if name.startswith("_") else _group(value)
        if group is None:
            continue
        hosts, group_data = group
        for host in hosts:
            host_name, host_data = (host, {}) if isinstance(host, str) else host
            merged = {**data.get(host_name, {}), **group_data, **host_data}
            data[host_name] = merged
    if not data:
        raise MetalserveError(f"{path}: the inventory defines no hosts")
    return {name: d.get(DATA_KEY) for name, d in data.items()}


def plan_host_data(data: dict[str, object]) -> list[HostPlan]:
    """Plans from pyinfra host data (``{host: its metalserve data}``), as a deploy reads it; a
    bundle the hosts deploy from is checked to hold what they need before any host is touched."""
    specs = [host_spec(name, d) for name, d in data.items()]
    plans = plan_specs(specs)
    check_bundles(specs, plans)
    return plans


def check_bundles(specs: list[HostSpec], plans: list[HostPlan]) -> None:
    """Each bundle named by ``sources.bundle`` holds every input its hosts' deploys take, at the
    pins they need, each file at its recorded size; else one line naming what is missing."""
    from metalserve.bundle.manifest import file_problems, read_manifest
    from metalserve.offline import bundle_needs, shortfall

    by_root: dict[str, list[tuple[HostPlan, HostSpec]]] = {}
    for plan, spec in zip(plans, specs, strict=True):
        if spec.sources.bundle:
            by_root.setdefault(spec.sources.bundle, []).append((plan, spec))
    for root, hosts in by_root.items():
        folder = Path(root).expanduser()
        manifest = read_manifest(folder)
        needs = bundle_needs([(plan, spec.os) for plan, spec in hosts])
        problems = shortfall(manifest, needs) + file_problems(
            folder, manifest, hashing=False, extras=False
        )
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise MetalserveError(
                f"bundle {printable(root)}: expected every input of {', '.join(p.host for p, _ in hosts)}, "
                f"found {'; '.join(problems[:3])}{more} — fix: metalserve bundle build INVENTORY "
                f"--out {printable(root)}, then metalserve bundle verify {printable(root)}"
            )


def plan_specs(specs: list[HostSpec]) -> list[HostPlan]:
    """Plans for these hosts, each cluster validated as a whole; models in local folders read."""
    return plan_hosts(specs, {spec.host: checkpoint_for_spec(spec) for spec in specs})


def plan_inventory(path: str | Path, only: str | None = None) -> list[HostPlan]:
    """Every host of the inventory planned together (a cluster needs all its nodes); ``only``
    keeps one host's plan."""
    hosts = load_hosts(path)
    if only is not None and only not in hosts:
        raise SpecError(f"{path}: no host {shown(only)} (hosts: {shown(', '.join(hosts))})")
    specs = [host_spec(name, data) for name, data in hosts.items()]
    plans = plan_specs(specs)
    check_bundles(specs, plans)
    return [p for p in plans if only is None or p.host == only]
