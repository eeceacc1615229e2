"""How a safetensors checkpoint becomes a GGUF on the host: straight through llama.cpp's converter,
or dequantized to BF16 first where the pinned converter cannot read its quantization.

Example::

    conversion_route("fbgemm_fp8")  # "bf16-first"
    conversion_route("fp8")         # "direct": the converter dequantizes block-wise FP8 itself
"""

from __future__ import annotations

from typing import Literal

from metalserve.errors import PlanError

CONVERTER_DEQUANTIZES: tuple[str, ...] = (
    "bitnet", "compressed-tensors", "fp8", "gptq", "modelopt", "mxfp4",
)  # fmt: skip
"""``quantization_config.quant_method`` values the pinned llama.cpp's ``convert_hf_to_gguf.py``
dequantizes itself (llama.cpp 0c1e57098 conversion/base.py ``ModelBase.dequant_model``: bitnet,
fp8 with ``weight_scale_inv`` blocks of ``weight_block_size``, gptq, compressed-tensors, modelopt;
conversion/gpt_oss.py: mxfp4). Any other method stops it with ``NotImplementedError``."""

DEQUANTIZED_FIRST: tuple[str, ...] = ("fbgemm_fp8",)
"""Methods the host dequantizes to BF16 before converting (roles/gguf/files/dequantize_bf16.py:
float8 weights with a per-tensor or per-row ``weight_scale``, or ``weight_scale_inv`` blocks)."""

Route = Literal["direct", "bf16-first"]


def conversion_route(method: str | None) -> Route:
    """How a checkpoint quantized with ``method`` (None: not pre-quantized) is converted."""
    if method is None or method in CONVERTER_DEQUANTIZES:
        return "direct"
    if method in DEQUANTIZED_FIRST:
        return "bf16-first"
    raise PlanError(
        f"metalserve.model: expected a checkpoint llama.cpp can convert, found quant_method "
        f"{method!r} — fix: use the model's BF16 checkpoint or a GGUF repository (converted "
        f"directly: {', '.join(CONVERTER_DEQUANTIZES)}; via BF16: {', '.join(DEQUANTIZED_FIRST)})"
    )
