"""The shared machinery: a settings field declares its flag once; argv is generated from the fields.

Example::

    class Settings(EngineBase):
        tensor_parallel_size: int | None = flag("--tensor-parallel-size")

    Settings(tensor_parallel_size=8).options_argv() == ["--tensor-parallel-size", "8"]
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field


def flag(
    option: str,
    *,
    negative: str | None = None,
    join: str | None = None,
    description: str = "",
    **constraints: Any,
) -> Any:
    """A settings field rendered as ``option``. ``negative`` is the spelling for an explicit False;
    ``join`` renders a list as one value (``24,24,24,24``) instead of ``nargs=+``."""
    extra: dict[str, Any] = {"flag": option}
    if negative:
        extra["negative"] = negative
    if join:
        extra["join"] = join
    return Field(default=None, description=description, json_schema_extra=extra, **constraints)


def _render_value(value: Any, join: str | None) -> list[str]:
    if isinstance(value, dict):
        return [json.dumps(value)]
    if isinstance(value, list | tuple):
        items = [str(v) for v in value]
        return [join.join(items)] if join else items
    return [str(value)]


class NodeRole(BaseModel):
    """This node's place in a multi-node engine, as the cluster plan decided it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nnodes: int
    rank: int
    head_address: str
    port: int = Field(description="the cluster's rendezvous port")
    workers: tuple[str, ...] = Field(description="the other nodes' addresses, rank order")
    worker_hosts: tuple[str, ...] = Field(default=(), description="their inventory names")
    gpus_per_node: int

    @property
    def head(self) -> bool:
        return self.rank == 0


class EngineBase(BaseModel):
    """What every engine module gives the plan: its flags (fields declared with :func:`flag`), its
    install, how it joins a cluster, and where its own arguments start in a command line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    RUNNING_REQUESTS_METRIC: ClassVar[str] = ""
    """Prometheus gauge of requests in flight (what a drain waits on)."""

    QUIET_ENVIRONMENT: ClassVar[tuple[tuple[str, str], ...]] = ()
    """Variables that keep the engine from reporting usage to its vendor."""

    def requirements(self) -> tuple[str, ...]:
        """pip requirements of the engine's own venv; none for an engine built from source."""
        return ()

    def engine_args(self, command: list[str]) -> list[str]:
        """The part of ``command`` the engine's own argument parser reads."""
        raise NotImplementedError

    def parser_args(self, command: list[str]) -> list[str]:
        """What the engine's own argument parser is given from ``command`` (its flags, and the
        model where the parser reads it)."""
        return self.engine_args(command)

    def on_node(self, node: NodeRole) -> Self:
        """These settings with the flags that place this node in its cluster."""
        return self

    def serving(self, served_name: str) -> Self:
        """These settings answering to ``served_name`` (the name clients and the smoke test use)."""
        return self

    def options_argv(self) -> list[str]:
        """Every set field as flags, in field order; unset (None) fields keep the engine default."""
        argv: list[str] = []
        for name, field in type(self).model_fields.items():
            meta = field.json_schema_extra
            if not isinstance(meta, dict) or "flag" not in meta:
                continue
            value = getattr(self, name)
            if value is None:
                continue
            option = str(meta["flag"])
            if value is True:
                argv.append(option)
            elif value is False:
                if meta.get("negative"):
                    argv.append(str(meta["negative"]))
            else:
                join = meta.get("join")
                argv += [option, *_render_value(value, str(join) if join else None)]
        return argv
