"""The GGUF a safetensors checkpoint converts to is estimated from the checkpoint's storage
precision (config.json ``quantization_config``), not its ``torch_dtype``: an FP8 checkpoint and its
BF16 twin hold the same parameters, so they convert to the same GGUF.

Bits per weight of the ggml types: llama.cpp 0c1e57098 ggml/src/ggml-common.h (``block_q8_0``: an
fp16 scale + 32 int8 = 34 bytes per 32 weights; ``block_q6_K``: 128 + 64 + 16 bytes + an fp16 per
256 weights). Which quantizations the pinned converter dequantizes itself:
conversion/base.py ``dequant_model`` at the same commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metalserve.checkpoint import storage_bits_per_weight
from metalserve.engines.llamacpp import QUANT_BITS_PER_WEIGHT
from metalserve.errors import PlanError
from metalserve.gguf import conversion_route
from metalserve.io.modelfiles import checkpoint_from_dir
from metalserve.sizing import gguf_bytes_from

PARAMS = 8_000_000
SHAPE = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
         "num_attention_heads": 4, "vocab_size": 1000}  # fmt: skip
FP8 = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
       "weight_block_size": [128, 128]}  # DeepSeek-V3's / GLM FP8's quantization_config  # fmt: skip


def _checkpoint_dir(root: Path, name: str, config: dict, weight_bytes: int) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**SHAPE, **config}))
    index = {"metadata": {"total_size": weight_bytes}, "weight_map": {}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def test_q8_0_and_q6_k_bits_come_from_the_ggml_block_sizes() -> None:
    assert QUANT_BITS_PER_WEIGHT["Q8_0"] == (2 + 32) * 8 / 32 == 8.5
    assert QUANT_BITS_PER_WEIGHT["Q6_K"] == (256 // 2 + 256 // 4 + 256 // 16 + 2) * 8 / 256
    assert QUANT_BITS_PER_WEIGHT["F16"] == 16


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M", "F16"])
def test_an_fp8_checkpoint_converts_to_the_same_gguf_as_its_bf16_twin(
    tmp_path: Path, quant: str
) -> None:
    bf16 = checkpoint_from_dir(
        _checkpoint_dir(tmp_path, "bf16", {"torch_dtype": "bfloat16"}, PARAMS * 2)
    )
    fp8 = checkpoint_from_dir(
        _checkpoint_dir(
            tmp_path, "fp8", {"torch_dtype": "bfloat16", "quantization_config": FP8}, PARAMS
        )
    )
    assert (fp8.bits_per_weight, fp8.weight_dtype, fp8.quant_method) == (8, "fp8", "fp8")
    expected = int(PARAMS * QUANT_BITS_PER_WEIGHT[quant] / 8)
    assert gguf_bytes_from(bf16, quant) == gguf_bytes_from(fp8, quant) == expected
    if quant == "Q8_0":
        assert expected == PARAMS * 34 // 32  # 8.5 MB for 8 M weights


@pytest.mark.parametrize(
    ("config", "bits"),
    [
        ({"torch_dtype": "float32"}, 32),
        ({"torch_dtype": "bfloat16"}, 16),
        ({"torch_dtype": "bfloat16", "quantization_config": FP8}, 8),
        ({"quantization_config": {"quant_method": "fbgemm_fp8"}}, 8),
        ({"quantization_config": {"quant_method": "mxfp4"}}, 4 + 8 / 32),
        ({"quantization_config": {"quant_method": "gptq", "bits": 4}}, 4),
        ({"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}, 4 + 8 / 16),
        (
            {
                "quantization_config": {
                    "quant_method": "compressed-tensors",
                    "config_groups": {"g": {"weights": {"num_bits": 8}}},
                }
            },
            8,
        ),  # fmt: skip
        ({"quantization_config": {"quant_method": "unknown-method"}}, None),
    ],
)
def test_storage_bits_follow_the_quantization_before_the_dtype(
    config: dict, bits: float | None
) -> None:
    assert storage_bits_per_weight(config) == bits


def test_converter_route_by_quant_method() -> None:
    assert conversion_route(None) == "direct"
    assert conversion_route("fp8") == "direct"  # block-wise weight_scale_inv: the converter's own
    assert conversion_route("fbgemm_fp8") == "bf16-first"
    with pytest.raises(PlanError, match="found quant_method 'hqq' — fix: use the model's BF16"):
        conversion_route("hqq")
