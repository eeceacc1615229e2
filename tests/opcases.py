"""Operation-case harness: run a role against fixture facts and read back the exact commands.

Modelled on pyinfra's own ``tests/operations/<op>/<case>.json``: a case gives the host data and the
facts the host would report, and lists the commands pyinfra would run. ``second_run_facts`` are the
facts after that first run; a role that reads its facts first yields no commands then.

A case file::

    {
      "role": "roles.llamacpp",            # module with install/configure/activate @deploy functions
      "roles": ["roles.layout", "..."],    # or several, run phase by phase across them
      "phases": ["install", "configure"],  # default: all three, in order
      "host_data": {"metalserve": {...}},  # validated by the core into a HostPlan
      "peers": {"node1": {"metalserve": {...}}},  # optional: the other nodes of its cluster
      "peer_facts": {"node1": {"deb.DebPackages": {...}}},  # optional: a peer's facts that differ
      "facts": {"files.File": {"path=/etc/x": null}, "server.Os": "Linux"},
      "commands": ["mkdir -p /opt/x", ...],
      "second_run_facts": {...},           # optional: with these, the phases yield no command
      "error": "substring"                 # optional: the run must fail with this one-line message
    }

Fact keys are ``<module>.<Class>`` with ``pyinfra.facts.`` dropped (``files.File``,
``roles.gpu_facts.facts.NvidiaGpus``). A fact called with arguments is looked up under
``"name=value,..."`` (keyword arguments, sorted; positional ones as ``arg0=...``), or ``"*"`` for any
arguments not listed. A fact the case does not list fails the test with its key, so a case always
shows every fact a role reads.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from unittest import mock

import pyinfra.api.host as pyinfra_host
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import (
    FileDownloadCommand,
    FileUploadCommand,
    FunctionCommand,
    StringCommand,
)
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_state

PHASES = ("install", "configure", "activate")
OPCASE_API_KEY = "opcase-api-key"
OPCASE_HOME = Path(tempfile.gettempdir()) / "metalserve-opcase-home"


class MissingFact(AssertionError):
    pass


def fact_key(cls: type) -> str:
    module = cls.__module__.removeprefix("pyinfra.facts.")
    return f"{module}.{cls.__name__}"


def _args_key(args: tuple, kwargs: dict) -> str:
    parts = [f"arg{i}={a}" for i, a in enumerate(args)]
    parts += [f"{k}={kwargs[k]}" for k in sorted(kwargs)]
    return ",".join(parts)


def _fact_getter(
    facts: dict[str, Any], peer_facts: dict[str, dict[str, Any]] | None = None
) -> Callable[..., Any]:
    def get_fact(state, host, cls, args=None, kwargs=None, **_ignored):  # noqa: ANN001
        key = fact_key(cls)
        facts_here = (peer_facts or {}).get(host.name, facts)
        if facts_here is not facts:
            value = facts_here.get(key, facts.get(key))  # a peer's own facts, else the host's
            return _as_pyinfra_gives(cls, _by_arguments(key, value, args, kwargs))
        if key not in facts:
            raise MissingFact(f"case has no fact {key!r}")
        return _as_pyinfra_gives(cls, _by_arguments(key, facts[key], args, kwargs))

    return get_fact


def _as_pyinfra_gives(cls: type, value: Any) -> Any:
    """A case's ``null`` is a command that printed nothing, for which pyinfra gives the fact's
    ``default()`` (None unless the fact says otherwise), never its ``process``."""
    return cls.default() if value is None else value  # type: ignore[attr-defined]


def _by_arguments(key: str, value: Any, args: Any, kwargs: Any) -> Any:
    arg_key = _args_key(tuple(args or ()), dict(kwargs or {}))
    if not arg_key:
        return value
    if isinstance(value, dict) and arg_key in value:
        return value[arg_key]
    if isinstance(value, dict) and "*" in value:
        return value["*"]
    raise MissingFact(f"case has no fact {key!r} for {arg_key!r}")


REPO = Path(__file__).resolve().parents[1]


def _local_path(src: str) -> str:
    """Uploads from the checkout are shown relative to it, so cases hold wherever it lives."""
    path = Path(src)
    if path.is_relative_to(OPCASE_HOME):
        return f"~/{path.relative_to(OPCASE_HOME)}"
    return str(path.relative_to(REPO)) if path.is_absolute() and path.is_relative_to(REPO) else src


def render_command(command: Any, env: dict[str, str] | None = None) -> str:
    """One line per command, stable across runs, for comparing with a case. An operation's
    ``_env`` is shown as a leading ``env K=V`` (pyinfra sets it when it runs the command)."""
    if isinstance(command, StringCommand):
        line = str(command.get_raw_value())
        if env:
            line = "env " + " ".join(f"{k}={v}" for k, v in sorted(env.items())) + " " + line
        return line
    if isinstance(command, FileUploadCommand):
        src = _local_path(command.src) if isinstance(command.src, str) else "<memory>"
        return f"upload {src} -> {command.dest}"
    if isinstance(command, FileDownloadCommand):
        return f"download {command.src} -> {command.dest}"
    if isinstance(command, FunctionCommand):
        return f"function {getattr(command.function, '__name__', command.function)}"
    return str(command)


def make_state(
    host_data: dict[str, Any],
    host_name: str = "testhost",
    peers: dict[str, dict[str, Any]] | None = None,
) -> tuple[State, Any]:
    """A pyinfra state whose inventory is the host under test and its cluster's other nodes (the
    core plans a node with its whole cluster); operations are collected for the host only."""
    entries = [(host_name, dict(host_data)), *((n, dict(d)) for n, d in (peers or {}).items())]
    inventory = Inventory((entries, {}))
    state = State(inventory, Config())
    return state, inventory.get_host(host_name)


def run_phases(
    deploy_calls: Iterable[Callable[[], Any]],
    host_data: dict[str, Any],
    facts: dict[str, Any],
    peers: dict[str, dict[str, Any]] | None = None,
    peer_facts: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Run ``deploy_calls`` (closures calling @deploy functions) on a fake host; return the commands.
    ``peer_facts``: facts the cluster's other nodes report, where they differ from the host's."""
    state, host = make_state(host_data, peers=peers)
    shutil.rmtree(OPCASE_HOME, ignore_errors=True)
    OPCASE_HOME.mkdir(parents=True)
    with (
        # an API key generated on the control host lands in a throwaway HOME, with a fixed value
        # so the cases can show its uploads (shown as ~/...)
        mock.patch.dict(os.environ, {"HOME": str(OPCASE_HOME)}),
        mock.patch("roles.layout.new_api_key", return_value=OPCASE_API_KEY),
        mock.patch.object(pyinfra_host, "get_fact", _fact_getter(facts, peer_facts)),
        ctx_state.use(state),
        ctx_host.use(host),
    ):
        for call in deploy_calls:
            call()
        commands: list[str] = []
        for op_hash in state.get_op_order():
            op_data = state.ops[host].get(op_hash)
            if op_data is None:
                continue
            # Execute as pyinfra would, minus the host: an op whose ``_if`` is false yields nothing,
            # and each op is marked changed when it yielded commands, so later ``_if``s see it.
            op_commands = (
                list(op_data.command_generator()) if _should_run(op_data.global_arguments) else []
            )
            op_data.operation_meta.set_complete(True, op_commands, CommandOutput([]))
            env = op_data.global_arguments.get("_env")
            commands.extend(render_command(c, env) for c in op_commands)
    return commands


def _should_run(global_arguments: dict[str, Any]) -> bool:
    condition = global_arguments.get("_if")
    if isinstance(condition, list):
        return all(check() for check in condition)
    return condition() if callable(condition) else True


def role_calls(role_modules: list[str], phases: Iterable[str]) -> list[Callable[[], Any]]:
    """Calls of ``role.<phase>(plan)``, phase by phase across the roles, as ``run_phases`` does."""
    from roles.base import current_plan

    roles = [importlib.import_module(name) for name in role_modules]
    return [
        (lambda role=role, phase=phase: getattr(role, phase)(current_plan()))
        for phase in phases
        for role in roles
        if hasattr(role, phase)
    ]


def load_case(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def case_files(role_dir: Path) -> list[Path]:
    return sorted(role_dir.glob("*.json"))


def run_case(case: dict[str, Any], facts_key: str = "facts") -> list[str]:
    phases = case.get("phases", list(PHASES))
    roles = case["roles"] if "roles" in case else [case["role"]]
    peer_key = "second_run_peer_facts" if facts_key == "second_run_facts" else "peer_facts"
    return run_phases(
        role_calls(roles, phases),
        case.get("host_data", {}),
        case[facts_key],
        case.get("peers"),
        case.get(peer_key),
    )


def check_case(path: Path) -> None:
    """Assert one case file: exact commands, and a no-op second run where the case gives its facts."""
    case = load_case(path)
    if "error" in case:
        try:
            run_case(case)
        except Exception as exc:  # noqa: BLE001 - the case names the message it expects
            assert case["error"] in str(exc), f"{path.name}: wrong error: {exc}"
            return
        raise AssertionError(f"{path.name}: expected an error containing {case['error']!r}")
    commands = run_case(case)
    assert commands == case["commands"], f"{path.name}: commands differ\n--- got\n" + "\n".join(
        commands
    )
    if "second_run_facts" in case:
        again = run_case(case, "second_run_facts")
        assert again == [], f"{path.name}: second run is not a no-op:\n" + "\n".join(again)


if __name__ == "__main__":
    # Print a case's commands to review them; with --write, store them as the case's expectation.
    import sys

    write = "--write" in sys.argv
    for arg in (a for a in sys.argv[1:] if a != "--write"):
        loaded = load_case(Path(arg))
        loaded["commands"] = run_case(loaded)
        print(arg, json.dumps(loaded["commands"], indent=2))
        if "second_run_facts" in loaded:
            print("second run:", json.dumps(run_case(loaded, "second_run_facts")))
        if write:
            Path(arg).write_text(json.dumps(loaded, indent=2, ensure_ascii=False) + "\n")
