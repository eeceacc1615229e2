"""The artefact cache: content-keyed, atomic, and never reusing a half-built entry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from metalserve.artefacts.cache import (
    ArtefactError,
    cache_key,
    cache_root,
    cached_build,
    verify_entry,
)


def writes(name: str, content: bytes) -> Callable[[Path], None]:
    """A build step that writes one file."""

    def build(folder: Path) -> None:
        (folder / name).write_bytes(content)

    return build


def test_cache_root_follows_the_environment(private_cache: Path) -> None:
    assert cache_root() == private_cache


def test_the_key_depends_on_the_inputs_not_their_order() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_an_entry_is_built_once_then_read_from_the_cache(private_cache: Path) -> None:
    calls: list[Path] = []

    def build(folder: Path) -> dict[str, str]:
        calls.append(folder)
        (folder / "out.txt").write_text("hello\n")
        return {"note": "built"}

    first = cached_build("demo", {"v": 1}, build)
    second = cached_build("demo", {"v": 1}, build)

    assert len(calls) == 1
    assert first == second
    assert first.path.parent == private_cache / "demo"
    assert first.file("out.txt").read_text() == "hello\n"
    assert first.manifest["note"] == "built"
    assert first.manifest["files"]["out.txt"]["size"] == 6
    assert first.path.stat().st_mode & 0o777 == 0o755


def test_a_failed_build_leaves_nothing_that_looks_done(private_cache: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        cached_build("demo", {"v": 1}, broken)

    assert list((private_cache / "demo").iterdir()) == []
    rebuilt = cached_build("demo", {"v": 1}, writes("ok", b"ok"))
    assert rebuilt.file("ok").read_text() == "ok"


def test_a_staging_folder_left_by_a_killed_process_is_not_an_entry(private_cache: Path) -> None:
    key = cache_key({"v": 1})
    leftover = private_cache / "demo" / f".{key}.abc.partial"
    leftover.mkdir(parents=True)
    (leftover / "out.txt").write_text("half")

    entry = cached_build("demo", {"v": 1}, writes("out.txt", b"full"))

    assert entry.file("out.txt").read_text() == "full"


def test_verify_names_the_file_that_was_changed_after_the_build() -> None:
    entry = cached_build("demo", {"v": 1}, writes("a.bin", b"a"))
    verify_entry(entry)
    entry.file("a.bin").write_bytes(b"tampered")

    with pytest.raises(ArtefactError, match=r"a\.bin should have sha256 .* fix: delete"):
        verify_entry(entry)


def test_asking_for_a_file_the_entry_does_not_hold_is_an_operator_error() -> None:
    entry = cached_build("demo", {"v": 1}, writes("a.bin", b"a"))
    with pytest.raises(ArtefactError, match="expected a file 'b.bin'"):
        entry.file("b.bin")
