"""The shared machinery: a settings field declares its flag once; argv is generated from the fields.

Example::

    class Settings(EngineBase):
        tensor_parallel_size: int | None = flag("--tensor-parallel-size")

    Settings(tensor_parallel_size=8).options_argv() == ["--tensor-parallel-size", "8"]
"""

from __future__ import annotations

import json
from typing import Any

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


class EngineBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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
