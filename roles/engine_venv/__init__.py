"""The pinned vLLM or SGLang install: one venv per engine and version (they pin different torch
versions, so they never share one), built from the plan's python source."""

from __future__ import annotations

from pyinfra.api import deploy

from metalserve.plan import HostPlan
from roles.venv import ensure_venv


def venv_path(plan: HostPlan) -> str:
    return plan.layout.venv(f"{plan.engine}-{plan.spec.engine.version}")


@deploy("Engine venv: install")
def install(plan: HostPlan) -> None:
    if plan.python_requirements:
        ensure_venv(venv_path(plan), plan.python_requirements, plan.spec.sources.python)
