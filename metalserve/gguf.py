"""How a safetensors checkpoint becomes a GGUF on the host: straight through llama.cpp's converter,
or dequantized to BF16 first where the pinned converter cannot read its quantization; and whether
the result is cut into parts by ``llama-gguf-split``, under which names; and which files in the
GGUF directory earlier conversions of the same checkpoint left that a plan no longer serves from.

Example::

    conversion_route("fbgemm_fp8")  # "bf16-first"
    conversion_route("fp8")         # "direct": the converter dequantizes block-wise FP8 itself
    split_parts(462 * GB)           # 3: parts of at most SPLIT_PART_BYTES each, by the estimate
    split_path("/g/m-Q4_K_M", 1, 3) # "/g/m-Q4_K_M-00001-of-00003.gguf": llama-server's -m
    leftovers({"m-Q8_0.gguf": 9, "m-Q4_K_M.gguf": 5, "notes.txt": 1}, "m", ("Q4_K_M", "Q8_0"),
              served="m-Q4_K_M.gguf", lock="m-Q4_K_M.gguf.lock")  # {"m-Q8_0.gguf": 9}
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Literal

from metalserve.errors import PlanError
from metalserve.hardware import GB

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


GGUF_SPLIT_TOOL = "llama-gguf-split"
"""The llama.cpp target that cuts a GGUF into parts (llama.cpp 0c1e57098
tools/gguf-split/CMakeLists.txt); built only for a plan that splits."""

SPLIT_PART_BYTES = 200 * GB
"""The size a converted GGUF's parts are planned at most: the Hugging Face Hub's recommendation
for large files, "we strongly recommend splitting them into chunks <200GB each" (huggingface/
hub-docs docs/hub/storage-limits.md, "File size", since hub-docs#2037): a copy that breaks
resumes at a part, not at byte 0, and the parts can be published or mirrored as they are."""

SPLIT_PART_MAX_BYTES = 500 * GB
"""The most a part may weigh once made: the Hub's hard limit, "no single file will exceed 500GB"
(the same page). The parts are planned from an estimate at ``SPLIT_PART_BYTES``; the host makes
them from the real file, up to this size, so an estimate a little short still gives the planned
number of parts."""

GGUF_SPLIT = re.compile(r"(?P<prefix>.+)-(?P<index>[0-9]{5})-of-(?P<count>[0-9]{5})\.gguf")
"""llama.cpp names the parts of a split GGUF ``PREFIX-%05d-of-%05d.gguf`` (``llama_split_path``
in src/llama.cpp); llama-server is given the first, reads ``split.count`` from it and opens the
others by that name (``llama_split_prefix``): a link under another name would not be found."""


def split_path(prefix: str, index: int, count: int) -> str:
    """Part ``index`` (from 1) of ``count`` of the split GGUF ``prefix``, as llama.cpp names it."""
    return f"{prefix}-{index:05d}-of-{count:05d}.gguf"


def split_parts(estimate_bytes: int) -> int:
    """How many parts a converted GGUF of ``estimate_bytes`` is cut into; 1: it is not split.

    The unit's ``-m`` names part 1 with the count in it, and the unit is written from the plan,
    so the count is decided here, from the estimate (``metalserve.sizing.gguf_bytes_from``),
    before any file exists. The host then makes exactly that many parts from the real file: it
    asks llama-gguf-split's own ``--dry-run`` for the smallest ``--split-max-size`` that gives
    this count, up to ``SPLIT_PART_MAX_BYTES`` a part, and refuses in one line when no size does.

    Why not the alternatives: a count from ``--split-max-tensors`` needs the tensor count the
    converter will write, which the architecture does not fix (MTP layers, tied embeddings,
    rope tables come and go with the converter); a count that follows the real file would give
    part 1 a name the plan, and so the unit, cannot know; renaming parts afterwards does not
    work, as each part records the count (``split.count``) llama-server checks the names by. The
    estimate matches llama.cpp's own Q4_K_M figures within 1 % (tools/quantize/README.md: 4.9,
    43.1 and 249.1 GB for Llama 3.1 8B, 70B and 405B), far inside the room between the planned
    part size and the hard limit."""
    return max(1, math.ceil(estimate_bytes / SPLIT_PART_BYTES))


# --------------------------------------------------------------------------- names on the host
# What a conversion of the checkpoint STEM writes in the GGUF directory, for any quant, split or
# not. The host script (roles/gguf/files/convert_quantize.py) cannot import this module; it
# writes the same names, and tests/roles/gguf/test_leftovers_script.py checks each name it wrote
# against these.

STAMP_SUFFIX = ".stamp.json"
"""Beside each output, what it was made from and its size (convert_quantize.py ``stamp_path``)."""

LOCK_SUFFIX = ".lock"
"""Beside the quantized file, the ``flock`` the role's convert command holds while it runs."""

PARTS_SUFFIX = "-parts"
"""A split's folder: the quantized file's name without ``.gguf``, then this."""

BF16_SUFFIX = "-BF16"
"""The BF16 copy of a checkpoint the converter cannot read (``DEQUANTIZED_FIRST``)."""


def quantized_name(stem: str, quant: str) -> str:
    """The file ``llama-quantize`` writes for ``quant`` (with ``F16``: the converter's f16)."""
    return f"{stem}-{quant}.gguf"


def parts_name(stem: str, quant: str) -> str:
    """The folder the ``quant`` file's parts are cut into."""
    return f"{stem}-{quant}{PARTS_SUFFIX}"


def _written_by(stem: str, quants: Iterable[str]) -> re.Pattern[str]:
    """Every name a conversion of ``stem`` writes in the GGUF directory: each output (the
    quantized file, a split's folder, the BF16 copy), its stamp, the quantized file's lock, and
    what a killed run leaves: an output under its temporary name ``.<output>.<pid>.partial``, a
    stamp under ``tempfile``'s ``.<stamp>.`` and 8 characters of ``[a-z0-9_]``."""
    quant = "|".join(re.escape(q) for q in quants)
    name = re.escape(stem)
    gguf = rf"{name}-(?:{quant})\.gguf"
    output = (
        rf"(?:{gguf}|{name}-(?:{quant}){re.escape(PARTS_SUFFIX)}|{name}{re.escape(BF16_SUFFIX)})"
    )
    stamp = re.escape(STAMP_SUFFIX)
    return re.compile(
        rf"{output}(?:{stamp})?|{gguf}{re.escape(LOCK_SUFFIX)}"
        rf"|\.{output}\.[0-9]+\.partial|\.{output}{stamp}\.[a-z0-9_]{{8}}"
    )


def leftovers(
    found: Mapping[str, int], stem: str, quants: Iterable[str], served: str, lock: str
) -> dict[str, int]:
    """What a conversion of ``stem`` left in the GGUF directory that the plan does not serve
    from, each entry with the bytes it holds: the output of another quant, the single file of a
    split plan or the parts folder of an unsplit one, an f16 or BF16 intermediate, a killed
    run's temporary output. ``found`` lists the directory's files, each by its path in it, with
    its size (``roles.sizes.FileSizes``); ``served`` is the output the plan serves from (its
    stamp is kept with it) and ``lock`` the convert command's lock.

    Only names this scheme writes for ``stem`` are taken, whole entries at the top of the
    directory: another checkpoint's outputs (whose stems never make one of these names: each
    adds a quant or ``BF16`` after its own stem), a file an operator put there, or a link, stay.
    """
    written = _written_by(stem, quants)
    kept = {served, f"{served}{STAMP_SUFFIX}", lock}
    sizes: dict[str, int] = {}
    for path, size in found.items():
        entry = path.split("/", 1)[0]
        if entry not in kept and written.fullmatch(entry):
            sizes[entry] = sizes.get(entry, 0) + size
    return dict(sorted(sizes.items()))
