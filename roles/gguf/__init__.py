"""HF checkpoint → GGUF on the host: the real ``convert_hf_to_gguf.py`` (f16; a checkpoint whose
quantization it cannot read is dequantized to BF16 first, ``files/dequantize_bf16.py``), then
``llama-quantize`` (Q4_K_M by default), then, where the plan splits it, ``llama-gguf-split`` into
the planned number of parts in a folder of their own; each into a temporary name, renamed, then
stamped with what it was made from and its size (``files/convert_quantize.py``). A re-run with
the same inputs does nothing, unless a stat finds the served file (or a part) gone or of another
size than stamped: then it is made again.

What earlier conversions of the same checkpoint left in the GGUF directory and the plan no longer
serves from (the file of another quant, the parts folder of a split the plan no longer makes, a
killed run's temporary output: ``GgufPlan.leftovers`` names them) is removed by the same command,
once the served output is in place and verified, never before: a conversion that fails leaves
them, and the service keeps the file it runs on. The operation's name lists them and the room
they free (the room comes back once no process holds them open: llama-server keeps its old file
until the service step restarts it). A run with nothing left over does nothing.

Example::

    from roles import gguf
    gguf.install(plan)
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import files, server

from metalserve.gguf import GGUF_SPLIT_TOOL, STAMP_SUFFIX
from metalserve.hardware import GB
from metalserve.plan import GgufPlan, HostPlan, LlamaCppBuildPlan
from roles.sizes import FileSizes
from roles.venv import ensure_venv
from roles.weights import read_stamp

SCRIPT = Path(__file__).parent / "files" / "convert_quantize.py"
DEQUANTIZE = Path(__file__).parent / "files" / "dequantize_bf16.py"


def _json_fact(path: str) -> object:
    try:
        return json.loads("\n".join(host.get_fact(FileContents, path=path) or []))
    except ValueError:
        return None


def is_current(plan: HostPlan, gguf: GgufPlan, build: LlamaCppBuildPlan) -> bool:
    """The served output's stamp names these weights, this llama.cpp, this quant type (and the
    number of parts), and the output is on the host at the size the stamp recorded: the
    quantized file, or the split's folder holding exactly the planned parts."""
    if plan.weights is None:
        return False
    expected: dict[str, object] = {
        "weights": read_stamp(plan.weights),
        "llamacpp": build.version,
        "outtype": "f16",
        "type": gguf.quant,
    }
    output = gguf.out_path
    if gguf.split is not None:
        expected["parts"] = gguf.split.parts
        output = gguf.split.folder
    stamp = _json_fact(f"{output}{STAMP_SUFFIX}")
    if expected["weights"] is None or not isinstance(stamp, dict):
        return False
    made = stamp.get("bytes")
    if {k: v for k, v in stamp.items() if k != "bytes"} != expected or not isinstance(made, int):
        return False
    found = _found(gguf)
    if found != made:
        said = f"is {found} bytes" if isinstance(found, int) else found
        host.log(
            f"gguf: {output} {said}, stamped {made}: converting again", log_func=logger.warning
        )
    return found == made


def _found(gguf: GgufPlan) -> int | str:
    """The output's size in bytes as a stat finds it, or what is wrong with it."""
    if gguf.split is None:
        found = host.get_fact(File, path=gguf.out_path)
        size = found.get("size") if isinstance(found, dict) else None
        return size if isinstance(size, int) else "is missing"
    parts = host.get_fact(FileSizes, path=gguf.split.folder)
    wanted = gguf.split.names()
    missing = [name for name in wanted if name not in parts]
    if missing:
        more = f" and {len(missing) - 1} more of its parts" if len(missing) > 1 else ""
        return f"lacks {missing[0]}{more}"
    if len(parts) != len(wanted):
        return f"holds {len(parts)} files, not only its {len(wanted)} parts"
    return sum(parts.values())


def convert_command(
    plan: HostPlan,
    gguf: GgufPlan,
    build: LlamaCppBuildPlan,
    script: str,
    leftovers: Sequence[str] = (),
) -> str:
    """The conversion (nothing when the served output is current), then the removal of
    ``leftovers``, names in the GGUF directory."""
    # flock: a conversion orphaned by a killed deploy may still run; the second one to get the
    # lock finds the stamped output and does nothing.
    return shlex.join(
        [
            "flock",
            gguf.lock_path,
            f"{gguf.converter_venv}/bin/python",
            script,
            *("--llamacpp-src", f"{build.current}/src", "--llamacpp-commit", build.version),
            *("--quantize", f"{build.bin}/llama-quantize", "--model-dir", gguf.model_dir),
            *("--f16", gguf.f16_path, "--out", gguf.out_path, "--type", gguf.quant),
            *("--converter-handles", ",".join(gguf.converter_methods)),
            *("--bf16-first", ",".join(gguf.bf16_methods), "--bf16-dir", gguf.bf16_dir),
            "--drop-f16",
            *_split_args(gguf, build),
            *(a for name in leftovers for a in ("--leftover", f"{gguf.folder}/{name}")),
        ]
    )


def operation_name(gguf: GgufPlan, converting: bool, leftovers: Mapping[str, int]) -> str:
    """The convert command's name in the deploy output: what it converts, what it removes and
    the room that frees."""
    convert = f"Convert {gguf.model_dir} to {gguf.quant}"
    if not leftovers:
        return convert
    freed = f"{sum(leftovers.values()) / GB:.1f} GB"
    removed = (
        f"remove what earlier conversions left in {gguf.folder}: "
        f"{', '.join(leftovers)} ({freed} freed)"
    )
    return f"{convert}, then {removed}" if converting else removed[0].upper() + removed[1:]


def _split_args(gguf: GgufPlan, build: LlamaCppBuildPlan) -> list[str]:
    split = gguf.split
    if split is None:
        return []
    return [
        *("--gguf-split", f"{build.bin}/{GGUF_SPLIT_TOOL}", "--split-prefix", split.prefix),
        *("--split-parts", str(split.parts), "--split-first", split.first),
        *("--split-max-bytes", str(split.part_max_bytes)),
        *("--split-estimate", str(split.estimate_bytes)),
    ]


@deploy("GGUF: install")
def install(plan: HostPlan) -> None:
    gguf, build = plan.gguf, plan.llamacpp
    if gguf is None or build is None:
        return
    found = host.get_fact(FileSizes, path=gguf.folder)
    leftovers = gguf.leftovers(found)
    converting = not is_current(plan, gguf, build)
    if not converting and not leftovers:
        return
    ensure_venv(gguf.converter_venv, gguf.converter_requirements, gguf.python)
    script = f"{plan.layout.bin}/convert_quantize.py"
    files.put(name="GGUF converter", src=str(SCRIPT), dest=script, mode="755")
    files.put(
        name="FP8 → BF16 dequantizer",
        src=str(DEQUANTIZE),
        dest=f"{plan.layout.bin}/{DEQUANTIZE.name}",  # beside the converter, which runs it
        mode="755",
    )
    server.shell(
        name=operation_name(gguf, converting, leftovers),
        commands=[convert_command(plan, gguf, build, script, tuple(leftovers))],
    )
