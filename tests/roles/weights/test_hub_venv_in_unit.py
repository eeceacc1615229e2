"""The weights unit builds the hub venv itself, only when the venv's stamp does not list the
plan's requirements, and runs the fetcher only once the venv is whole (``roles.weights.unit_argv``).

The unit's shell line runs here under ``sh`` with a stand-in ``python3`` on PATH: it makes the venv
folder and a ``bin/pip`` that records its arguments (and fails when told to), so the test sees
what the line asks for without a network or a real pip.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from metalserve.sources import PythonSource, SourceKind
from roles.venv import STAMP, build_unless_current
from roles.weights import fetch_command, unit_argv
from tests.roles.test_command_words import SCRIPT, VLLM

REQUIREMENTS = ("huggingface_hub==2.4.0", "hf-xet==1.8.0")
MIRROR = PythonSource(kind=SourceKind.MIRROR, index_url="http://10.0.0.1/simple")

FAKE_PYTHON3 = """#!/bin/sh
# python3 -m venv DIR: a venv whose pip logs its arguments; PIP_FAILS makes that pip fail
[ "$1" = -m ] && [ "$2" = venv ] || exit 97
mkdir -p "$3/bin"
printf '#!/bin/sh\\necho "$@" >> %s/pip.log\\n[ -z "$PIP_FAILS" ]\\n' "$LOGDIR" > "$3/bin/pip"
chmod +x "$3/bin/pip"
echo venv >> "$LOGDIR/pip.log"
"""


def _run(tmp_path: Path, line: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(FAKE_PYTHON3)
    (bin_dir / "python3").chmod(0o755)
    environ = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOGDIR": str(tmp_path),
               **env}  # fmt: skip
    return subprocess.run(["sh", "-c", line], env=environ, capture_output=True, text=True)


def _log(tmp_path: Path) -> list[str]:
    log = tmp_path / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_venv_whose_stamp_lists_the_requirements_is_left_alone(tmp_path: Path) -> None:
    venv = tmp_path / "hub"
    venv.mkdir()
    (venv / STAMP).write_text("".join(f"{r}\n" for r in REQUIREMENTS))
    (venv / "kept").write_text("")

    done = _run(tmp_path, build_unless_current(str(venv), REQUIREMENTS, MIRROR))

    assert done.returncode == 0, done.stderr
    assert _log(tmp_path) == [] and (venv / "kept").exists()


def test_a_missing_or_stale_venv_is_rebuilt_from_the_source_and_stamped(tmp_path: Path) -> None:
    venv = tmp_path / "hub"
    venv.mkdir()
    (venv / STAMP).write_text("huggingface_hub==2.3.0\n")  # an older pin

    done = _run(tmp_path, build_unless_current(str(venv), REQUIREMENTS, MIRROR))

    assert done.returncode == 0, done.stderr
    install = ["install", "--quiet", "--no-cache-dir", "--no-compile",
               "--index-url", "http://10.0.0.1/simple", *REQUIREMENTS]  # fmt: skip
    assert [line.split() for line in _log(tmp_path)] == [["venv"], install]
    assert (venv / STAMP).read_text().splitlines() == list(REQUIREMENTS)


def test_a_failed_install_fails_the_line_and_leaves_no_stamp(tmp_path: Path) -> None:
    venv = tmp_path / "hub"

    done = _run(tmp_path, build_unless_current(str(venv), REQUIREMENTS, MIRROR) + " && echo fetch",
                PIP_FAILS="1")  # fmt: skip

    assert done.returncode != 0 and "fetch" not in done.stdout
    assert not (venv / STAMP).exists()


def test_the_unit_runs_the_fetcher_under_the_lock_once_the_venv_is_whole() -> None:
    weights = VLLM.weights
    assert weights is not None
    argv = unit_argv(weights, SCRIPT)
    assert argv[:4] == ["flock", f"{weights.local_dir}.lock", "sh", "-c"] and len(argv) == 5
    venv, fetch = argv[4].split(" && exec ", 1)
    assert venv == build_unless_current(weights.hub_venv, weights.hub_requirements, weights.python)
    assert fetch == fetch_command(weights, SCRIPT)
    assert shlex.split(fetch)[0] == f"{weights.hub_venv}/bin/python"
