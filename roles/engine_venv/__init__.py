"""The pinned vLLM or SGLang install: one venv per engine and version (they pin different torch
versions, so they never share one), built from the plan's python source.

A stamp listing the requirements is written last; a venv without a matching stamp is half-built or
stale and is rebuilt from scratch, so an interrupted install is never taken as complete.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server

from metalserve.plan import HostPlan
from metalserve.sources import WHEELHOUSE_DIR, SourceKind, pip_source_args

STAMP = ".metalserve-requirements"


def venv_path(plan: HostPlan) -> str:
    return plan.layout.venv(f"{plan.engine}-{plan.spec.engine.version}")


def build_command(venv: str, requirements: tuple[str, ...], pip_args: list[str]) -> str:
    stamp = f"{venv}/{STAMP}"
    pip = " ".join(shlex.quote(a) for a in [*pip_args, *requirements])
    lines = "\\n".join(requirements)
    return (
        f"rm -rf {venv} && python3 -m venv {venv} && "
        f"{venv}/bin/pip install --quiet --no-cache-dir {pip} && "
        f"printf '{lines}\\n' > {stamp}.tmp && mv {stamp}.tmp {stamp}"
    )


@deploy("Engine venv: install")
def install(plan: HostPlan) -> None:
    if not plan.python_requirements:
        return
    venv = venv_path(plan)
    stamp = host.get_fact(FileContents, path=f"{venv}/{STAMP}")
    if stamp == list(plan.python_requirements):
        return
    source = plan.spec.sources.python
    if source.kind is SourceKind.BUNDLE:
        files.sync(
            name="Push the wheelhouse", src=str(source.wheelhouse), dest=WHEELHOUSE_DIR, delete=True
        )
    server.shell(
        name=f"Install {', '.join(plan.python_requirements)} into {venv}",
        commands=[build_command(venv, plan.python_requirements, pip_source_args(source))],
    )
