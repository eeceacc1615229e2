#!/usr/bin/env python3
"""Turn a Hugging Face checkpoint into a quantized GGUF, atomically — run by the gguf role.

Runs with the host's converter venv Python (torch CPU, transformers, sentencepiece). Up to four
steps, each written under a temporary name and renamed only when it finished:

0. only for a checkpoint whose ``quantization_config.quant_method`` is in ``--bf16-first`` (one the
   pinned converter cannot dequantize): ``dequantize_bf16.py MODEL`` → ``--bf16-dir``;
1. ``convert_hf_to_gguf.py MODEL --outtype f16`` → ``--f16`` (the llama.cpp tree's own converter,
   with its vendored ``gguf-py``; it dequantizes the ``--converter-handles`` methods itself);
2. ``llama-quantize F16 OUT TYPE`` → ``--out``;
3. only with ``--split-parts N``: ``llama-gguf-split --split-max-size SIZE OUT PREFIX`` → the
   folder of ``--split-prefix``, holding exactly the N parts ``PREFIX-%05d-of-%05d.gguf`` whose
   first is ``--split-first`` (the file the service is given, named by the plan before this
   runs). SIZE is the smallest whole MB at which llama-gguf-split's own ``--dry-run`` plans N
   parts; a part may weigh up to ``--split-max-bytes``. When no size gives N parts (the plan's
   estimate of the file was far off) it stops in one line before writing anything. Once the
   parts are in place the single file is removed.

A method in neither list is refused before anything runs, in one line.

Each ``--leftover`` (what an earlier conversion of the same checkpoint wrote in the GGUF folder
and the plan no longer serves from, as the role names it) is removed once the served output is in
place and verified: after this run made it, or found it current; never when a step failed, so
the output a service still runs on stays until its replacement is there. A temporary output whose
run is still alive (its pid is in its name) is kept. The result names what was removed and the
bytes that freed.

Each output gets a sidecar ``<file>.stamp.json`` naming what it was made from (the weights stamp
written by the weights role, the llama.cpp commit, the out type) and the output's size in
``bytes``. A step whose output exists at its stamped size with a matching stamp is skipped, so a
re-run after a kill resumes at the step that did not finish, a file deleted or cut short since is
made again, and a run with nothing changed does nothing. ``--drop-f16`` removes the intermediates
(the BF16 copy once the f16 is made, the f16 once the quantized file is in place). A split's
folder is stamped as a whole (its parts' total size, and the count).

Before each step the free space where its output goes is checked against what the step writes
(the weights counted from the safetensors headers, 2 bytes each for BF16 and f16; for the split,
the parts its dry run plans: the quantized file's size again); a killed run
leaves at most a ``.<output>.<pid>.partial`` beside the output, never under the output's name; the
next run (one at a time: the role holds a ``flock``) removes it first. A full disk is one line on
stderr naming how much room the step needs where; the partial output is removed.

Example::

    /opt/metalserve/convert-venv/bin/python convert_quantize.py \\
        --llamacpp-src /opt/llama.cpp/src-0c1e57098 --quantize /opt/llama.cpp/current/bin/llama-quantize \\
        --model-dir /var/lib/metalserve/models/tiny-moe \\
        --f16 /var/lib/metalserve/gguf/tiny-moe.f16.gguf --out /var/lib/metalserve/gguf/tiny-moe.Q4_K_M.gguf \\
        --type Q4_K_M --converter-handles fp8,gptq --bf16-first fbgemm_fp8 \\
        --bf16-dir /var/lib/metalserve/gguf/tiny-moe-BF16
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_STAMP = ".metalserve-weights.json"
EXIT_OPERATOR_ERROR = 2
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_MARKERS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT), "[Errno 28]")
"""How a full disk shows in a step's stderr: Python's ``OSError: [Errno 28] No space left on
device`` from convert_hf_to_gguf.py, ``strerror`` text from C/C++ tools."""
FULL = f"the disk full ({os.strerror(errno.ENOSPC)}; partial file removed)"
SAFETENSORS_BITS = {"F64": 64, "F32": 32, "BF16": 16, "F16": 16, "F8_E4M3": 8, "F8_E5M2": 8,
                    "I64": 64, "I32": 32, "I16": 16, "I8": 8, "U8": 8, "BOOL": 8}  # fmt: skip
"""Bits of each safetensors dtype (huggingface/safetensors, the format's ``Dtype``)."""
QUANT_SIDE_TENSORS = (".weight_scale_inv", ".weight_scale", ".input_scale", ".activation_scale",
                      ".g_idx", ".qzeros", ".scales", ".k_scale", ".v_scale")  # fmt: skip
"""Scales and zero points stored beside quantized weights: not weights of the model."""
DEQUANTIZE = Path(__file__).with_name("dequantize_bf16.py")
MB = 1000 * 1000
"""llama-gguf-split's M: ``--split-max-size 500M`` is 500 * 1000 * 1000 bytes of tensors per part
(llama.cpp 0c1e57098 tools/gguf-split/gguf-split.cpp ``split_str_to_n_bytes``)."""
DRY_RUN_COUNT = re.compile(r"^n_split: ([0-9]+)$", re.MULTILINE)
DRY_RUN_PART = re.compile(r"^split [0-9]{5}: n_tensors = ([0-9]+), total_size = ([0-9]+)M$",
                          re.MULTILINE)  # fmt: skip
"""What ``llama-gguf-split --dry-run`` prints (``split_strategy::print_info``): the number of parts,
then each part's tensors and its size in whole MB rounded down, the tensors' padding left out."""
GGUF_ALIGNMENT = 32
"""Each tensor's data is padded to this many bytes in a part (``GGUF_DEFAULT_ALIGNMENT``)."""
PARTIAL_PID = re.compile(r"\..+\.([0-9]+)\.partial")
"""A step's output under its temporary name, ``.<output>.<pid>.partial`` (``_run_into``)."""


class ConvertError(Exception):
    """One line for the operator: what was expected, what was found, what to do."""


def stamp_path(output: Path) -> Path:
    return output.with_name(output.name + ".stamp.json")


def size_of(output: Path) -> int | None:
    """A file's size, or the total of a folder's files; None when it is not there."""
    if output.is_file():
        return output.stat().st_size
    if output.is_dir():
        return sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    return None


def remove(output: Path) -> None:
    if output.is_dir() and not output.is_symlink():
        shutil.rmtree(output)
    else:
        output.unlink(missing_ok=True)


def is_current(output: Path, inputs: dict[str, object]) -> bool:
    """Whether ``output`` was made from exactly ``inputs`` and is still the size it was made."""
    try:
        stamp = json.loads(stamp_path(output).read_text())
        made = stamp.pop("bytes")
        return stamp == inputs and size_of(output) == made
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


def gigabytes(size: float, up: bool = True) -> str:
    """Decimal GB to a tenth: a need rounded up, what is there rounded down."""
    tenths = max(size, 0) / 1e8
    return f"{(math.ceil(tenths) if up else math.floor(tenths)) / 10:.1f}"


def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return header if isinstance(header, dict) else {}


def weight_count(model_dir: Path, checkpoint_bytes: int, packed_bits: int | None) -> int:
    """The checkpoint's weights, counted from its safetensors headers (no tensor is read): the
    elements of each tensor, quantization scales left out, integers packing ``packed_bits``-bit
    weights (gptq, awq) counted per packed weight. Without shards: the checkpoint's bytes / 2."""
    count, found = 0, False
    for shard in sorted(model_dir.glob("*.safetensors")):
        found = True
        for name, entry in _safetensors_header(shard).items():
            if name == "__metadata__" or name.endswith(QUANT_SIDE_TENSORS):
                continue
            elements = math.prod(entry.get("shape") or [1])
            bits = SAFETENSORS_BITS.get(entry.get("dtype"), 16)
            if packed_bits and entry.get("dtype") in ("I32", "I16", "U8", "I8"):
                elements = elements * bits // packed_bits
            count += elements
    return count if found else checkpoint_bytes // 2


def quantization(model_dir: Path) -> dict:
    """config.json's ``quantization_config`` ({} when the checkpoint is not pre-quantized)."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    found = config.get("quantization_config") if isinstance(config, dict) else None
    return found if isinstance(found, dict) else {}


@dataclass(frozen=True)
class Step:
    """One conversion step: its name, its output, what it is made from, and the room it needs."""

    name: str
    output: Path
    inputs: dict[str, object]
    needed: int
    needed_why: str
    folder: bool = False
    """The command writes into ``{tmp}`` as a folder, made empty before it runs."""
    verify: Callable[[Path], str | None] | None = None
    """What is wrong with the finished ``{tmp}`` (None: nothing), checked before it is stamped."""

    def check_room(self) -> None:
        """Refuse now, not hours into the step, when its output cannot fit."""
        free = shutil.disk_usage(self.output.parent).free
        if free < self.needed:
            raise self.short_of_room(f"{gigabytes(free, up=False)} GB free")

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
        remove(path)
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
    """Run ``command`` (``{tmp}`` stands for its output, a file or a folder) once the room it needs
    is there, stamp the output with its size, then rename it into place. On any failure neither
    the partial output nor a stamp for it is left; a stale output (made from other inputs) is
    removed first, as it is about to be replaced anyway and its room may be needed."""
    output = step.output
    output.parent.mkdir(parents=True, exist_ok=True)
    stamp_path(output).unlink(missing_ok=True)  # no stamp may outlive the output it describes
    remove(output)
    remove_stale_partials(output)  # their room counts as free
    step.check_room()
    tmp = output.with_name(f".{output.name}.{os.getpid()}.partial")
    started = time.monotonic()
    try:
        if step.folder:
            tmp.mkdir()
        argv = [part.replace("{tmp}", str(tmp)) for part in command]
        run = subprocess.run(argv, capture_output=True, text=True, check=False)
        made = size_of(tmp)
        if run.returncode != 0 or made is None:
            remove(tmp)
            said = f"{run.stderr}\n{run.stdout}"
            if any(marker in said for marker in DISK_FULL_MARKERS):
                raise step.short_of_room(FULL)
            lines = run.stderr.strip().splitlines() or run.stdout.strip().splitlines() or ["-"]
            raise ConvertError(f"{step.name}: expected {output.name}, found exit "
                               f"{run.returncode}: {lines[-1]} — fix: correct the cause; the "
                               "inputs are untouched, so run again afterwards")  # fmt: skip
        problem = step.verify(tmp) if step.verify else None
        if problem is not None:
            raise ConvertError(f"{step.name}: {problem}")
        # the stamp first: a kill between the two leaves a stamp whose output is missing, which
        # is not current; the output never sits under its name without its stamp
        _write_json_atomically(stamp_path(output), {**step.inputs, "bytes": made})
        os.replace(tmp, output)
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        remove(tmp)
        raise step.short_of_room(FULL) from None
    finally:
        remove(tmp)
    return round(time.monotonic() - started, 2)


def _route(model_dir: Path, args: argparse.Namespace) -> bool:
    """Whether the checkpoint goes through BF16 first; refused when neither route reads it."""
    method = quantization(model_dir).get("quant_method")
    if method is None or method in args.converter_handles:
        return False
    if method in args.bf16_first:
        return True
    raise ConvertError(f"{model_dir}: expected a checkpoint llama.cpp can convert, found "
                       f"quant_method {method!r} — fix: use the model's BF16 checkpoint or a GGUF "
                       "repository")  # fmt: skip


@dataclass(frozen=True)
class Split:
    """The parts the plan asks for: how many, the first one's path (the service's ``-m``), the
    most one may weigh, and the size the count was decided from."""

    tool: Path
    prefix: Path
    parts: int
    first: Path
    max_bytes: int
    estimate: int

    @property
    def folder(self) -> Path:
        return self.prefix.parent

    def dry_run(self, source: Path, size_mb: int) -> list[int]:
        """What llama-gguf-split would cut ``source`` into at ``size_mb`` MB of tensors a part:
        the most each part will weigh (its MB rounded down, one MB more, and its padding)."""
        run = subprocess.run(
            [str(self.tool), "--dry-run", "--split-max-size", f"{size_mb}M", str(source),
             str(self.prefix)], capture_output=True, text=True, check=False,
        )  # fmt: skip
        count = DRY_RUN_COUNT.search(run.stdout)
        sizes = [(int(mb) + 1) * MB + int(tensors) * GGUF_ALIGNMENT
                 for tensors, mb in DRY_RUN_PART.findall(run.stdout)]  # fmt: skip
        if run.returncode != 0 or count is None or int(count[1]) != len(sizes):
            lines = run.stderr.strip().splitlines() or run.stdout.strip().splitlines() or ["-"]
            raise ConvertError(f"{self.tool.name} --dry-run: expected the parts it plans for "
                               f"{source.name}, found exit {run.returncode}: {lines[-1]} — fix: "
                               f"remove {source} if it is damaged (it is made again) or let the "
                               "deploy's llama.cpp step rebuild the tool, then run again")  # fmt: skip
        return sizes

    def cut(self, source: Path) -> tuple[int, list[int]]:
        """The smallest ``--split-max-size`` (MB) at which llama-gguf-split plans exactly
        ``parts`` parts of ``source``, each within ``max_bytes``, and those parts' sizes. Fewer
        MB never means fewer parts (each part takes tensors in order until the next would not
        fit), so the smallest size with at most ``parts`` parts is found by bisection, from
        ``parts`` equal shares (a smaller size needs more parts unless one tensor outweighs a
        share, and the tool refuses a size below its first tensor) up to ``max_bytes``: about
        20 dry runs, each reading only the file's header."""
        high = self.max_bytes // MB
        low = min(max(1, source.stat().st_size // (self.parts * MB)), high)
        if len(self.dry_run(source, high)) > self.parts:
            raise self.refused(source, f"needs more than {self.parts} parts of "
                                       f"{gigabytes(self.max_bytes)} GB")  # fmt: skip
        while low < high:
            middle = (low + high) // 2
            if len(self.dry_run(source, middle)) <= self.parts:
                high = middle
            else:
                low = middle + 1
        sizes = self.dry_run(source, high)
        if len(sizes) != self.parts or max(sizes) > self.max_bytes:
            raise self.refused(source, f"cuts into {len(sizes)} parts at best, the largest "
                                       f"{gigabytes(max(sizes))} GB")  # fmt: skip
        return high, sizes

    def refused(self, source: Path, found: str) -> ConvertError:
        return ConvertError(
            f"{self.tool.name}: expected {self.parts} parts of at most "
            f"{gigabytes(self.max_bytes)} GB each, named as the service is given them (the "
            f"plan's estimate: {gigabytes(self.estimate)} GB), found {source.name} weighs "
            f"{gigabytes(source.stat().st_size)} GB and {found} — fix: the plan's size estimate "
            "is far off for this checkpoint: serve a GGUF repository of the model instead "
            "(model.repo_id and model.gguf_file); the quantized file is kept, nothing was split"
        )

    def problem(self, made: Path) -> str | None:
        """What is wrong with the finished folder of parts: not exactly ``parts`` files, or no
        file under the first part's planned name."""
        names = sorted(p.name for p in made.iterdir())
        if len(names) == self.parts and self.first.name in names:
            return None
        return (f"expected {self.parts} parts, the first named {self.first.name}, found "
                f"{len(names)}: {', '.join(names[:2]) or 'none'} — fix: the pinned llama.cpp "
                "names the parts otherwise than metalserve.gguf.split_path; align the two")  # fmt: skip


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
    split: Split | None = args.split
    served, served_inputs = args.out, out_inputs
    if split is not None:
        served, served_inputs = split.folder, {**out_inputs, "parts": split.parts}
    result: dict[str, object] = {"out": str(split.first if split else args.out),
                                 "type": args.type, "changed": False}  # fmt: skip
    if is_current(served, served_inputs):
        if split is not None:  # a run killed between the rename and the removal left it
            _drop(args.out)
    else:
        _convert(args, converter, weights, f16_inputs, out_inputs, served_inputs, result)
        result["changed"] = True
        result["bytes"] = size_of(served)
    # here the served output is in place, stamped with its size and checked: current, or made
    if args.leftover:
        result.update(remove_leftovers(args.leftover))
    return result


def _convert(args: argparse.Namespace, converter: Path, weights: object,
             f16_inputs: dict[str, object], out_inputs: dict[str, object],
             served_inputs: dict[str, object], result: dict[str, object]) -> None:  # fmt: skip
    """Make the served output: the quantized file, then, where the plan splits it, its parts;
    each step's seconds into ``result``."""
    split: Split | None = args.split
    if not is_current(args.out, out_inputs):
        result.update(_quantized(args, converter, weights, f16_inputs, out_inputs))
    if split is not None:
        size_mb, sizes = split.cut(args.out)
        cut = Step(split.tool.name, split.folder, served_inputs, sum(sizes),
                   f"the {split.parts} parts its dry run plans: the quantized file's size again",
                   folder=True, verify=split.problem)  # fmt: skip
        result["split_s"] = _run_into(cut, [
            str(split.tool), "--split-max-size", f"{size_mb}M", str(args.out),
            f"{{tmp}}/{split.prefix.name}",
        ])  # fmt: skip
        result["parts"] = split.parts
        _drop(args.out)


def _running(path: Path) -> bool:
    """Whether ``path`` is a temporary output whose run (the pid in its name) is still alive."""
    pid = PARTIAL_PID.fullmatch(path.name)
    if pid is None:
        return False
    try:
        os.kill(int(pid[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_leftovers(leftovers: list[Path]) -> dict[str, object]:
    """Remove each of ``leftovers`` that is there, unless a live run is writing it: what was
    removed, the bytes that freed, and what was kept in use."""
    removed, kept, freed = [], [], 0
    for path in leftovers:
        size = size_of(path)
        if size is None:
            continue
        if _running(path):
            kept.append(path.name)
            continue
        remove(path)
        removed.append(path.name)
        freed += size
    return {"removed": removed, "freed_bytes": freed, "kept_in_use": kept}


def _drop(output: Path) -> None:
    """Remove an intermediate output and its stamp (the stamp first)."""
    stamp_path(output).unlink(missing_ok=True)
    remove(output)


def _quantized(args: argparse.Namespace, converter: Path, weights: object,
               f16_inputs: dict[str, object], out_inputs: dict[str, object]) -> dict[str, object]:  # fmt: skip
    """Make ``--out``: the BF16 copy where needed, the f16, then llama-quantize; each step's
    seconds."""
    model_dir: Path = args.model_dir
    timings: dict[str, object] = {}
    # with --type F16 the converter's f16 is the output itself (the plan names one file for
    # both): it is stamped as the output, nothing is quantized, and it is not dropped
    served_f16 = args.out == args.f16
    if served_f16:
        f16_inputs = out_inputs
    if not is_current(args.f16, f16_inputs):
        checkpoint = weights.get("bytes") if isinstance(weights, dict) else None
        packed = quantization(model_dir).get("bits")
        count = weight_count(model_dir, checkpoint if isinstance(checkpoint, int) else 0,
                             packed if isinstance(packed, int) else None)  # fmt: skip
        source = model_dir
        if _route(model_dir, args):
            bf16_inputs = {"weights": weights, "outtype": "bf16"}
            if not is_current(args.bf16_dir, bf16_inputs):
                dequantize = Step("dequantize_bf16.py", args.bf16_dir, bf16_inputs, count * 2,
                                  "a BF16 copy of the checkpoint: 2 bytes per weight")  # fmt: skip
                timings["dequantize_s"] = _run_into(dequantize, [
                    sys.executable, str(args.dequantize), str(model_dir), "{tmp}",
                ])  # fmt: skip
            source = args.bf16_dir
        convert = Step("convert_hf_to_gguf.py", args.f16, f16_inputs, count * 2,
                       "an f16 GGUF: 2 bytes per weight of the checkpoint")  # fmt: skip
        timings["convert_s"] = _run_into(convert, [
            sys.executable, str(converter), str(source), "--outtype", "f16", "--outfile", "{tmp}",
        ])  # fmt: skip
    if args.drop_f16:
        _drop(args.bf16_dir)
    if served_f16:
        return timings
    threads = str(args.threads or os.cpu_count() or 1)
    quantize = Step("llama-quantize", args.out, out_inputs, args.f16.stat().st_size,
                    "at most the f16's size")  # fmt: skip
    timings["quantize_s"] = _run_into(
        quantize, [str(args.quantize), str(args.f16), "{tmp}", args.type, threads]
    )
    if args.drop_f16:
        _drop(args.f16)
    return timings


def _split(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Split | None:
    given = (args.gguf_split, args.split_prefix, args.split_parts, args.split_first,
             args.split_max_bytes, args.split_estimate)  # fmt: skip
    if all(value is None for value in given):
        return None
    if any(value is None for value in given) or args.split_parts < 2:
        parser.error("--gguf-split and every --split-* option together, --split-parts 2 or more")
    if args.split_first.parent != args.split_prefix.parent:
        parser.error("--split-first must lie in the folder of --split-prefix")
    return Split(args.gguf_split, args.split_prefix, args.split_parts, args.split_first,
                 args.split_max_bytes, args.split_estimate)  # fmt: skip


def _check_leftovers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    served = args.split.folder if args.split else args.out
    for path in args.leftover:
        if path.parent != args.out.parent or path in (served, stamp_path(served)):
            parser.error(f"--leftover {path}: expected a name in {args.out.parent} other than "
                         f"the served output {served.name} and its stamp")  # fmt: skip


def _methods(text: str) -> tuple[str, ...]:
    return tuple(m for m in text.split(",") if m)


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
    parser.add_argument("--drop-f16", action="store_true", help="remove the BF16 copy and the f16")
    parser.add_argument(
        "--converter-handles",
        type=_methods,
        default=(),
        help="comma-separated quant_methods the converter dequantizes itself",
    )
    parser.add_argument(
        "--bf16-first",
        type=_methods,
        default=(),
        help="comma-separated quant_methods dequantized to BF16 first",
    )
    parser.add_argument("--bf16-dir", type=Path, help="where the BF16 copy goes")
    parser.add_argument(
        "--dequantize", type=Path, default=DEQUANTIZE, help="the dequantize_bf16.py script"
    )
    split = parser.add_argument_group("split (all or none)")
    split.add_argument("--gguf-split", type=Path, help="the llama-gguf-split binary")
    split.add_argument("--split-prefix", type=Path, help="the parts' PREFIX, in their own folder")
    split.add_argument("--split-parts", type=int, help="how many parts (2 or more)")
    split.add_argument("--split-first", type=Path, help="part 1's path, as the service names it")
    split.add_argument("--split-max-bytes", type=int, help="the most one part may weigh")
    split.add_argument("--split-estimate", type=int, help="the size the count was planned from")
    parser.add_argument(
        "--leftover",
        type=Path,
        action="append",
        default=[],
        help="an earlier output in --out's folder the plan no longer serves from: removed once "
        "the served output is verified (repeatable)",
    )
    args = parser.parse_args(argv)
    args.bf16_dir = args.bf16_dir or args.f16.with_name(f"{args.f16.stem}.bf16")
    args.split = _split(parser, args)
    _check_leftovers(parser, args)
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
