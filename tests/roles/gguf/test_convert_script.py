"""roles/gguf/files/convert_quantize.py run for real, with stand-ins for llama.cpp's converter and
llama-quantize: stamps with sizes, a deleted or cut-short output made again, a full disk as one
line with nothing left taken as complete, and a killed conversion's partial file cleaned up."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.faultkit import CONVERT_QUANTIZE, TRACEBACK, fake_llamacpp, run_host_script

CHECKPOINT_BYTES = 7_863_491  # the weights stamp's "bytes": the f16 of a bf16 checkpoint is as big


class Host:
    """A host's folders for one conversion: the checkpoint, the GGUF folder, llama.cpp stand-ins."""

    def __init__(self, root: Path, checkpoint_bytes: int = CHECKPOINT_BYTES,
                 config: dict | None = None) -> None:  # fmt: skip
        self.model = root / "models" / "tiny"
        self.model.mkdir(parents=True)
        (self.model / "config.json").write_text(json.dumps(config or {"torch_dtype": "bfloat16"}))
        stamp = {"repo": "metalserve/tiny-moe", "revision": "main", "commit": "1f2e3d4c",
                 "bytes": checkpoint_bytes}  # fmt: skip
        (self.model / ".metalserve-weights.json").write_text(json.dumps(stamp))
        self.gguf = root / "gguf"
        self.f16 = self.gguf / "tiny-F16.gguf"
        self.out = self.gguf / "tiny-Q4_K_M.gguf"
        self.src, self.quantize = fake_llamacpp(root / "llama.cpp")

    @property
    def args(self) -> list[str]:
        return [
            "--llamacpp-src", str(self.src), "--llamacpp-commit", "0c1e57098",
            "--quantize", str(self.quantize), "--model-dir", str(self.model),
            "--f16", str(self.f16), "--out", str(self.out), "--type", "Q4_K_M", "--drop-f16",
        ]  # fmt: skip

    def env(self, converter: str = "ok") -> dict[str, str]:
        return {**os.environ, "FAKE_CONVERTER": converter}

    def run(self, converter: str = "ok", inject: str = "") -> subprocess.CompletedProcess[str]:
        return run_host_script(CONVERT_QUANTIZE, self.args, self.env(converter), inject)

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.gguf.iterdir()) if self.gguf.exists() else []


def _stamp(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".stamp.json").read_text())


def test_it_converts_stamps_the_size_and_then_does_nothing(tmp_path: Path) -> None:
    host = Host(tmp_path)
    first = host.run()
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["changed"] is True
    assert _stamp(host.out)["bytes"] == host.out.stat().st_size == 4096 // 4
    assert host.leftovers() == [host.out.name, host.out.name + ".stamp.json"]  # f16 dropped
    assert json.loads(host.run().stdout)["changed"] is False


def test_f16_serves_the_converters_output_itself_and_then_does_nothing(tmp_path: Path) -> None:
    """quant F16: the plan names one file for the f16 and the output; nothing is quantized, and
    the --drop-f16 meant for the intermediate never removes what is served."""
    host = Host(tmp_path)
    host.out = host.f16
    argv = host.args
    argv[argv.index("--type") + 1] = "F16"
    first = run_host_script(CONVERT_QUANTIZE, argv, host.env())
    assert first.returncode == 0, first.stderr
    assert "quantize_s" not in json.loads(first.stdout)
    assert host.leftovers() == [host.f16.name, host.f16.name + ".stamp.json"]
    assert _stamp(host.f16)["bytes"] == host.f16.stat().st_size == 4096
    again = run_host_script(CONVERT_QUANTIZE, argv, host.env())
    assert json.loads(again.stdout)["changed"] is False, again.stdout


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_an_output_deleted_or_cut_short_is_made_again(tmp_path: Path, damage: str) -> None:
    host = Host(tmp_path)
    assert host.run().returncode == 0
    if damage == "delete":
        host.out.unlink()
    else:
        os.truncate(host.out, 100)
    again = host.run()
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] is True
    assert host.out.stat().st_size == _stamp(host.out)["bytes"] == 1024


def _needed_gb(checkpoint_bytes: int) -> str:
    """The f16 of a bf16 checkpoint: 2 bytes per weight, as many bytes as the checkpoint; in GB
    rounded up to a tenth."""
    return f"{math.ceil(checkpoint_bytes / 1e8) / 10:.1f}"


def test_a_full_disk_during_conversion_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    host = Host(tmp_path)
    full = host.run(converter="full-disk")  # the converter dies with OSError ENOSPC, a traceback
    assert full.returncode == 2
    assert full.stderr.count("\n") == 1 and TRACEBACK not in full.stderr, full.stderr
    assert full.stderr.startswith(
        f"error: convert_hf_to_gguf.py: expected room for {host.f16.name} (an f16 GGUF: 2 bytes "
        "per weight of the checkpoint), found the disk full (No space left on device; partial "
        f"file removed) — fix: free space at {host.gguf} until {_needed_gb(CHECKPOINT_BYTES)} GB "
        "are free ("
    )
    assert host.leftovers() == []  # no partial file, no f16, no stamp


def test_too_little_room_is_refused_before_converting(tmp_path: Path) -> None:
    huge = 10**16  # a 10 PB checkpoint: no test machine has that free
    host = Host(tmp_path, checkpoint_bytes=huge)
    refused = host.run(converter="hang")  # would hang if it started
    assert refused.returncode == 2
    assert " GB free — fix: free space at " in refused.stderr
    assert f"until {_needed_gb(huge)} GB are free" in refused.stderr
    assert host.leftovers() == []


def test_a_full_disk_while_stamping_leaves_no_output_taken_as_complete(tmp_path: Path) -> None:
    host = Host(tmp_path)
    inject = (
        "import errno, json\n"
        "def _full(*args, **kwargs):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "json.dump = _full\n"
    )
    full = host.run(inject=inject)
    assert full.returncode == 2 and full.stderr.count("\n") == 1, full.stderr
    assert "found the disk full" in full.stderr and TRACEBACK not in full.stderr
    assert host.leftovers() == []


def test_a_killed_conversion_leaves_only_a_partial_file_which_the_next_run_removes(
    tmp_path: Path,
) -> None:
    host = Host(tmp_path)
    proc = subprocess.Popen([sys.executable, str(CONVERT_QUANTIZE), *host.args],
                            env=host.env("hang"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while not any(n.endswith(".partial") for n in host.leftovers()):
        assert time.monotonic() < deadline and proc.poll() is None, "the converter never started"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # as a killed deploy leaves it
    proc.wait()
    (orphan,) = host.leftovers()
    assert orphan.startswith(f".{host.f16.name}.") and orphan.endswith(".partial")

    again = host.run()

    assert again.returncode == 0, again.stderr
    assert host.leftovers() == [host.out.name, host.out.name + ".stamp.json"]


def _load_script():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("convert_quantize", CONVERT_QUANTIZE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_the_f16_estimate_counts_weights_from_the_safetensors_headers(tmp_path: Path) -> None:
    from tests.roles.gguf.test_dequantize import write_safetensors

    u8, f32, i32 = np.uint8, np.float32, np.int32
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {
        "a.weight": ("F8_E4M3", np.zeros((256, 384), u8)),  # 98 304 weights
        "a.weight_scale_inv": ("F32", np.ones((2, 3), f32)),  # a scale, not a weight
        "norm.weight": ("BF16", np.zeros(384, np.uint16)),
    })  # fmt: skip
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {
        "b.qweight": ("I32", np.zeros((16, 64), i32)),  # 8 4-bit weights per int32
        "b.qzeros": ("I32", np.zeros((1, 8), i32)),
    })  # fmt: skip
    count = _load_script().weight_count(tmp_path, 0, packed_bits=4)
    assert count == 256 * 384 + 384 + 16 * 64 * 8
    assert _load_script().weight_count(tmp_path / "none", 7000, None) == 3500
