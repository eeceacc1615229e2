"""Wait for the weights download (``roles.weights`` started it) before anything reads the files.

Runs late in the install phase, after the driver, CUDA, engine and llama.cpp steps and before
the GGUF conversion. One operation, a ``python.call`` on the control host that asks the host every
``progress_every_s`` seconds for the unit's state, the fetcher's progress file and the stamp
(``status_command``), logs the progress line (bytes, total, rate, files) under the host's name,
and ends when the stamp names these weights. It fails the host with one line when the unit failed
(its last journal lines), when no byte arrived for ``stall_s``, or, on a node waiting for a
shared folder, when the rank-0 download failed. A unit that vanished without a stamp (a reboot
during the driver steps stops it) is started once more.

Example (a deploy file)::

    from roles import weights
    from roles.weights import ready as weights_ready
    base.run_phases([layout, weights, nvidia_driver, engine_venv, weights_ready, gguf, service])
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pyinfra import logger
from pyinfra.api import deploy
from pyinfra.operations import python

from metalserve.plan import HostPlan, WeightsPlan
from metalserve.sources import SourceKind
from roles.service import journal_tail_command
from roles.weights import PROGRESS, STAMP, is_fetched, script_path, stamp_names, start_command

RUNNING = ("active", "activating", "reloading", "deactivating")


def status_command(weights: WeightsPlan) -> str:
    """Four lines: ``unit=STATE/RESULT``, ``progress=`` the progress JSON, ``stamp=`` the stamp
    JSON (each on one line, empty when absent) and ``journal=`` the unit's last lines."""
    unit = shlex.quote(f"{weights.unit}.service")
    one_line = "2>/dev/null | tr -d '\\n'"
    return (
        f"printf 'unit=%s/%s\\n' \"$(systemctl show -p ActiveState --value {unit} 2>/dev/null)\" "
        f'"$(systemctl show -p Result --value {unit} 2>/dev/null)"; '
        f"printf 'progress='; cat {shlex.quote(f'{weights.local_dir}/{PROGRESS}')} {one_line}; echo; "
        f"printf 'stamp='; cat {shlex.quote(f'{weights.local_dir}/{STAMP}')} {one_line}; echo; "
        f"printf 'journal='; {journal_tail_command(f'{weights.unit}.service')}; echo"
    )


def _json(text: str) -> dict[str, Any] | None:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


@dataclass(frozen=True)
class Status:
    """What the host said: the unit's state and result, the progress and the stamp."""

    state: str = "inactive"
    result: str = ""
    progress: dict[str, Any] | None = None
    stamp: dict[str, Any] | None = None
    journal: str = ""

    @classmethod
    def parse(cls, lines: list[str]) -> Status:
        said = dict(line.partition("=")[::2] for line in lines if "=" in line)
        state, _, result = said.get("unit", "").partition("/")
        return cls(
            state=state or "inactive",
            result=result,
            progress=_json(said.get("progress", "")),
            stamp=_json(said.get("stamp", "")),
            journal=said.get("journal", "").strip(),
        )


@dataclass
class Stall:
    """Seconds since the download last moved (bytes, files verified or phase)."""

    since: float | None = None
    seen: tuple[object, ...] | None = None

    def seconds(self, status: Status, now: float) -> float:
        progress = status.progress or {}
        seen = (progress.get("phase"), progress.get("done"), progress.get("verified"))
        if seen != self.seen or self.since is None:
            self.seen, self.since = seen, now
        return now - self.since


@dataclass(frozen=True)
class Step:
    kind: Literal["wait", "done", "restart", "fail"]
    say: str = field(default="")


def next_step(weights: WeightsPlan, status: Status, stalled_s: float, restarted: bool) -> Step:
    """What the wait does next, from what the host said (pure)."""
    what = f"{weights.repo_id}@{weights.revision}"
    running = weights.fetches and status.state in RUNNING
    progress = status.progress or {}
    line = str(progress.get("line") or "waiting for the download to start")
    journal = f" — last journal lines: {status.journal}" if status.journal else ""
    fix = f"journalctl -u {weights.unit}"
    if stamp_names(weights, status.stamp) and not running:
        stamp = status.stamp or {}
        return Step("done", f"weights: {what} verified ({stamp.get('files')} files)")
    if weights.fetches and status.state == "failed":
        return Step("fail", f"weights: expected {weights.unit} to fetch {what}, found it failed "
                            f"({status.result or 'failed'}){journal} — fix: correct the cause "
                            f"({fix}), then run the deploy again (finished files are kept)")  # fmt: skip
    if progress.get("phase") == "failed":
        return Step("fail", f"weights: expected {what} in {weights.local_dir}, found its "
                            f"download failed: {line} — fix: see the rank-0 node's deploy "
                            "output, then run the deploy again")  # fmt: skip
    if stalled_s >= weights.stall_s:
        return Step("fail", f"weights: expected {what} to keep arriving, found no progress for "
                            f"{stalled_s:.0f} s ({line}){journal} — fix: check the host's link "
                            f"to the Hub or mirror ({fix}); a re-run keeps the finished files")  # fmt: skip
    if weights.fetches and status.state not in RUNNING:
        if restarted:
            return Step("fail", f"weights: expected {weights.unit} to stamp {what}, found it "
                                f"gone twice without a stamp{journal} — fix: {fix}")  # fmt: skip
        return Step("restart", f"weights: {weights.unit} ended without a stamp (a reboot stops "
                               "it): starting it again")  # fmt: skip
    who = "" if weights.fetches else "rank 0: "
    return Step("wait", f"{who}{line}")


Runner = Callable[[str], list[str]]


def wait(weights: WeightsPlan, start: str, run: Runner, say: Callable[[str], None],
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> Step:  # fmt: skip
    """Poll the host until the weights are stamped or the download fails; the last step."""
    stall, restarted = Stall(), False
    while True:
        status = Status.parse(run(status_command(weights)))
        step = next_step(weights, status, stall.seconds(status, clock()), restarted)
        if step.kind in ("done", "fail"):
            return step
        say(step.say)
        if step.kind == "restart":
            run(start)
            restarted = True
        sleep(weights.progress_every_s)


@deploy("Weights: wait")
def install(plan: HostPlan) -> None:
    weights = plan.weights
    if weights is None or weights.source.kind is SourceKind.BUNDLE or is_fetched(weights):
        return
    start = start_command(weights, script_path(plan))

    def wait_for_weights(state: Any, host: Any) -> bool:
        def run(command: str) -> list[str]:
            return list(host.run_shell_command(command)[1].stdout_lines)

        step = wait(weights, start, run, say=host.log)
        if step.kind == "fail":
            host.log_styled(step.say, fg="red", log_func=logger.error)
            return False
        host.log(step.say)
        return True

    python.call(name=f"Wait for {weights.repo_id}@{weights.revision}", function=wait_for_weights)
