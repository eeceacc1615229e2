"""roles/gguf/files/dequantize_bf16.py run for real on a tiny FP8 checkpoint made here, in the
layout of real block-quantized FP8 checkpoints: float8_e4m3fn ``*.weight`` with a float32
``*.weight_scale_inv`` per 128×128 block, ``quantization_config.weight_block_size = [128, 128]``
(deepseek-ai/DeepSeek-V3 config.json and README_WEIGHTS.md; zai-org GLM FP8 configs), the last
blocks cut at the tensor's edge; and FBGEMM FP8's per-row ``weight_scale``. Then the conversion
script sending such a checkpoint through BF16 before llama.cpp's converter (a stand-in here).

Expected values: float8_e4m3fn bytes from the OCP 8-bit Floating Point Specification v1.0 table
(0x38 = 1.0, 0x3C = 1.5, 0x40 = 2.0, 0xB8 = -1.0, 0x7E = 448 the largest, 0x08 = 2^-6 the smallest
normal, 0x01 = 2^-9 the smallest subnormal), times their scale: powers of two, so every product
is exact in bfloat16.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.faultkit import REPO, TRACEBACK, run_host_script
from tests.roles.gguf.test_convert_script import Host

DEQUANTIZE = REPO / "roles/gguf/files/dequantize_bf16.py"
E4M3 = {0x38: 1.0, 0x3C: 1.5, 0x40: 2.0, 0xB8: -1.0, 0x7E: 448.0, 0x08: 2.0**-6, 0x01: 2.0**-9,
        0x00: 0.0}  # fmt: skip
BLOCK_SCALES = np.array([[0.5, 2.0, 4.0], [8.0, 0.25, 16.0]], np.float32)
FP8_CONFIG = {"model_type": "deepseek_v3", "torch_dtype": "bfloat16",
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                      "activation_scheme": "dynamic",
                                      "weight_block_size": [128, 128]}}  # fmt: skip


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """A safetensors file (huggingface/safetensors: u64 header length, JSON header, data)."""
    header, offset = {}, 0
    for name, (dtype, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(data.shape),
                        "data_offsets": [offset, offset + data.nbytes]}  # fmt: skip
        offset += data.nbytes
    encoded = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for _, data in tensors.values():
            f.write(data.tobytes())


def read_safetensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Each tensor's dtype and values (BF16 widened to float32 by its 16 high bits)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        data = np.frombuffer(raw[8 + length + begin : 8 + length + end], np.uint8)
        if entry["dtype"] == "BF16":
            data = (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        out[name] = (entry["dtype"], data.reshape(entry["shape"]))
    return out


def fp8_bytes(shape: tuple[int, int]) -> np.ndarray:
    codes = np.array(list(E4M3), np.uint8)
    return codes[np.arange(shape[0] * shape[1]) % len(codes)].reshape(shape)


def expected_values(codes: np.ndarray) -> np.ndarray:
    return np.vectorize(E4M3.__getitem__, otypes=[np.float32])(codes)


def make_fp8_checkpoint(folder: Path, config: dict = FP8_CONFIG) -> dict[str, np.ndarray]:
    """Two shards: a 200×300 weight scaled per 128×128 block (cut at 200 and 300) where the config
    names blocks, else per tensor; a per-row scaled one, a BF16 norm and an unused activation
    scale. Returns the fp8 codes by name."""
    folder.mkdir(parents=True, exist_ok=True)
    block, row = fp8_bytes((200, 300)), fp8_bytes((4, 8))
    row_scales = np.full((4, 1), 2.0, np.float32)
    blocks = "weight_block_size" in config["quantization_config"]
    up_scale = ("weight_scale_inv", BLOCK_SCALES) if blocks else ("weight_scale", row_scales[:1])
    write_safetensors(folder / "model-00001-of-00002.safetensors", {
        "model.layers.0.mlp.up_proj.weight": ("F8_E4M3", block),
        f"model.layers.0.mlp.up_proj.{up_scale[0]}": ("F32", up_scale[1]),
        "model.norm.weight": ("BF16", np.full(300, 0x3F80, np.uint16)),  # 1.0
        # the other shard's weight's scale, as sharding may place it
        "model.layers.0.mlp.down_proj.weight_scale": ("F32", row_scales),
    })  # fmt: skip
    write_safetensors(folder / "model-00002-of-00002.safetensors", {
        "model.layers.0.mlp.down_proj.weight": ("F8_E4M3", row),
        "model.layers.0.mlp.down_proj.input_scale": ("F32", np.ones(1, np.float32)),
    })  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text("{}")
    return {"up": block, "down": row}


def test_block_scaled_fp8_becomes_exact_bf16(tmp_path: Path) -> None:
    codes = make_fp8_checkpoint(tmp_path / "fp8")
    run = run_host_script(DEQUANTIZE, [str(tmp_path / "fp8"), str(tmp_path / "bf16")])
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["dequantized"] == 2

    one = read_safetensors(tmp_path / "bf16/model-00001-of-00002.safetensors")
    two = read_safetensors(tmp_path / "bf16/model-00002-of-00002.safetensors")
    dtype, up = one["model.layers.0.mlp.up_proj.weight"]
    rows, cols = np.indices((200, 300))
    assert dtype == "BF16"
    assert np.array_equal(up, expected_values(codes["up"]) * BLOCK_SCALES[rows // 128, cols // 128])
    dtype, down = two["model.layers.0.mlp.down_proj.weight"]
    assert dtype == "BF16" and np.array_equal(down, expected_values(codes["down"]) * 2.0)
    assert one["model.norm.weight"][0] == "BF16" and set(one["model.norm.weight"][1]) == {1.0}
    assert set(one) | set(two) == {"model.layers.0.mlp.up_proj.weight", "model.norm.weight",
                                   "model.layers.0.mlp.down_proj.weight"}  # scales dropped  # fmt: skip

    config = json.loads((tmp_path / "bf16/config.json").read_text())
    assert "quantization_config" not in config and config["torch_dtype"] == "bfloat16"
    index = json.loads((tmp_path / "bf16/model.safetensors.index.json").read_text())
    assert index["weight_map"] == {
        "model.layers.0.mlp.down_proj.weight": "model-00002-of-00002.safetensors",
        "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00001-of-00002.safetensors",
    }
    assert index["metadata"]["total_size"] == (200 * 300 + 4 * 8 + 300) * 2
    assert (tmp_path / "bf16/tokenizer_config.json").read_text() == "{}"


def test_bf16_rounds_to_nearest_even() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dequantize_bf16", DEQUANTIZE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ties = np.array([1 + 2**-8, 1 + 2**-7 + 2**-8, 1 + 2**-8 + 2**-20], np.float32)
    # 1 + half an ulp ties to 1.0 (even); the next tie goes up to the even 1 + 2 ulps; above a tie
    # rounds up
    assert list(module.to_bf16(ties)) == [0x3F80, 0x3F82, 0x3F81]
    table = module.e4m3fn_table()
    assert all(table[code] == value for code, value in E4M3.items())
    assert np.isnan(table[0x7F]) and np.isnan(table[0xFF])


def test_a_float8_weight_without_its_scale_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "fp8"
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", {"w.weight": ("F8_E4M3", fp8_bytes((2, 2)))})
    (folder / "config.json").write_text(json.dumps(FP8_CONFIG))
    run = run_host_script(DEQUANTIZE, [str(folder), str(tmp_path / "bf16")])
    assert run.returncode == 2 and TRACEBACK not in run.stderr
    assert run.stderr.startswith("error: w.weight: expected a weight_scale_inv or weight_scale")


FBGEMM = {**FP8_CONFIG, "quantization_config": {"quant_method": "fbgemm_fp8"}}
ROUTES = ["--converter-handles", "fp8,gptq", "--bf16-first", "fbgemm_fp8"]


class Fp8Host(Host):
    """The conversion host with a real FP8 checkpoint in place of the placeholder one."""

    def __init__(self, root: Path, config: dict) -> None:
        super().__init__(root, config=config)
        make_fp8_checkpoint(self.model, config)
        self.bf16 = self.gguf / "tiny-BF16"

    @property
    def args(self) -> list[str]:
        keep = [a for a in super().args if a != "--drop-f16"]  # keep the BF16 copy to look at
        return [*keep, *ROUTES, "--bf16-dir", str(self.bf16)]


def test_a_checkpoint_the_converter_cannot_read_goes_through_bf16_once(tmp_path: Path) -> None:
    host = Fp8Host(tmp_path, FBGEMM)
    first = host.run()
    assert first.returncode == 0, first.stderr
    assert {"dequantize_s", "convert_s", "quantize_s"} <= set(json.loads(first.stdout))
    config = json.loads((host.bf16 / "config.json").read_text())
    assert "quantization_config" not in config
    stamp = json.loads((host.gguf / "tiny-BF16.stamp.json").read_text())
    assert stamp["outtype"] == "bf16"
    assert stamp["bytes"] == sum(p.stat().st_size for p in host.bf16.iterdir())
    again = host.run()
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False


def test_block_fp8_goes_straight_to_the_converter(tmp_path: Path) -> None:
    host = Fp8Host(tmp_path, FP8_CONFIG)
    run = host.run()
    assert run.returncode == 0, run.stderr
    assert "dequantize_s" not in json.loads(run.stdout) and not host.bf16.exists()


@pytest.mark.parametrize("method", ["hqq"])
def test_a_quantization_neither_route_reads_is_refused_before_anything_runs(
    tmp_path: Path, method: str
) -> None:
    host = Fp8Host(tmp_path, {**FP8_CONFIG, "quantization_config": {"quant_method": method}})
    run = host.run(converter="hang")  # would hang if the converter started
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert f"found quant_method '{method}' — fix: use the model's BF16 checkpoint" in run.stderr
    assert host.leftovers() == []


def test_too_little_room_for_the_bf16_copy_is_refused_before_dequantizing(tmp_path: Path) -> None:
    host = Fp8Host(tmp_path, FBGEMM)
    huge = 10**15  # a header for 1 P weights: 2 PB as BF16, more than any test disk
    header = json.dumps({"big.weight": {"dtype": "F8_E4M3", "shape": [huge],
                                        "data_offsets": [0, huge]}}).encode()  # fmt: skip
    (host.model / "model-00003-of-00003.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header
    )
    run = host.run()
    assert run.returncode == 2 and TRACEBACK not in run.stderr, run.stderr
    assert run.stderr.startswith(
        f"error: dequantize_bf16.py: expected room for {host.bf16.name} (a BF16 copy of the "
        "checkpoint: 2 bytes per weight), found "
    )
    assert " GB free — fix: free space at " in run.stderr
    assert host.leftovers() == []
