"""Which files in the GGUF directory a plan takes as left over by earlier conversions of its
checkpoint (``GgufPlan.leftovers``), and which it never touches.

A plan's conversion writes its served output (the quantized file, or the folder of its parts),
that output's stamp and the convert command's lock; an operator who changes the quant, or a
checkpoint whose plan goes from split to one file or back, leaves the previous plan's files
beside the new ones. These tests derive the files of each plan from the plan's own fields and
check the new plan names exactly the old plan's as left over, and never a file of another
checkpoint or one an operator put there.
"""

from __future__ import annotations

import functools
import posixpath

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from metalserve.engines.llamacpp import QUANT_BITS_PER_WEIGHT
from metalserve.plan import GgufPlan
from metalserve.types import repo_id_problem
from tests.core.test_gguf_split import llamacpp_plan

NVFP4 = {"checkpoint": "nvidia/GLM-5.2-NVFP4"}  # 2 parts at Q8_0, one file at Q4_K_M
TINY = {"repo_id": "org/tiny"}  # size unknown: never split
QUANTS = tuple(QUANT_BITS_PER_WEIGHT)


def gguf(model: dict[str, str], quant: str) -> GgufPlan:
    plan = llamacpp_plan(model, quant).gguf
    assert plan is not None
    return plan


def written(plan: GgufPlan, size: int) -> dict[str, int]:
    """What a finished conversion of ``plan`` leaves in the GGUF directory, as FileSizes lists
    it: each part of a split (``size`` bytes each) or the one file, its stamp, the lock."""
    name = posixpath.basename
    if plan.split is not None:
        folder = name(plan.split.folder)
        files = {f"{folder}/{part}": size for part in plan.split.names()}
        served = folder
    else:
        files = {name(plan.out_path): size}
        served = name(plan.out_path)
    return {**files, f"{served}.stamp.json": 600, f"{name(plan.out_path)}.lock": 0}


def entries(files: dict[str, int]) -> dict[str, int]:
    """The directory's top entries, a folder holding the sum of its files."""
    sums: dict[str, int] = {}
    for path, size in files.items():
        top = path.split("/")[0]
        sums[top] = sums.get(top, 0) + size
    return sums


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param((NVFP4, "Q8_0"), (NVFP4, "Q4_K_M"), id="split to one file"),
        pytest.param((NVFP4, "Q4_K_M"), (NVFP4, "Q8_0"), id="one file to split"),
        pytest.param((TINY, "Q8_0"), (TINY, "Q4_K_M"), id="another quant"),
        pytest.param((TINY, "Q4_K_M"), (TINY, "F16"), id="the f16 served"),
    ],
)
def test_a_changed_plan_takes_the_previous_output_and_only_it(
    before: tuple[dict[str, str], str], after: tuple[dict[str, str], str]
) -> None:
    old, new = gguf(*before), gguf(*after)
    assert (old.split is None) != (new.split is None) or old.quant != new.quant
    old_files, new_files = written(old, 7 * 10**9), written(new, 5 * 10**9)
    assert new.leftovers({**old_files, **new_files}) == entries(old_files)
    assert new.leftovers(new_files) == {}  # the next deploy: nothing left


def test_the_same_plan_takes_nothing_of_its_own() -> None:
    for plan in (gguf(NVFP4, "Q8_0"), gguf(NVFP4, "Q4_K_M"), gguf(TINY, "Q4_K_M")):
        assert plan.leftovers(written(plan, 10**9)) == {}


def test_a_part_count_change_keeps_the_folder_the_plan_cuts_into() -> None:
    """The count is in the parts' names, not the folder's: the conversion replaces the folder
    itself, so the folder is the plan's, whatever it holds."""
    plan = gguf(NVFP4, "Q8_0")
    assert plan.split is not None
    folder = posixpath.basename(plan.split.folder)
    stem = plan.split.prefix.rsplit("/", 1)[1]
    three = {f"{folder}/{stem}-{k:05d}-of-00003.gguf": 10**9 for k in (1, 2, 3)}
    assert plan.leftovers(three) == {}


def test_intermediates_and_killed_runs_are_left_over() -> None:
    """The f16 and the BF16 copy (dropped once the quantized file is in place), the single file
    of a split plan (removed once cut), an output under its temporary name, and a stamp under
    tempfile's."""
    plan = gguf(NVFP4, "Q8_0")
    stem = "nvidia--GLM-5.2-NVFP4"
    found = {
        f"{stem}-F16.gguf": 800,
        f"{stem}-F16.gguf.stamp.json": 8,
        f"{stem}-BF16/model-00001-of-00002.safetensors": 300,
        f"{stem}-BF16/model-00002-of-00002.safetensors": 200,
        f"{stem}-BF16.stamp.json": 9,
        f"{stem}-Q8_0.gguf": 400,
        f"{stem}-Q8_0.gguf.stamp.json": 7,
        f".{stem}-Q8_0-parts.4242.partial/{stem}-Q8_0-00001-of-00002.gguf": 150,
        f".{stem}-F16.gguf.977.partial": 60,
        f".{stem}-Q8_0-parts.stamp.json.a_b9x0zq": 0,
    }
    assert plan.leftovers({**found, **written(plan, 10**9)}) == entries(found)
    assert entries(found)[f"{stem}-BF16"] == 300 + 200


def test_files_the_conversion_never_writes_stay() -> None:
    plan = gguf(TINY, "Q4_K_M")
    mine = written(plan, 10**9)
    others = {
        "README.txt": 1,
        "org--tiny-Q8_0.gguf.bak": 2,  # an operator's copy
        "org--tiny-Q8_0-parts-keep/org--tiny-Q8_0-00001-of-00002.gguf": 3,
        "org--tiny-Q8_0.gguf.partial": 4,  # no pid: not a temporary name of the script's
        ".org--tiny-Q8_0.gguf.partial": 5,
        "org--tiny-Q9_9.gguf": 6,  # no quant metalserve offers
        "org--tiny-q8_0.gguf": 7,  # llama-quantize's spelling is upper case
        "org--tiny.gguf": 8,
        "org--tiny2-Q8_0.gguf": 9,  # another checkpoint, one character more
        "org--tin-Q8_0.gguf": 10,  # another checkpoint, one character less
        "org--tiny-BF16.gguf": 11,
        "sub/org--tiny-Q8_0.gguf": 12,  # not at the top of the directory
    }
    assert plan.leftovers({**mine, **others}) == {}


@functools.cache
def tiny(quant: str) -> GgufPlan:
    return gguf(TINY, quant)


@settings(max_examples=60, deadline=None)
@given(suffix=st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True), quant=st.sampled_from(QUANTS))
def test_another_checkpoint_whose_name_starts_with_this_ones_is_never_touched(
    suffix: str, quant: str
) -> None:
    """A checkpoint named ``org/tiny-<anything>`` writes ``org--tiny-<anything>-<quant>...``:
    none of its files, finished, partial or intermediate, split or not, is taken for
    ``org/tiny``'s, whatever quant ``org/tiny`` is served at."""
    repo = f"org/tiny-{suffix}"
    assume(repo_id_problem(repo) is None)
    other = gguf({"repo_id": repo}, quant)
    stem, out = other.stem, posixpath.basename(other.out_path)
    theirs = {
        **written(other, 10**9),
        f"{stem}-{quant}-parts/{stem}-{quant}-00001-of-00002.gguf": 1,
        f"{stem}-{quant}-parts.stamp.json": 1,
        f"{stem}-F16.gguf": 1,
        f"{stem}-BF16/x.safetensors": 1,
        f".{out}.12.partial": 1,
        f".{stem}-{quant}-parts.12.partial/x.gguf": 1,
        f".{out}.stamp.json.abcd_123": 1,
    }
    for served_here in QUANTS:
        assert tiny(served_here).leftovers(theirs) == {}
