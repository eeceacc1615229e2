"""A Python venv on the host, installed from the plan's python source and stamped when complete.

Shared by the roles that need one (engine, weights, converter). The stamp lists the requirements
and is written last; a venv without a matching stamp is half-built or stale and is rebuilt from
scratch, so an interrupted install is never taken as complete.

Example::

    ensure_venv("/opt/metalserve/venvs/hub", ("huggingface_hub==2.4.0",), plan.engine.python)
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import server

from metalserve.sources import WHEELHOUSE_DIR, PythonSource, SourceKind, pip_source_args
from roles.base import run_memo
from roles.push import push

STAMP = ".metalserve-requirements"


def build_command(venv: str, requirements: tuple[str, ...], pip_args: list[str]) -> str:
    q = shlex.quote
    stamp = f"{venv}/{STAMP}"
    pip = shlex.join([*pip_args, *requirements])
    # requirements are the catalogue's pins (metalserve.catalog.pins): no quote or % among them
    lines = "\\n".join(requirements)
    return (
        f"rm -rf {q(venv)} && python3 -m venv {q(venv)} && "
        f"{q(f'{venv}/bin/pip')} install --quiet --no-cache-dir --no-compile {pip} && "
        f"printf '{lines}\\n' > {q(f'{stamp}.tmp')} && mv {q(f'{stamp}.tmp')} {q(stamp)}"
    )


def build_unless_current(venv: str, requirements: tuple[str, ...], source: PythonSource) -> str:
    """One shell line that builds ``venv`` only when its stamp does not list exactly
    ``requirements``, checked when the line runs: for a unit that builds the venv in the
    background (the weights download), where the deploy's facts may be stale by then."""
    q = shlex.quote
    listed = shlex.join(["printf", "%s\\n", *requirements])
    build = build_command(venv, requirements, pip_source_args(source))
    return f"{{ {listed} | cmp -s - {q(f'{venv}/{STAMP}')} || {{ {build}; }}; }}"


def is_current(venv: str, requirements: tuple[str, ...]) -> bool:
    return host.get_fact(FileContents, path=f"{venv}/{STAMP}") == list(requirements)


def push_wheelhouse(source: PythonSource) -> None:
    """A bundle source: the wheels go to the host with ``roles.push`` (rsync over SSH, only what
    changed, checked against the bundle's manifest), once per run and host: a second push queued
    in the same run would list the whole wheelhouse on the host again for nothing."""
    if source.kind is not SourceKind.BUNDLE:
        return
    pushed = run_memo("wheelhouse-pushed", set[tuple[str, str]])
    if (host.name, str(source.wheelhouse)) in pushed:
        return
    pushed.add((host.name, str(source.wheelhouse)))
    push(name="Push the wheelhouse", src=str(source.wheelhouse), dest=WHEELHOUSE_DIR, delete=True)


def ensure_venv(venv: str, requirements: tuple[str, ...], source: PythonSource) -> None:
    """Operations that make ``venv`` hold exactly ``requirements``; none when it already does."""
    if is_current(venv, requirements):
        return
    push_wheelhouse(source)
    server.shell(
        name=f"Install {', '.join(requirements)} into {venv}",
        commands=[build_command(venv, requirements, pip_source_args(source))],
    )
