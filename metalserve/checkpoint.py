"""A model checkpoint: what it weighs, what it is made of, and what sources claim about it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from metalserve.architecture import Architecture
from metalserve.hardware import Frozen


class WeightFormat(StrEnum):
    SAFETENSORS = "safetensors"
    GGUF = "gguf"


class Claim(Frozen):
    """Something a source says about a checkpoint, kept so sizing can check whether it adds up.

    Example::

        Claim(source=GLM52_GUIDE, statement="FP8 needs ~372 GB VRAM", vram_gb=372,
              minimum_profile="h100-sxm-4")
    """

    source: str
    statement: str
    total_params_b: float | None = Field(default=None, description="billions of parameters")
    disk_gb: float | None = None
    vram_gb: float | None = None
    minimum_profile: str | None = Field(default=None, description="profile id said to be enough")


class Checkpoint(Frozen):
    id: str = Field(description="hub repo id, or a file name for a bare GGUF")
    repo_id: str | None
    family: str
    format: WeightFormat
    weight_dtype: str = Field(description="bf16, fp8, nvfp4-mixed, q4_k_m, ...")
    bits_per_weight: float | None = Field(
        default=None, description="nominal average; None for mixed-precision checkpoints"
    )
    total_params: int | None = Field(default=None, gt=0)
    active_params: int | None = Field(default=None, gt=0)
    params_source: str = ""
    weight_bytes: int = Field(gt=0)
    weight_bytes_source: str
    architecture: Architecture | None = None
    needs_fp8: bool = False
    needs_nvfp4: bool = False
    claims: tuple[Claim, ...] = ()

    @property
    def expected_weight_bytes(self) -> int | None:
        """What the parameter count and nominal precision imply, to check ``weight_bytes`` by."""
        if self.total_params is None or self.bits_per_weight is None:
            return None
        return int(self.total_params * self.bits_per_weight / 8)
