"""The llama.cpp build command, run for real with a stand-in ``cmake`` on PATH: its stamp records
each binary's size, a re-run under the lock does nothing, and a binary deleted or cut short since
makes the build run again."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from metalserve.io.modelfiles import checkpoint_for_spec
from metalserve.plan import LlamaCppBuildPlan, plan_alone
from metalserve.spec import host_spec
from roles.llamacpp import STAMP, build_command, recorded_sizes

FIXTURE_SOURCE = Path(__file__).resolve().parents[2] / "fixtures/llamacpp/llama.cpp-fixture.tar.gz"

# Stands in for cmake: configure makes the build folder; --build writes one file per --target
# (its size differs per target) and counts the builds in $CMAKE_BUILDS.
FAKE_CMAKE = """#!/bin/sh
if [ "$1" = --build ]; then
  dir=$2; shift 2
  while [ "$#" -gt 0 ] && [ "$1" != --target ]; do shift; done; shift
  mkdir -p "$dir/bin"
  for t in "$@"; do printf '%s' "binary of $t" > "$dir/bin/$t"; done
  echo build >> "$CMAKE_BUILDS"
else
  while [ "$#" -gt 0 ]; do [ "$1" = -B ] && mkdir -p "$2"; shift; done
fi
"""


def _build_plan(tmp_path: Path) -> LlamaCppBuildPlan:
    spec = host_spec(
        "h",
        {
            "profile": "sandbox-cpu",
            "model": {"repo_id": "local/tiny"},
            "engine": {"name": "llamacpp"},
        },
    )
    build = plan_alone(spec, checkpoint_for_spec(spec)).llamacpp
    assert build is not None
    root = tmp_path / "llama.cpp"
    return build.model_copy(
        update={
            "source_tarball": str(FIXTURE_SOURCE),
            "prefix": f"{root}/{build.version}-{build.build_key}",
            "current": f"{root}/current",
        }
    )


@pytest.fixture
def run_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    cmake = bin_dir / "cmake"
    cmake.write_text(FAKE_CMAKE)
    cmake.chmod(cmake.stat().st_mode | stat.S_IXUSR)
    builds = tmp_path / "builds"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CMAKE_BUILDS": str(builds)}
    build = _build_plan(tmp_path)

    def run() -> int:
        """Run the build command; return how many builds have run so far."""
        done = subprocess.run(["sh", "-c", build_command(build)], env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return len(builds.read_text().splitlines()) if builds.exists() else 0

    run.build = build  # type: ignore[attr-defined]
    return run


def test_the_stamp_records_every_binary_and_a_rerun_builds_nothing(run_build) -> None:  # type: ignore[no-untyped-def]
    build: LlamaCppBuildPlan = run_build.build
    assert run_build() == 1
    stamp = (Path(build.prefix) / STAMP).read_text().splitlines()
    expected = {t: len(f"binary of {t}") for t in build.targets}
    assert recorded_sizes(stamp) == expected
    assert run_build() == 1  # the lock holder finds the stamp and the binaries at its sizes


def test_a_deleted_binary_is_built_again(run_build) -> None:  # type: ignore[no-untyped-def]
    build: LlamaCppBuildPlan = run_build.build
    assert run_build() == 1
    (Path(build.prefix) / "bin" / "llama-quantize").unlink()
    assert run_build() == 2
    assert (Path(build.prefix) / "bin" / "llama-quantize").is_file()


def test_a_binary_cut_short_is_built_again(run_build) -> None:  # type: ignore[no-untyped-def]
    build: LlamaCppBuildPlan = run_build.build
    assert run_build() == 1
    server = Path(build.prefix) / "bin" / "llama-server"
    os.truncate(server, 3)
    assert run_build() == 2
    assert server.stat().st_size == len("binary of llama-server")
