"""The pinned vLLM or SGLang install: one venv per engine and version (they pin different torch
versions, so they never share one), built from the plan's python source."""

from __future__ import annotations

from pyinfra.api import deploy

from metalserve.plan import HostPlan
from roles.venv import ensure_venv


@deploy("Engine venv: install")
def install(plan: HostPlan) -> None:
    engine = plan.engine
    if engine.venv is not None and engine.requirements:
        ensure_venv(engine.venv, engine.requirements, engine.python)
