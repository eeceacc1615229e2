"""Edge: render ``unit_files(plan)`` with the jinja2 templates in ``templates/``."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import jinja2

from metalserve.hardware import Frozen
from metalserve.plan import HostPlan
from metalserve.units import unit_files

TEMPLATES = Path(
    os.environ.get("METALSERVE_TEMPLATES", Path(__file__).resolve().parents[2] / "templates")
)


class RenderedFile(Frozen):
    path: str
    content: str
    mode: str
    owner: str


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(plan: HostPlan) -> list[RenderedFile]:
    env = environment()
    return [
        RenderedFile(
            path=f.path,
            content=env.get_template(f.template).render(**f.context),
            mode=f.mode,
            owner=f.owner,
        )
        for f in unit_files(plan)
    ]
