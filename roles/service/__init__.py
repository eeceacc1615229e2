"""The engine service: rendered units, start, health.

configure the rendered env file and units (the user, directories and credentials are
          ``roles.layout``'s, which runs first)
activate  daemon-reload and start/enable; restart only when a file changed; wait for /health
          (bounded) and ask for one completion — skipped when nothing changed and /health is 200,
          so a second deploy changes nothing.
"""

from __future__ import annotations

import json
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from metalserve.io.templating import render
from metalserve.plan import API_KEY_HEADER_CREDENTIAL, HostPlan
from roles.base import SERVICE_INPUTS, RoleError, record_changes, recorded_changes
from roles.service.facts import (
    HttpStatus,
    UnitActiveSince,
    UnreachableEndpoints,
    reach_command,
)


def require_unsourced(plan: HostPlan) -> None:
    """Files the unit reads that no step provides must be on the host before the unit is written."""
    for path, why in plan.service.unsourced:
        if not host.get_fact(File, path=path):
            raise RoleError(f"host {host.name}: expected {path} on the host, found none: {why}")


@deploy("Service: configure")
def configure(plan: HostPlan) -> None:
    require_unsourced(plan)
    for rendered in render(plan):
        record_changes(
            SERVICE_INPUTS,
            files.put(
                name=f"Render {rendered.path}",
                src=StringIO(rendered.content),
                dest=rendered.path,
                mode=rendered.mode,
                user=rendered.owner,
                group=rendered.owner,
            ),
        )


JOURNAL_LINES = 20
JOURNAL_CHARS = 2000
"""How much of the unit's journal a failed health wait quotes: the last lines, on one line."""


def journal_tail_command(unit: str) -> str:
    """The unit's last journal lines, control characters dropped, joined with `` | `` on one line
    and cut to the last ``JOURNAL_CHARS`` characters."""
    join = """awk 'NR > 1 { printf " | " } { printf "%s", $0 }'"""
    return (
        f"journalctl -u {shlex.quote(unit)} -n {JOURNAL_LINES} --no-pager -o cat 2>/dev/null | "
        rf"tr -d '\000-\010\013-\037\177' | {join} | tail -c {JOURNAL_CHARS}"
    )


def wait_for_health_command(url: str, timeout_s: int, unit: str) -> str:
    """Poll /health every 2 s while watching ``unit``: answer 200 → done; the unit failed, stopped,
    or restarted since the wait began (systemd's ``NRestarts``, counted per automatic restart) →
    stop at once with one line quoting its last journal lines; otherwise, on timeout, one line
    saying what was expected and what was found. A crash loop fails within one restart interval
    (the unit's ``RestartSec=``), not after ``timeout_s``."""
    q, u = shlex.quote(url), shlex.quote(unit)
    restarts = (
        f"n=$(systemctl show -p NRestarts --value {u} 2>/dev/null); n=${{n%%[!0-9]*}}; "
        "echo ${n:-0}"
    )
    return (
        f"deadline=$(( $(date +%s) + {timeout_s} )); code=000; before=$({restarts}); "
        f"while [ $(date +%s) -lt $deadline ]; do "
        f"code=$(curl --silent --output /dev/null --max-time 5 --write-out '%{{http_code}}' {q}); "
        f'[ "$code" = 200 ] && exit 0; '
        f"state=$(systemctl show -p ActiveState --value {u} 2>/dev/null); now=$({restarts}); "
        f'if [ "$state" = failed ] || [ "$state" = inactive ] || [ "$now" -gt "$before" ]; then '
        f"journal=$({journal_tail_command(unit)}); "
        f"printf '%s\\n' \"health: expected {unit} to answer 200 at {url}, found it $state after "
        f"$((now - before)) restart(s) while waiting — last journal lines: $journal — fix: correct "
        f'the cause (journalctl -u {unit}), then run the deploy again" >&2; exit 1; fi; '
        "sleep 2; done; "
        f'echo "health: expected 200 from {url} within {timeout_s}s, last answer $code" >&2; exit 1'
    )


def smoke_completion_command(plan: HostPlan) -> str:
    """One short completion; prints the text, fails with one line if none comes back."""
    service = plan.service
    body = json.dumps(
        {"model": service.served_model, "prompt": "Hello", "max_tokens": 8, "temperature": 0}
    )
    auth = ""
    header = next((c for c in plan.credentials if c.name == API_KEY_HEADER_CREDENTIAL), None)
    if header is not None:
        auth = f"-H @{header.host_path} "
    parse = (
        "import json,sys; r=json.load(sys.stdin); t=r['choices'][0]['text']; "
        "print('completion: ' + repr(t))"
    )
    return (
        f"curl --silent --show-error --fail --max-time 120 {auth}"
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)} "
        f"{shlex.quote(str(service.completion_url))} | python3 -c {shlex.quote(parse)}"
    )


def wait_for_workers_command(endpoints: tuple[str, ...], timeout_s: int) -> str:
    """On the head: every worker's port accepts a connection within ``timeout_s``; otherwise one
    line naming the workers that do not."""
    loop = " && ".join(reach_command(e) for e in endpoints)
    names = ", ".join(endpoints)
    return (
        f"deadline=$(( $(date +%s) + {timeout_s} )); "
        f"until {loop} 2>/dev/null; do "
        f'[ $(date +%s) -ge $deadline ] && {{ echo "cluster health: expected every worker '
        f"({names}) to accept connections from the head within {timeout_s}s; not all do — fix: "
        f'systemctl status on each worker, then run the deploy again" >&2; exit 1; }}; '
        "sleep 1; done"
    )


WORKER_WAIT_S = 120
"""How long the head waits for its workers' ports before it starts (the workers started first)."""


def _start(unit: str, changed: list) -> None:
    """Start and enable ``unit``; restart it when its files changed and it was already running."""
    start = systemd.service(
        name=f"Start and enable {unit}", service=unit, running=True, enabled=True
    )
    systemd.service(
        name=f"Restart {unit} for its new configuration",
        service=unit,
        running=True,
        restarted=True,
        _if=[any_changed(*changed), start.did_not_change],
    )


def _a_worker_restarts(plan: HostPlan, unit: str) -> bool:
    """Whether a running head must restart after the workers: a worker that is down now is
    started by this run, and one that became active after the head left the head holding a dead
    connection (llama-server aborts on its next request: ggml-rpc.cpp 'Remote RPC server
    crashed')."""
    if not plan.service.worker_hosts:
        return False
    head_since = host.get_fact(UnitActiveSince, unit=unit)
    if not head_since:
        return False
    for name in plan.service.worker_hosts:
        worker_since = host.inventory.get_host(name).get_fact(UnitActiveSince, unit=unit)
        if not worker_since or worker_since > head_since:
            return True
    return False


@deploy("Service: activate")
def activate(plan: HostPlan) -> None:
    service = plan.service
    unit = f"{service.name}.service"
    changed = recorded_changes(SERVICE_INPUTS)
    reload = systemd.daemon_reload(name="Reload systemd units", _if=any_changed(*changed))
    # pyinfra runs each operation on every host before the next one: the workers' start below
    # comes before the head's wait and start, so a cluster starts workers first, then its head.
    if not plan.engine.head:
        _start(unit, changed)
    if plan.engine.head and service.workers:
        down = host.get_fact(UnreachableEndpoints, endpoints=service.workers)
        if down:
            server.shell(
                name=f"Wait for the workers ({', '.join(down)})",
                commands=[wait_for_workers_command(tuple(down), WORKER_WAIT_S)],
            )
    if plan.engine.head:
        _start(unit, changed)
    if plan.engine.head and _a_worker_restarts(plan, unit):
        changed.append(
            systemd.service(
                name=f"Restart {unit}: a worker (re)started, and llama.cpp's RPC client does not "
                "reconnect",
                service=unit,
                running=True,
                restarted=True,
            )
        )
    if service.keep_warm_minutes and service.health_url:
        systemd.service(
            name="Keep-warm timer",
            service=f"{plan.layout.keepwarm_service}.timer",
            running=True,
            enabled=True,
        )
    if service.health_url is None:
        return  # a worker: the head serves and is checked
    # Healthy before this run: check again only if this run changed something. Otherwise always.
    healthy = host.get_fact(HttpStatus, url=service.health_url) == 200
    when = [any_changed(reload, *changed)] if healthy else []
    server.shell(
        name=f"Wait for {service.health_url}",
        commands=[wait_for_health_command(service.health_url, service.health_timeout_s, unit)],
        _if=when,
    )
    server.shell(name="Smoke completion", commands=[smoke_completion_command(plan)], _if=when)


@deploy("Service: cluster health")
def check_health(plan: HostPlan) -> None:
    """Read-only: on the head, every worker reachable, /health 200 and one completion; a failure
    is one line naming what is down."""
    service = plan.service
    if service.health_url is None:
        return
    if service.workers:
        server.shell(
            name="Workers reachable from the head",
            commands=[wait_for_workers_command(service.workers, 5)],
        )
    server.shell(
        name=f"Health {service.health_url}",
        commands=[wait_for_health_command(service.health_url, 10, f"{service.name}.service")],
    )
    server.shell(name="Smoke completion", commands=[smoke_completion_command(plan)])
