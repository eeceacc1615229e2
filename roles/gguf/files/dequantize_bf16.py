#!/usr/bin/env python3
"""Dequantize an FP8 safetensors checkpoint to BF16 — run by convert_quantize.py before llama.cpp's
converter, for quantizations that converter cannot read.

Needs only numpy (the converter venv has it). Every float8 (``F8_E4M3``) weight ``X.weight`` is
multiplied by its scale and stored as BF16: ``X.weight_scale_inv`` in blocks of
``quantization_config.weight_block_size`` (the DeepSeek-V3 / GLM FP8 layout: a float32 scale per
128×128 block, the last blocks cut to the tensor's edge; deepseek-ai/DeepSeek-V3 README_WEIGHTS.md,
inference/fp8_cast_bf16.py: ``weight * scale_inv``), or ``X.weight_scale`` per tensor or per row
(FBGEMM FP8). Scale and activation-scale tensors are dropped; every other tensor is copied as it
is. ``config.json`` loses its ``quantization_config`` and says ``torch_dtype: bfloat16``; the other
small files (tokenizer, generation config) are copied. One tensor is in memory at a time.

Example::

    python3 dequantize_bf16.py /var/lib/metalserve/models/org--m-FP8 /var/lib/metalserve/gguf/org--m-BF16
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

INDEX = "model.safetensors.index.json"
SKIPPED = {".metalserve-weights.json", ".cache", INDEX, "config.json"}
DROPPED_SUFFIXES = (".weight_scale_inv", ".weight_scale", ".input_scale", ".activation_scale")
EXIT_OPERATOR_ERROR = 2


class DequantizeError(Exception):
    """One line for the operator."""


def e4m3fn_table() -> np.ndarray:
    """The float32 value of each of the 256 float8_e4m3fn bytes (OCP 8-bit Floating Point
    Specification v1.0: bias 7, subnormals at exponent 0, S.1111.111 the only NaN)."""
    codes = np.arange(256, dtype=np.uint32)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = ((codes >> 3) & 0xF).astype(np.int32)
    mantissa = (codes & 0x7).astype(np.float64)
    normal = (1 + mantissa / 8) * np.exp2(exponent - 7)
    subnormal = (mantissa / 8) * 2.0**-6
    values = sign * np.where(exponent == 0, subnormal, normal)
    values[(codes & 0x7F) == 0x7F] = np.nan
    return values.astype(np.float32)


def to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits (uint16), rounded to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
    return (rounded >> 16).astype(np.uint16)


def _as_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "F32":
        return raw.view(np.float32)
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype == "F16":
        return raw.view(np.float16).astype(np.float32)
    raise DequantizeError(f"expected a float32, bfloat16 or float16 scale, found {dtype}")


class Shard:
    """One safetensors file, read through a memory map."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        header.pop("__metadata__", None)
        self.header: dict[str, dict] = header
        self.data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + length)

    def raw(self, name: str) -> np.ndarray:
        begin, end = self.header[name]["data_offsets"]
        return self.data[begin:end]


def _scale_for(shape: list[int], scale: np.ndarray, block: list[int] | None) -> np.ndarray:
    """The scale of every weight: blocks repeated out to the tensor (cut at its edge), or one per
    row or per tensor broadcast."""
    if scale.size == 1:
        return scale.reshape(())
    if block and scale.ndim == len(shape) == len(block):
        for axis, size in enumerate(block):
            scale = np.repeat(scale, size, axis=axis)
        return scale[tuple(slice(0, n) for n in shape)]
    if scale.size != shape[0]:
        raise DequantizeError(f"expected one scale per tensor, per row or per block (with "
                              f"weight_block_size), found {list(scale.shape)} for {shape}")  # fmt: skip
    return scale.reshape(shape[0], *([1] * (len(shape) - 1)))


def dequantize(model_dir: Path, out_dir: Path) -> dict[str, object]:
    config = json.loads((model_dir / "config.json").read_text())
    quantization = config.pop("quantization_config", None) or {}
    block = quantization.get("weight_block_size")
    shards = {p.name: Shard(p) for p in sorted(model_dir.glob("*.safetensors"))}
    if not shards:
        raise DequantizeError(f"{model_dir}: expected safetensors shards, found none — fix: "
                              "run the weights step first")  # fmt: skip
    where = {name: shard for shard in shards.values() for name in shard.header}
    table = e4m3fn_table()
    out_dir.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    total = dequantized = 0

    def tensors(shard: Shard) -> Iterator[tuple[str, str, list[int], np.ndarray]]:
        nonlocal dequantized
        for name, entry in shard.header.items():
            if name.endswith(DROPPED_SUFFIXES):
                continue
            dtype, shape = entry["dtype"], entry["shape"]
            if dtype != "F8_E4M3":
                yield name, dtype, shape, shard.raw(name)
                continue
            stem = name.removesuffix(".weight")
            scale_name = next((f"{stem}{s}" for s in (".weight_scale_inv", ".weight_scale")
                               if f"{stem}{s}" in where), None)  # fmt: skip
            if scale_name is None:
                raise DequantizeError(f"{name}: expected a weight_scale_inv or weight_scale "
                                      "beside the float8 weight, found none — fix: check the "
                                      "checkpoint is complete")  # fmt: skip
            owner = where[scale_name]
            scale_entry = owner.header[scale_name]
            scale = _as_float32(owner.raw(scale_name), scale_entry["dtype"])
            scale = scale.reshape(scale_entry["shape"] or [1])
            values = table[shard.raw(name)].reshape(shape) * _scale_for(shape, scale, block)
            dequantized += 1
            yield name, "BF16", shape, to_bf16(values).view(np.uint8)

    for file_name, shard in shards.items():
        kept = list(tensors(shard))
        header, offset = {}, 0
        for name, dtype, shape, data in kept:
            header[name] = {"dtype": dtype, "shape": shape,
                            "data_offsets": [offset, offset + data.nbytes]}  # fmt: skip
            offset += data.nbytes
            weight_map[name] = file_name
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
        with (out_dir / file_name).open("wb") as f:
            f.write(struct.pack("<Q", len(encoded)) + encoded)
            for *_, data in kept:
                f.write(np.ascontiguousarray(data).tobytes())
        total += offset

    for path in model_dir.iterdir():
        if path.name not in SKIPPED and path.suffix != ".safetensors" and path.is_file():
            shutil.copy2(path, out_dir / path.name)
    config["torch_dtype"] = "bfloat16"
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return {"out": str(out_dir), "tensors": len(weight_map), "dequantized": dequantized,
            "bytes": total}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        result = dequantize(args.model_dir, args.out_dir)
    except DequantizeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_OPERATOR_ERROR
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
