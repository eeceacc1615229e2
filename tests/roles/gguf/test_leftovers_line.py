"""The deploy output's line for the GGUF step when earlier conversions left files: the
operation's name lists each entry removed and the room that frees, in GB (10^9 bytes)."""

from __future__ import annotations

from roles.gguf import operation_name
from tests.core.test_gguf_split import GGUF_DIR, llamacpp_plan

STEM = "nvidia--GLM-5.2-NVFP4"
OLD_PARTS = {  # the Q8_0 split the plan made before its quant was changed to Q4_K_M
    f"{STEM}-Q8_0-parts/{STEM}-Q8_0-00001-of-00002.gguf": 123_500_000_000,
    f"{STEM}-Q8_0-parts/{STEM}-Q8_0-00002-of-00002.gguf": 123_531_250_000,
    f"{STEM}-Q8_0-parts.stamp.json": 650,
}


def test_the_line_names_each_removed_entry_and_the_room_freed() -> None:
    gguf = llamacpp_plan({"checkpoint": "nvidia/GLM-5.2-NVFP4"}, "Q4_K_M").gguf
    assert gguf is not None
    left = gguf.leftovers({**OLD_PARTS, "notes.txt": 10**12})
    freed = f"{sum(OLD_PARTS.values()) / 10**9:.1f} GB"
    removed = f"{STEM}-Q8_0-parts, {STEM}-Q8_0-parts.stamp.json ({freed} freed)"
    assert freed == "247.0 GB"

    converting = operation_name(gguf, True, left)
    assert converting == (
        f"Convert {gguf.model_dir} to Q4_K_M, then remove what earlier conversions left in "
        f"{GGUF_DIR}: {removed}"
    )
    current = operation_name(gguf, False, left)
    assert current == f"Remove what earlier conversions left in {GGUF_DIR}: {removed}"
    assert operation_name(gguf, True, {}) == f"Convert {gguf.model_dir} to Q4_K_M"
