"""The llama.cpp build command, run for real with a stand-in ``cmake`` on PATH: its stamp records
each binary's size, a re-run under the lock does nothing, and a binary deleted or cut short since
makes the build run again."""

from __future__ import annotations

import os
from pathlib import Path

from roles.llamacpp import STAMP, recorded_sizes
from tests.faultkit import FakeBuild


def test_the_stamp_records_every_binary_and_a_rerun_builds_nothing(tmp_path: Path) -> None:
    fake = FakeBuild(tmp_path)
    assert fake.run() == 1
    stamp = (Path(fake.build.prefix) / STAMP).read_text().splitlines()
    assert recorded_sizes(stamp) == {t: len(f"binary of {t}") for t in fake.build.targets}
    assert fake.run() == 1  # the lock holder finds the stamp and the binaries at its sizes


def test_a_deleted_binary_is_built_again(tmp_path: Path) -> None:
    fake = FakeBuild(tmp_path)
    assert fake.run() == 1
    (fake.bin / "llama-quantize").unlink()
    assert fake.run() == 2
    assert (fake.bin / "llama-quantize").is_file()


def test_a_binary_cut_short_is_built_again(tmp_path: Path) -> None:
    fake = FakeBuild(tmp_path)
    assert fake.run() == 1
    os.truncate(fake.bin / "llama-server", 3)
    assert fake.run() == 2
    assert (fake.bin / "llama-server").stat().st_size == len("binary of llama-server")
