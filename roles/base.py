"""What every role shares: the current host's plan, and the phase order roles are run in.

Roles are cmdeploy-style: each concern (``roles/<concern>/``) exposes ``install``, ``configure`` and
``activate`` @deploy functions taking the plan. ``run_phases`` runs install on every role, then
configure on every role, then activate — so nothing is started before everything is configured.

Example (a deploy file)::

    from roles import base, llamacpp, units
    base.run_phases([llamacpp, units])
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, TypeVar, cast

from pyinfra import host, logger
from pyinfra.api.operation import OperationMeta

from metalserve.errors import MetalserveError
from metalserve.io.inventory import DATA_KEY, plan_host_data
from metalserve.plan import HostPlan

PHASES = ("install", "configure", "activate")
T = TypeVar("T")

_plans: dict[tuple[str, str], HostPlan] = {}


class RoleError(MetalserveError):
    """A host that failed a role's check: one line, expected vs found."""


def _inventory_data() -> dict[str, object]:
    """Every inventory host's metalserve data: a node is planned with its whole cluster."""
    data = {h.name: h.data.get(DATA_KEY) for h in host.inventory}
    return {name: d for name, d in data.items() if d is not None or name == host.name}


def current_plan() -> HostPlan:
    """The plan of the host pyinfra is working on, its cluster planned with it, once per
    inventory data."""
    data = _inventory_data()
    key = json.dumps(data, sort_keys=True, default=str)
    if (key, host.name) not in _plans:
        plans = plan_host_data(data)
        _plans.update({(key, p.host): p for p in plans})
    return _plans[(key, host.name)]


_runs: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def run_memo(kind: str, empty: Callable[[], T]) -> T:
    """What the roles remember for the current pyinfra run (its State, held weakly: an ``id()``
    could be reused by the next State of a test process), one value per ``kind``."""
    memo = _runs.setdefault(host.state, {})
    if kind not in memo:
        memo[kind] = empty()
    return cast(T, memo[kind])


def record_changes(topic: str, *ops: OperationMeta) -> None:
    """Remember operations whose change matters to a later role (e.g. a restart), per run and host."""
    changes = run_memo("changes", dict[tuple[str, str], list[OperationMeta]])
    changes.setdefault((host.name, topic), []).extend(ops)


def recorded_changes(topic: str) -> list[OperationMeta]:
    changes = run_memo("changes", dict[tuple[str, str], list[OperationMeta]])
    return list(changes.get((host.name, topic), []))


def say_once(message: str) -> None:
    """Log ``message`` for the current host once per run, however many phases or roles reach it."""
    said = run_memo("said", set[tuple[str, str]])
    if (host.name, message) not in said:
        said.add((host.name, message))
        host.log(message, log_func=logger.warning)


SERVICE_INPUTS = "service-inputs"
"""Files the engine service reads at start: a change means a restart."""


def run_phases(
    roles: Iterable[ModuleType],
    plan: HostPlan | None = None,
    phases: Iterable[str] = PHASES,
) -> None:
    """Run each phase across all ``roles`` in order; a role may leave a phase out."""
    plan = plan or current_plan()
    roles = list(roles)
    # pyinfra orders operations by the line numbers of their call stack, not by file: every role
    # is called from the same line below, so without host.loop two roles' operations at equal
    # line numbers would count as one, and hosts with different work would order them in a cycle.
    for phase in host.loop(tuple(phases)):
        for role in host.loop(roles):
            step = getattr(role, phase, None)
            if step is not None:
                step(plan)
