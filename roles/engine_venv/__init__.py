"""The pinned vLLM or SGLang, installed from its lock and switched in whole, then its flags checked.

install: the lock of the host's Python and architecture (``locks/``, hashed by
``scripts/lock_engines.py``) goes to the host and pip installs exactly it (``--require-hashes
--no-deps``) from the plan's python source into a new venv named by the lock's hash, beside the
live one. The new venv must import the engine at the pinned version; only then is its stamp (the
lock's sha256) written and the live path — a symlink — swapped to it in one rename. A failed
install leaves the live venv as it was; a re-run with the same lock finds the stamp and does
nothing. The previous venv is kept (a running engine still reads it); older ones are removed.

configure: before the unit is written, the installed engine's own argument parser reads the
unit's arguments (``files/check_engine_flags.py``); a flag it rejects fails the deploy with the
engine's message. A stamp of lock and arguments makes a re-run a no-op.

Example::

    from roles import engine_venv
    engine_venv.install(plan); engine_venv.configure(plan)
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server

from metalserve.plan import EngineLock, EnginePlan, HostPlan
from metalserve.sources import pip_source_args
from roles.base import SERVICE_INPUTS, RoleError, record_changes
from roles.engine_venv.facts import PythonTarget
from roles.gpu_facts.facts import read_fact
from roles.venv import push_wheelhouse

LOCK_STAMP = ".metalserve-lock"
PROJECT = Path(__file__).resolve().parents[2]
CHECKER = Path(__file__).parent / "files" / "check_engine_flags.py"


def chosen_lock(engine: EnginePlan) -> EngineLock:
    """The plan's lock for this host's Python and architecture, or a one-line refusal."""
    target = read_fact(PythonTarget)
    if target is None:
        raise RoleError(
            f"host {host.name}: engine venv: expected python3 to pick the {engine.name} lock, "
            "found none — fix: install python3-venv (apt-get install python3-venv), run again"
        )
    lock = next(
        (k for k in engine.locks if (k.python, k.arch) == (target.python, target.arch)), None
    )
    locked = ", ".join(k.target for k in engine.locks if k.sha256) or "none"
    if lock is None or lock.sha256 is None:
        why = f" ({lock.unavailable})" if lock is not None and lock.unavailable else ""
        raise RoleError(
            f"host {host.name}: engine venv: expected one of {locked} for {engine.name} "
            f"{engine.version}, found Python {target.python} on {target.arch}{why} — fix: an OS "
            "whose python3 has a lock (metalserve.catalog.engine_locks.TARGETS)"
        )
    return lock


def build_dir(engine: EnginePlan, lock: EngineLock) -> str:
    """The venv a lock builds: beside the live path, named by the lock's hash."""
    assert engine.venv is not None and lock.sha256 is not None
    return f"{engine.venv}-{lock.sha256[:12]}"


def install_command(engine: EnginePlan, lock: EngineLock, lock_file: str) -> str:
    """Build the new venv from the lock, verify it, stamp it, then swap the live symlink to it;
    every step after the first failure is skipped, so the live venv is untouched."""
    assert engine.venv is not None
    q = shlex.quote
    live, new = engine.venv, build_dir(engine, lock)
    unlocked = f"{live}-unlocked"
    pip = shlex.join(
        [
            f"{new}/bin/pip",
            "install",
            "--quiet",
            "--no-cache-dir",
            "--no-compile",
            "--require-hashes",
            "--no-deps",
            *pip_source_args(engine.python),
            "-r",
            lock_file,
        ]
    )
    name, version = engine.name, engine.version
    verify = (
        f'import importlib.metadata as m, sys; import {name}; v = m.version("{name}"); '
        f'sys.exit(0 if v == "{version}" else "expected {name} {version} in the new venv, found " + v)'
    )
    stamp = f"{new}/{LOCK_STAMP}"
    return " && ".join(
        [
            f"rm -rf {q(new)}",
            f"python3 -m venv {q(new)}",
            pip,
            f"{q(new + '/bin/python')} -c {q(verify)}",
            f"printf '%s\\n' {lock.sha256} > {q(stamp + '.tmp')}",
            f"mv {q(stamp + '.tmp')} {q(stamp)}",
            f"previous=$(readlink {q(live)} || true)",
            # a venv from before locks is a directory at the live path: it becomes the previous one
            f"{{ [ -L {q(live)} ] || [ ! -e {q(live)} ] || "
            f"{{ mv -T {q(live)} {q(unlocked)} && previous={q(unlocked)}; }}; }}",
            f"ln -sfn {q(new)} {q(live + '.link')}",
            f"mv -T {q(live + '.link')} {q(live)}",
            f'for old in {q(live)}-*; do [ "$old" = {q(new)} ] || [ "$old" = "$previous" ] '
            '|| rm -rf "$old"; done',
        ]
    )


def is_current(engine: EnginePlan, lock: EngineLock) -> bool:
    assert engine.venv is not None
    return host.get_fact(FileContents, path=f"{engine.venv}/{LOCK_STAMP}") == [lock.sha256]


@deploy("Engine venv: install")
def install(plan: HostPlan) -> None:
    engine = plan.engine
    if engine.venv is None or not engine.locks:
        return
    lock = chosen_lock(engine)
    if is_current(engine, lock):
        return
    push_wheelhouse(engine.python)
    lock_file = f"{plan.layout.state}/locks/{Path(lock.path).name}"
    files.put(name=f"Lock {Path(lock.path).name}", src=str(PROJECT / lock.path), dest=lock_file)
    switched = server.shell(
        name=f"Install {engine.name} {engine.version} from its lock and switch {engine.venv} to it",
        commands=[install_command(engine, lock, lock_file)],
    )
    record_changes(SERVICE_INPUTS, switched)


def flags_digest(engine: EnginePlan, lock: EngineLock) -> str:
    """What a flag check vouches for: these arguments against this lock's engine."""
    return hashlib.sha256(json.dumps([lock.sha256, list(engine.parser_args)]).encode()).hexdigest()


def check_command(engine: EnginePlan, script: str, stamp: str, digest: str) -> str:
    """The arguments on stdin to the checker in the engine's venv; the stamp only if it passes."""
    assert engine.venv is not None
    q = shlex.quote
    return (
        f"printf '%s' {q(json.dumps(list(engine.parser_args)))} | "
        f"{q(engine.venv + '/bin/python')} {q(script)} {engine.name} && "
        f"printf '%s\\n' {digest} > {q(stamp + '.tmp')} && mv {q(stamp + '.tmp')} {q(stamp)}"
    )


@deploy("Engine venv: configure")
def configure(plan: HostPlan) -> None:
    engine = plan.engine
    if engine.venv is None or not engine.locks or not engine.parser_args:
        return
    digest = flags_digest(engine, chosen_lock(engine))
    stamp = f"{plan.layout.state}/{engine.name}-flags.sha256"
    if host.get_fact(FileContents, path=stamp) == [digest]:
        return
    script = f"{plan.layout.bin}/check_engine_flags.py"
    files.put(name="Engine flag checker", src=str(CHECKER), dest=script, mode="755")
    server.shell(
        name=f"Check the unit's flags with {engine.name} {engine.version}'s own parser",
        commands=[check_command(engine, script, stamp, digest)],
    )
