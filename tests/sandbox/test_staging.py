"""Cached artefacts are published atomically: an interrupted build leaves nothing taken as done."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metalserve.sandbox.system import staging_dir


def test_a_finished_build_is_renamed_into_place_and_the_scratch_dir_removed(tmp_path: Path) -> None:
    final = tmp_path / "repo"
    with staging_dir(final) as work:
        (work / "out").mkdir()
        (work / "out" / "Release").write_text("ok")
        os.replace(work / "out", final)
    assert (final / "Release").read_text() == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_an_interrupted_build_leaves_no_final_and_no_scratch(tmp_path: Path) -> None:
    final = tmp_path / "repo"
    with pytest.raises(KeyboardInterrupt), staging_dir(final) as work:
        (work / "half-written.deb").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_scratch_dir_left_by_a_killed_build_is_cleared_first(tmp_path: Path) -> None:
    final = tmp_path / "repo"
    stale = tmp_path / f".repo.{os.getpid()}.tmp"
    stale.mkdir()
    (stale / "junk").write_text("x")
    with staging_dir(final) as work:
        assert list(work.iterdir()) == []
