"""The host's metalserve layout: the service's system user, its directories, and the credentials
(0600, copied from the control host's files). It runs first, since later install steps need them
(the weights step reads the HF token), and a changed credential restarts the service.

Example::

    from roles import layout
    layout.install(plan)
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from metalserve.plan import API_KEY_CREDENTIAL, HostPlan
from roles.base import SERVICE_INPUTS, record_changes

API_KEY_HEADER = "api_key_header"
"""A credential holding 'Authorization: Bearer …', so curl reads the key from a file (-H @file)."""


@deploy("Layout: install")
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
    # credentials first: the weights step reads the token before any unit exists
    record_changes(SERVICE_INPUTS, *_credentials(plan))


def _credentials(plan: HostPlan) -> list[OperationMeta]:
    ops = []
    for credential in plan.credentials:
        name, local = credential.name, Path(credential.local_path).expanduser()
        ops.append(
            files.put(
                name=f"Credential {name}",
                src=str(local),
                dest=credential.host_path,
                mode="600",
                user="root",
                group="root",
            )
        )
        if name == API_KEY_CREDENTIAL:
            key = local.read_text().strip()
            ops.append(
                files.put(
                    name="Credential api_key_header (for health and smoke requests)",
                    src=StringIO(f"Authorization: Bearer {key}\n"),
                    dest=f"{plan.layout.credentials}/{API_KEY_HEADER}",
                    mode="600",
                    user="root",
                    group="root",
                )
            )
    return ops
