#!/usr/bin/env python3
"""Turn a Hugging Face checkpoint into a quantized GGUF, atomically — run by the gguf role.

Runs with the host's converter venv Python (torch CPU, transformers, sentencepiece). Two steps,
each written under a temporary name and renamed only when it finished:

1. ``convert_hf_to_gguf.py MODEL --outtype f16`` → ``--f16`` (the llama.cpp tree's own converter,
   with its vendored ``gguf-py``);
2. ``llama-quantize F16 OUT TYPE`` → ``--out``.

Each output gets a sidecar ``<file>.stamp.json`` naming what it was made from (the weights stamp
written by the weights role, the llama.cpp commit, the out type) and the output's size in
``bytes``. A step whose output exists at its stamped size with a matching stamp is skipped, so a
re-run after a kill resumes at the step that did not finish, a file deleted or cut short since is
made again, and a run with nothing changed does nothing. ``--drop-f16`` removes the f16 once the
quantized file is in place (it is as large as the checkpoint).

A killed run leaves at most a ``.<file>.<pid>.partial`` beside the output, never under the
output's name; the next run (one at a time: the role holds a ``flock``) removes it first. A full
disk is one line on stderr naming how much room the step needs where; the partial file is removed.

Example::

    /opt/metalserve/convert-venv/bin/python convert_quantize.py \\
        --llamacpp-src /opt/llama.cpp/src-0c1e57098 --quantize /opt/llama.cpp/current/bin/llama-quantize \\
        --model-dir /var/lib/metalserve/models/tiny-moe \\
        --f16 /var/lib/metalserve/gguf/tiny-moe.f16.gguf --out /var/lib/metalserve/gguf/tiny-moe.Q4_K_M.gguf \\
        --type Q4_K_M
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_STAMP = ".metalserve-weights.json"
EXIT_OPERATOR_ERROR = 2
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_MARKERS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT), "[Errno 28]")
"""How a full disk shows in a step's stderr: Python's ``OSError: [Errno 28] No space left on
device`` from convert_hf_to_gguf.py, ``strerror`` text from C/C++ tools."""
FULL = f"the disk full ({os.strerror(errno.ENOSPC)}; partial file removed)"
BYTES_PER_PARAM = {"float32": 4, "float16": 2, "bfloat16": 2}
"""Bytes per weight of a checkpoint's ``torch_dtype`` (config.json); FP8 checkpoints (transformers'
``quantization_config.quant_method == "fp8"``) keep 1."""


class ConvertError(Exception):
    """One line for the operator: what was expected, what was found, what to do."""


def stamp_path(output: Path) -> Path:
    return output.with_name(output.name + ".stamp.json")


def is_current(output: Path, inputs: dict[str, object]) -> bool:
    """Whether ``output`` was made from exactly ``inputs`` and is still the size it was made."""
    try:
        stamp = json.loads(stamp_path(output).read_text())
        made = stamp.pop("bytes")
        return stamp == inputs and output.is_file() and output.stat().st_size == made
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


def gigabytes(size: float, up: bool = True) -> str:
    """Decimal GB to a tenth: a need rounded up, what is there rounded down."""
    tenths = max(size, 0) / 1e8
    return f"{(math.ceil(tenths) if up else math.floor(tenths)) / 10:.1f}"


def f16_bytes(model_dir: Path, checkpoint_bytes: int) -> int:
    """About how large the f16 GGUF of a checkpoint is: its parameters × 2 bytes, the parameters
    counted from the checkpoint's size and the bytes per weight its config.json names."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    if isinstance(quantization, dict) and quantization.get("quant_method") == "fp8":
        per_param = 1
    else:
        dtype = config.get("torch_dtype") if isinstance(config, dict) else None
        per_param = BYTES_PER_PARAM.get(str(dtype), 2)
    return checkpoint_bytes * 2 // per_param


@dataclass(frozen=True)
class Step:
    """One conversion step: its name, its output, what it is made from, and the room it needs."""

    name: str
    output: Path
    inputs: dict[str, object]
    needed: int
    needed_why: str

    def short_of_room(self, found: str) -> ConvertError:
        """One line: how much must be free where, and how much is."""
        where = self.output.parent if self.output.parent.is_dir() else Path("/")
        free = shutil.disk_usage(where).free
        return ConvertError(f"{self.name}: expected room for {self.output.name} "
                            f"({self.needed_why}), found {found} — fix: free space at {where} "
                            f"until {gigabytes(self.needed)} GB are free "
                            f"({gigabytes(free, up=False)} GB now), then run again")  # fmt: skip


def remove_stale_partials(output: Path) -> list[Path]:
    """A killed run's ``.<name>.<pid>.partial`` files: never used, removed before a step runs."""
    stale = list(output.parent.glob(f".{output.name}.*.partial"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _write_json_atomically(path: Path, document: dict[str, object]) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as tmp:
        try:
            json.dump(document, tmp, indent=2, sort_keys=True)
            tmp.write("\n")
            tmp.flush()
        except OSError:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def _run_into(step: Step, command: list[str]) -> float:
    """Run ``command`` (``{tmp}`` stands for its output file), stamp it with its size, then rename
    it into place. On any failure neither the partial file nor a stamp for it is left; a stale
    output (made from other inputs) is removed first, as it is about to be replaced anyway and its
    room may be needed."""
    output = step.output
    output.parent.mkdir(parents=True, exist_ok=True)
    stamp_path(output).unlink(missing_ok=True)  # no stamp may outlive the file it describes
    output.unlink(missing_ok=True)
    remove_stale_partials(output)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.partial")
    started = time.monotonic()
    try:
        argv = [part.replace("{tmp}", str(tmp)) for part in command]
        run = subprocess.run(argv, capture_output=True, text=True, check=False)
        if run.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            said = f"{run.stderr}\n{run.stdout}"
            if any(marker in said for marker in DISK_FULL_MARKERS):
                raise step.short_of_room(FULL)
            lines = run.stderr.strip().splitlines() or run.stdout.strip().splitlines() or ["-"]
            raise ConvertError(f"{step.name}: expected {output.name}, found exit "
                               f"{run.returncode}: {lines[-1]} — fix: correct the cause; the "
                               "inputs are untouched, so run again afterwards")  # fmt: skip
        # the stamp first: a kill between the two leaves a stamp whose file is missing, which
        # is not current; the file never sits under its name without its stamp
        _write_json_atomically(stamp_path(output), {**step.inputs, "bytes": tmp.stat().st_size})
        os.replace(tmp, output)
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        tmp.unlink(missing_ok=True)
        raise step.short_of_room(FULL) from None
    finally:
        tmp.unlink(missing_ok=True)
    return round(time.monotonic() - started, 2)


def convert_and_quantize(args: argparse.Namespace) -> dict[str, object]:
    model_dir: Path = args.model_dir
    try:
        weights = json.loads((model_dir / WEIGHTS_STAMP).read_text())
    except (OSError, ValueError):
        raise ConvertError(f"{model_dir}: expected a verified checkpoint ({WEIGHTS_STAMP}), found "
                           "none — fix: run the weights step first") from None  # fmt: skip
    converter = args.llamacpp_src / "convert_hf_to_gguf.py"
    if not converter.is_file():
        raise ConvertError(f"{converter}: expected llama.cpp's converter, found nothing — fix: "
                           "point --llamacpp-src at the unpacked llama.cpp source")  # fmt: skip

    f16_inputs = {"weights": weights, "llamacpp": args.llamacpp_commit, "outtype": "f16"}
    out_inputs = {**f16_inputs, "type": args.type}
    result: dict[str, object] = {"out": str(args.out), "type": args.type, "changed": False}
    if is_current(args.out, out_inputs):
        return result

    if not is_current(args.f16, f16_inputs):
        checkpoint = weights.get("bytes") if isinstance(weights, dict) else None
        needed = f16_bytes(model_dir, checkpoint if isinstance(checkpoint, int) else 0)
        convert = Step("convert_hf_to_gguf.py", args.f16, f16_inputs, needed,
                       "an f16 GGUF: 2 bytes per weight of the checkpoint")  # fmt: skip
        args.f16.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(args.f16)  # their room counts as free
        free = shutil.disk_usage(args.f16.parent).free
        if free < needed:  # fail now, not hours into the conversion
            raise convert.short_of_room(f"{gigabytes(free, up=False)} GB free")
        result["convert_s"] = _run_into(convert, [
            sys.executable, str(converter), str(model_dir), "--outtype", "f16", "--outfile", "{tmp}",
        ])  # fmt: skip
    threads = str(args.threads or os.cpu_count() or 1)
    quantize = Step("llama-quantize", args.out, out_inputs, args.f16.stat().st_size,
                    "at most the f16's size")  # fmt: skip
    result["quantize_s"] = _run_into(
        quantize, [str(args.quantize), str(args.f16), "{tmp}", args.type, threads]
    )
    if args.drop_f16:
        stamp_path(args.f16).unlink(missing_ok=True)
        args.f16.unlink(missing_ok=True)
    result["changed"] = True
    result["bytes"] = args.out.stat().st_size
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llamacpp-src", required=True, type=Path)
    parser.add_argument("--llamacpp-commit", required=True, help="recorded in the stamps")
    parser.add_argument("--quantize", required=True, type=Path, help="the llama-quantize binary")
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--f16", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--type", default="Q4_K_M")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--drop-f16", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = convert_and_quantize(args)
    except ConvertError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_OPERATOR_ERROR
    except OSError as error:
        print(f"error: {error.filename or args.out.parent}: expected to write the GGUF files, "
              f"found {error.strerror or error} — fix: check the directory's owner, mode and "
              "disk, then run again", file=sys.stderr)  # fmt: skip
        return EXIT_OPERATOR_ERROR
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
