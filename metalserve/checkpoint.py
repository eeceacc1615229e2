"""A model checkpoint: what it weighs, what it is made of, and what sources claim about it."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import Field

from metalserve.architecture import Architecture
from metalserve.hardware import Frozen


class WeightFormat(StrEnum):
    SAFETENSORS = "safetensors"
    GGUF = "gguf"


DTYPE_BITS: dict[str, float] = {"float32": 32, "float16": 16, "bfloat16": 16, "float8_e4m3fn": 8}
"""Bits per weight of a checkpoint stored in one ``torch_dtype`` (config.json)."""

QUANT_METHOD_BITS: dict[str, float] = {"fp8": 8, "fbgemm_fp8": 8, "mxfp4": 4.25, "bitnet": 2}
"""Bits per quantized weight of a pre-quantized checkpoint, by ``quantization_config.quant_method``
(its ``torch_dtype`` names what it computes in, not how it is stored): ``fp8`` and ``fbgemm_fp8``
store float8_e4m3fn (transformers' FineGrainedFP8 and FBGEMM FP8 integrations); ``mxfp4`` packs two
4-bit values a byte plus one 8-bit scale per 32 (OCP Microscaling Formats spec v1.0, gpt-oss);
``bitnet`` packs four ternary values a byte (llama.cpp 0c1e57098 conversion/base.py
``dequant_bitnet``). ``gptq``/``awq``/``compressed-tensors`` name theirs (``bits``, ``num_bits``)."""

MODELOPT_ALGO_BITS: dict[str, float] = {"FP8": 8, "NVFP4": 4.5}
"""NVIDIA ModelOpt checkpoints by ``quant_algo``: NVFP4 is 4-bit E2M1 plus one FP8 scale per 16
weights (NVIDIA technical blog "Introducing NVFP4", 2025)."""


def quant_method(config: object) -> str | None:
    """``quantization_config.quant_method`` of a config.json, lower case; None when unquantized."""
    quantization = config.get("quantization_config") if isinstance(config, Mapping) else None
    method = quantization.get("quant_method") if isinstance(quantization, Mapping) else None
    return method.lower() if isinstance(method, str) else None


def _named_bits(quantization: Mapping[str, Any]) -> float | None:
    bits = quantization.get("bits")
    groups = quantization.get("config_groups")
    if bits is None and isinstance(groups, Mapping) and len(groups) == 1:
        (group,) = groups.values()
        weights = group.get("weights") if isinstance(group, Mapping) else None
        bits = weights.get("num_bits") if isinstance(weights, Mapping) else None
    if isinstance(bits, bool) or not isinstance(bits, int | float) or bits <= 0:
        return None
    return float(bits)


def storage_bits_per_weight(config: object) -> float | None:
    """How many bits one weight takes on disk: the quantization's where the checkpoint is
    pre-quantized, else its ``torch_dtype``'s; None when neither says."""
    method = quant_method(config)
    if method is not None and isinstance(config, Mapping):
        quantization = config["quantization_config"]
        algo = (
            MODELOPT_ALGO_BITS.get(str(quantization.get("quant_algo")))
            if method == "modelopt"
            else None
        )
        return QUANT_METHOD_BITS.get(method) or algo or _named_bits(quantization)
    dtype = config.get("torch_dtype") if isinstance(config, Mapping) else None
    return DTYPE_BITS.get(str(dtype))


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
    quant_method: str | None = Field(
        default=None, description="config.json quantization_config.quant_method, if pre-quantized"
    )
    needs_fp8: bool = False
    needs_nvfp4: bool = False
    claims: tuple[Claim, ...] = ()

    @property
    def expected_weight_bytes(self) -> int | None:
        """What the parameter count and nominal precision imply, to check ``weight_bytes`` by."""
        if self.total_params is None or self.bits_per_weight is None:
            return None
        return int(self.total_params * self.bits_per_weight / 8)
