#!/usr/bin/env python3
"""Turn a Hugging Face checkpoint into a quantized GGUF, atomically — run by the gguf role.

Runs with the host's converter venv Python (torch CPU, transformers, sentencepiece). Two steps,
each written under a temporary name and renamed only when it finished:

1. ``convert_hf_to_gguf.py MODEL --outtype f16`` → ``--f16`` (the llama.cpp tree's own converter,
   with its vendored ``gguf-py``);
2. ``llama-quantize F16 OUT TYPE`` → ``--out``.

Each output gets a sidecar ``<file>.stamp.json`` naming what it was made from (the weights stamp
written by the weights role, the llama.cpp commit, the out type). A step whose output and matching
stamp exist is skipped, so a re-run after a kill resumes at the step that did not finish, and a
run with nothing changed does nothing. ``--drop-f16`` removes the f16 once the quantized file is
in place (it is as large as the checkpoint).

Example::

    /opt/metalserve/convert-venv/bin/python convert_quantize.py \\
        --llamacpp-src /opt/llama.cpp/src-0c1e57098 --quantize /opt/llama.cpp/current/bin/llama-quantize \\
        --model-dir /var/lib/metalserve/models/tiny-moe \\
        --f16 /var/lib/metalserve/gguf/tiny-moe.f16.gguf --out /var/lib/metalserve/gguf/tiny-moe.Q4_K_M.gguf \\
        --type Q4_K_M
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WEIGHTS_STAMP = ".metalserve-weights.json"
EXIT_OPERATOR_ERROR = 2


class ConvertError(Exception):
    """One line for the operator: what was expected, what was found, what to do."""


def stamp_path(output: Path) -> Path:
    return output.with_name(output.name + ".stamp.json")


def is_current(output: Path, inputs: dict[str, object]) -> bool:
    """Whether ``output`` exists and was made from exactly ``inputs``."""
    try:
        return output.is_file() and json.loads(stamp_path(output).read_text()) == inputs
    except (OSError, ValueError):
        return False


def _write_json_atomically(path: Path, document: dict[str, object]) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as tmp:
        json.dump(document, tmp, indent=2, sort_keys=True)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def _run_into(step: str, output: Path, inputs: dict[str, object], command: list[str]) -> float:
    """Run ``command`` (``{tmp}`` stands for its output file), then rename into place and stamp."""
    output.parent.mkdir(parents=True, exist_ok=True)
    stamp_path(output).unlink(missing_ok=True)  # no stamp may outlive the file it describes
    tmp = output.with_name(f".{output.name}.{os.getpid()}.partial")
    started = time.monotonic()
    try:
        argv = [part.replace("{tmp}", str(tmp)) for part in command]
        run = subprocess.run(argv, capture_output=True, text=True, check=False)
        if run.returncode != 0 or not tmp.is_file():
            lines = run.stderr.strip().splitlines() or run.stdout.strip().splitlines() or ["-"]
            raise ConvertError(f"{step}: expected {output.name}, found exit {run.returncode}: "
                               f"{lines[-1]} — fix: correct the cause; the inputs are untouched, "
                               "so run again afterwards")  # fmt: skip
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    _write_json_atomically(stamp_path(output), inputs)
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
        result["convert_s"] = _run_into("convert_hf_to_gguf.py", args.f16, f16_inputs, [
            sys.executable, str(converter), str(model_dir), "--outtype", "f16", "--outfile", "{tmp}",
        ])  # fmt: skip
    threads = str(args.threads or os.cpu_count() or 1)
    result["quantize_s"] = _run_into(
        "llama-quantize",
        args.out,
        out_inputs,
        [str(args.quantize), str(args.f16), "{tmp}", args.type, threads],
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
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
