"""The files a deploy writes for the engine service: which template, with which values.

Pure: ``unit_files(plan)`` returns what to render; ``metalserve.io.templating`` renders it.

Example::

    for f in unit_files(plan): print(f.path, f.template, f.mode)
"""

from __future__ import annotations

import re
from typing import Any

from metalserve.hardware import Frozen
from metalserve.layout import ROOT
from metalserve.plan import HostPlan

HEADER = "Rendered by metalserve for host {host} from templates/{template}; do not edit by hand."
CREDENTIAL_ENV_WRAPPER = f"{ROOT}/bin/credential-env"
DRAIN_SECONDS = 120
"""How long a stop waits for in-flight requests before systemd kills the engine."""

_BARE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


class UnitFile(Frozen):
    path: str
    template: str
    context: dict[str, Any]
    mode: str = "0644"
    owner: str = "root"


def systemd_quote(arg: str, allow_specifiers: bool = False) -> str:
    """One ExecStart word: ``%`` and ``$`` escaped (no specifier or variable expansion — except
    ``%d``, the credentials directory, where allowed), quoted when it has spaces or quotes."""
    escaped = arg.replace("$", "$$")
    escaped = escaped.replace("%", "%%")
    if allow_specifiers:
        escaped = escaped.replace("%%d/", "%d/")
    if _BARE.match(arg):
        return escaped
    return "'" + escaped.replace("\\", "\\\\").replace("'", "\\'") + "'"


def exec_start(plan: HostPlan) -> str:
    argv = list(plan.service.exec_argv)
    if plan.service.secret_env:
        pairs = [f"{var}={cred}" for var, cred in plan.service.secret_env]
        argv = [CREDENTIAL_ENV_WRAPPER, *pairs, "--", *argv]
    return " ".join(systemd_quote(a, allow_specifiers=True) for a in argv)


def _after(plan: HostPlan) -> tuple[list[str], list[str]]:
    after, requires = [], []
    if plan.nvidia is not None:
        after.append("nvidia-persistenced.service")
    if plan.nvidia is not None and plan.nvidia.fabric_manager:
        after.append("nvidia-fabricmanager.service")
        requires.append("nvidia-fabricmanager.service")
    return after, requires


_ENV_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./^-]*")
_ENV_ESCAPED = re.compile(r"([\\\"`$])")


def env_file_value(value: str) -> str:
    """``value`` as an EnvironmentFile= line reads it back unchanged: bare when it holds only
    characters no shell or systemd reads as syntax, else in double quotes with ``\\ " ` $``
    escaped. Inside double
    quotes systemd unescapes exactly those four, as POSIX sh does (systemd src/basic/env-file.c,
    parse_env_file_internal; POSIX.1 XCU 2.2.3); unquoted, a trailing backslash would
    join the next line. The value is one line already (:data:`metalserve.types.EnvValue`)."""
    if _ENV_BARE.fullmatch(value):
        return value
    return '"' + _ENV_ESCAPED.sub(r"\\\1", value) + '"'


def env_variables(plan: HostPlan) -> list[dict[str, str]]:
    reasons = {s.name: (s.reason, s.source) for s in plan.nccl.settings}
    out = []
    for name, value in plan.environment:
        reason, source = reasons.get(name, ("", ""))
        out.append(
            {"name": name, "value": env_file_value(value), "reason": reason, "source": source}
        )
    return out


def unit_files(plan: HostPlan) -> list[UnitFile]:
    service = plan.service
    header = HEADER.format(host=plan.host, template="{template}")
    after, requires = _after(plan)
    files = [
        UnitFile(
            path=service.env_file,
            template="engine.env.j2",
            context={"variables": env_variables(plan)},
        ),
        UnitFile(
            path=service.unit_path,
            template="engine.service.j2",
            context={
                "engine": plan.engine.name,
                "served_model": service.served_model,
                "user": service.user,
                "env_file": service.env_file,
                "credentials": list(service.credentials),
                "exec_start": exec_start(plan),
                "after": after,
                "requires": requires,
                "drain_seconds": DRAIN_SECONDS,
                "restart": service.restart,
                "hardening": service.hardening.engine,
            },
        ),
    ]
    if service.secret_env:
        files.append(
            UnitFile(
                path=CREDENTIAL_ENV_WRAPPER,
                template="credential-env.sh.j2",
                context={},
                mode="0755",
            )
        )
    # the plan decides whether a keep-warm unit exists: its hardening is given only then
    if service.hardening.keepwarm is not None and service.health_url:
        name = plan.layout.keepwarm_service
        common = {"service": service.name, "minutes": service.keep_warm_minutes}
        files += [
            UnitFile(
                path=f"/etc/systemd/system/{name}.service",
                template="keepwarm.service.j2",
                context={
                    **common,
                    "health_url": service.health_url,
                    "hardening": service.hardening.keepwarm,
                },
            ),
            UnitFile(
                path=f"/etc/systemd/system/{name}.timer",
                template="keepwarm.timer.j2",
                context=common,
            ),
        ]
    return [
        f.model_copy(
            update={"context": {**f.context, "header": header.format(template=f.template)}}
        )
        for f in files
    ]
