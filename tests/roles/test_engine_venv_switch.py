"""The engine venv's install command, run for real under ``sh`` in a temporary directory with a
stand-in ``python3`` (its venv's pip either installs or fails like a hash mismatch): the live path
only ever moves to a verified venv, and a failure leaves it where it was."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from metalserve.plan import EngineLock, EnginePlan, plan_alone
from metalserve.spec import host_spec
from roles.engine_venv import LOCK_STAMP, build_dir, install_command

FAKE_PYTHON3 = r"""#!/bin/sh
# python3 -m venv DIR: a venv whose pip fails when FAIL_PIP is set and whose python verifies
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
printf '#!/bin/sh\n[ -z "$FAIL_PIP" ] || { echo "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES" >&2; exit 1; }\ntouch "$(dirname "$0")/../installed"\n' > "$3/bin/pip"
printf '#!/bin/sh\nexit 0\n' > "$3/bin/python"
chmod +x "$3/bin/pip" "$3/bin/python"
"""


@pytest.fixture
def engine(tmp_path: Path) -> EnginePlan:
    plan = plan_alone(
        host_spec(
            "h1",
            {
                "profile": "h200-sxm-8",
                "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
                "engine": {"name": "vllm", "tensor_parallel_size": 8},
            },
        )
    )
    return plan.engine.model_copy(update={"venv": str(tmp_path / "venvs" / "vllm")})


def lock(engine: EnginePlan, digest: str) -> EngineLock:
    return engine.locks[1].model_copy(update={"sha256": digest * 64})


def install(tmp_path: Path, engine: EnginePlan, lock: EngineLock, fail: bool = False) -> int:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(FAKE_PYTHON3)
    (bin_dir / "python3").chmod(0o755)
    (tmp_path / "venvs").mkdir(exist_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **({"FAIL_PIP": "1"} if fail else {})}
    command = install_command(engine, lock, str(tmp_path / "lock.txt"))
    return subprocess.run(["sh", "-c", command], env=env, check=False).returncode


def live(engine: EnginePlan) -> str:
    return os.readlink(str(engine.venv))


def test_a_fresh_install_makes_the_live_path_a_link_to_the_stamped_venv(
    tmp_path: Path, engine: EnginePlan
) -> None:
    a = lock(engine, "a")
    assert install(tmp_path, engine, a) == 0
    assert live(engine) == build_dir(engine, a)
    assert Path(str(engine.venv), LOCK_STAMP).read_text() == f"{a.sha256}\n"
    assert Path(str(engine.venv), "installed").exists()


def test_a_failed_install_leaves_the_live_venv_as_it_was(
    tmp_path: Path, engine: EnginePlan
) -> None:
    a, b = lock(engine, "a"), lock(engine, "b")
    assert install(tmp_path, engine, a) == 0
    assert install(tmp_path, engine, b, fail=True) != 0
    assert live(engine) == build_dir(engine, a)
    assert Path(str(engine.venv), LOCK_STAMP).read_text() == f"{a.sha256}\n"
    # the half-built venv carries no stamp: the next run rebuilds it from scratch
    assert not Path(build_dir(engine, b), LOCK_STAMP).exists()


def test_a_venv_from_before_locks_is_kept_as_the_previous_one(
    tmp_path: Path, engine: EnginePlan
) -> None:
    old = Path(str(engine.venv))
    (old / "bin").mkdir(parents=True)
    (old / "bin" / "vllm").write_text("the pip-installed engine")
    a = lock(engine, "a")
    assert install(tmp_path, engine, a) == 0
    assert live(engine) == build_dir(engine, a)
    assert Path(f"{engine.venv}-unlocked", "bin", "vllm").read_text() == "the pip-installed engine"


def test_the_live_and_the_previous_venv_are_kept_and_older_ones_removed(
    tmp_path: Path, engine: EnginePlan
) -> None:
    a, b, c = lock(engine, "a"), lock(engine, "b"), lock(engine, "c")
    for each in (a, b, c):
        assert install(tmp_path, engine, each) == 0
    kept = sorted(p.name for p in (tmp_path / "venvs").iterdir())
    assert kept == sorted(
        ["vllm", Path(build_dir(engine, b)).name, Path(build_dir(engine, c)).name]
    )
    assert live(engine) == build_dir(engine, c)
