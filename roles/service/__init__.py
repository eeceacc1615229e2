"""The engine service: its user and directories, credentials, rendered units, start, health.

install   system user; data, model and credential directories
configure credentials (0600, from the control host's files), the rendered env file and units
activate  daemon-reload and start/enable; restart only when a file changed; wait for /health
          (bounded) and ask for one completion — skipped when nothing changed and /health is 200,
          so a second deploy changes nothing.
"""

from __future__ import annotations

import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from metalserve.plan import API_KEY_CREDENTIAL, HF_TOKEN_CREDENTIAL, HostPlan
from metalserve.templating import render
from roles.service.facts import HttpStatus

API_KEY_HEADER = "api_key_header"
"""A credential holding 'Authorization: Bearer …', so curl reads the key from a file (-H @file)."""

_changed: dict[str, list[OperationMeta]] = {}


def _credential_sources(plan: HostPlan) -> list[tuple[str, Path]]:
    secrets = plan.spec.secrets
    pairs = [
        (HF_TOKEN_CREDENTIAL, secrets.hf_token_file),
        (API_KEY_CREDENTIAL, secrets.api_key_file),
    ]
    return [(name, Path(local).expanduser()) for name, local in pairs if local]


@deploy("Service: install")
def install(plan: HostPlan) -> None:
    layout, user = plan.layout, plan.service.user
    server.user(
        name=f"System user {user}",
        user=user,
        system=True,
        home=layout.data,
        shell="/usr/sbin/nologin",
        create_home=False,
    )
    for path in (layout.data, layout.hf_home, layout.models, layout.gguf, layout.state):
        files.directory(name=f"Directory {path}", path=path, user=user, group=user, mode="755")
    files.directory(name=f"Directory {layout.etc}", path=layout.etc, mode="755")
    files.directory(name="Credentials directory (root only)", path=layout.credentials, mode="700")


@deploy("Service: configure")
def configure(plan: HostPlan) -> None:
    changed: list[OperationMeta] = []
    for name, local in _credential_sources(plan):
        changed.append(
            files.put(
                name=f"Credential {name}",
                src=str(local),
                dest=f"{plan.layout.credentials}/{name}",
                mode="600",
                user="root",
                group="root",
            )
        )
        if name == API_KEY_CREDENTIAL:
            key = local.read_text().strip()
            changed.append(
                files.put(
                    name="Credential api_key_header (for health and smoke requests)",
                    src=StringIO(f"Authorization: Bearer {key}\n"),
                    dest=f"{plan.layout.credentials}/{API_KEY_HEADER}",
                    mode="600",
                    user="root",
                    group="root",
                )
            )
    for rendered in render(plan):
        changed.append(
            files.put(
                name=f"Render {rendered.path}",
                src=StringIO(rendered.content),
                dest=rendered.path,
                mode=rendered.mode,
                user=rendered.owner,
                group=rendered.owner,
            )
        )
    _changed[host.name] = changed


def wait_for_health_command(url: str, timeout_s: int) -> str:
    """Poll /health every 2 s; on timeout, one line saying what was expected and what was found."""
    q = shlex.quote(url)
    return (
        f"deadline=$(( $(date +%s) + {timeout_s} )); code=000; "
        f"while [ $(date +%s) -lt $deadline ]; do "
        f"code=$(curl --silent --output /dev/null --max-time 5 --write-out '%{{http_code}}' {q}); "
        f'[ "$code" = 200 ] && exit 0; sleep 2; done; '
        f'echo "health: expected 200 from {url} within {timeout_s}s, last answer $code" >&2; exit 1'
    )


def smoke_completion_command(plan: HostPlan) -> str:
    """One short completion; prints the text, fails with one line if none comes back."""
    service = plan.service
    body = (
        '{"model": "' + service.served_model + '", "prompt": "Hello", "max_tokens": 8, '
        '"temperature": 0}'
    )
    auth = ""
    if any(name == API_KEY_CREDENTIAL for name, _ in service.credentials):
        auth = f"-H @{plan.layout.credentials}/{API_KEY_HEADER} "
    parse = (
        "import json,sys; r=json.load(sys.stdin); t=r['choices'][0]['text']; "
        "print('completion: ' + repr(t))"
    )
    return (
        f"curl --silent --show-error --fail --max-time 120 {auth}"
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)} "
        f"{shlex.quote(str(service.completion_url))} | python3 -c {shlex.quote(parse)}"
    )


@deploy("Service: activate")
def activate(plan: HostPlan) -> None:
    service = plan.service
    unit = f"{service.name}.service"
    changed = _changed.get(host.name, [])
    reload = systemd.daemon_reload(name="Reload systemd units", _if=any_changed(*changed))
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
    if service.keep_warm_minutes and service.health_url:
        systemd.service(
            name="Keep-warm timer",
            service=f"{plan.layout.keepwarm_service}.timer",
            running=True,
            enabled=True,
        )
    if service.health_url is None:
        return  # a headless worker: the head node serves and is checked
    # Healthy before this run: check again only if this run changed something. Otherwise always.
    healthy = host.get_fact(HttpStatus, url=service.health_url) == 200
    when = [any_changed(reload, *changed)] if healthy else []
    server.shell(
        name=f"Wait for {service.health_url}",
        commands=[wait_for_health_command(service.health_url, service.health_timeout_s)],
        _if=when,
    )
    server.shell(name="Smoke completion", commands=[smoke_completion_command(plan)], _if=when)
