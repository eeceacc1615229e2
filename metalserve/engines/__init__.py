"""Engine settings (one typed model per engine) and the command lines they generate."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from metalserve.engines.llamacpp import LlamaCppSettings
from metalserve.engines.sglang import SglangSettings
from metalserve.engines.vllm import VllmSettings

EngineSettings = Annotated[
    VllmSettings | SglangSettings | LlamaCppSettings, Field(discriminator="name")
]

__all__ = ["EngineSettings", "LlamaCppSettings", "SglangSettings", "VllmSettings"]
