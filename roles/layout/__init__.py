"""The host's metalserve layout: the service's system user, its directories, and the credentials
(0600, copied from the control host's files). It runs first, since later install steps need them
(the weights step reads the HF token), and a changed credential restarts the service.

Example::

    from roles import layout
    layout.install(plan)
"""

from __future__ import annotations

import json
import os
import secrets
from io import StringIO
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from metalserve.plan import Credential, HostPlan
from roles.base import SERVICE_INPUTS, record_changes


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
        local = Path(credential.local_path).expanduser()
        if credential.generate:
            ensure_generated_key(local)
        ops.append(
            files.put(
                name=f"Credential {credential.name}",
                src=_content(credential, local),
                dest=credential.host_path,
                mode="600",
                user="root",
                group="root",
            )
        )
    return ops


def ensure_generated_key(path: Path) -> None:
    """An API key made once on the control host, 0600 in a 0700 folder; kept across deploys."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(new_api_key() + "\n")


def new_api_key() -> str:
    """256 random bits, URL-safe (Python docs, secrets: 32 bytes is the default strength)."""
    return secrets.token_urlsafe(32)


def _content(credential: Credential, local: Path) -> str | StringIO:
    """The node's copy: the file itself, or made from the key it holds."""
    if credential.form == "as_is":
        return str(local)
    key = local.read_text().strip()
    if credential.form == "bearer_header":
        return StringIO(f"Authorization: Bearer {key}\n")
    return StringIO(f"api-key: {json.dumps(key)}\n")  # JSON strings are YAML scalars
