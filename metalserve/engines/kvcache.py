"""Bytes per cached element for each engine's KV-cache dtype names."""

from __future__ import annotations

from metalserve.errors import SpecError

# One source for every engine's spellings. Block formats carry a scale per block: q8_0 stores 32
# values in 34 bytes, q4_0 in 18, NVFP4 one FP8 scale per 16 FP4 values (ggml-common.h; NVIDIA NVFP4).
KV_DTYPE_BYTES: dict[str, float] = {
    "float32": 4, "f32": 4,
    "float16": 2, "f16": 2, "bfloat16": 2, "bf16": 2,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1, "fp8_ds_mla": 1, "mxfp8": 1,
    "nvfp4": 0.5625, "nvfp4_ds_mla": 0.5625, "fp4_mx_block16": 0.5625,
    "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}  # fmt: skip

AUTO_KV_BYTES = 2
"""``auto`` keeps the KV cache in the activation dtype, BF16 for every checkpoint in the catalogue."""


def kv_dtype_bytes(dtype: str | None) -> float:
    if dtype is None or dtype == "auto":
        return AUTO_KV_BYTES
    try:
        return KV_DTYPE_BYTES[dtype]
    except KeyError:
        raise SpecError(
            f"unknown KV-cache dtype {dtype!r} (known: {', '.join(KV_DTYPE_BYTES)})"
        ) from None
