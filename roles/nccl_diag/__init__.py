"""Role: build nccl-tests, run the collectives, fetch the outputs, judge them, fail the host on FAIL.

``install`` fetches (git tag, tarball URL, or a tarball from the control host) and builds nccl-tests
for the GPU archs of the profile, unless the build stamp says the same inputs were built already.
``configure`` writes the MPI hostfile on node 0 of a multi-node profile. ``activate`` runs each
collective (node 0 launches ``mpirun`` for several nodes), fetches the log and JSON to the control
host, and judges them there: the report (JSON, summary, PNG) lands in ``reports_dir/<date>/<host>/``.
Without a GPU, every phase says so and does nothing.

Example (``deploy/diagnose.py``)::

    from roles import base, nccl_diag
    base.run_phases([nccl_diag])
"""

from __future__ import annotations

import shlex
import shutil
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import apt, files, python, server

from metalserve.diag.judge import Verdict, judge
from metalserve.diag.parse import merge_outputs
from metalserve.diag.plan import CollectiveRun, DiagPlan
from metalserve.diag.report import build_report
from metalserve.io.reports import read_text, write_report
from metalserve.plan import HostPlan
from roles.base import RoleError, say_once
from roles.nccl_diag.facts import BuildStamp, NvidiaGpuCount

NO_GPU = "no NVIDIA GPU found (nvidia-smi -L lists none): NCCL diagnostic skipped"

MPI_PACKAGES = ["openmpi-bin", "libopenmpi-dev"]
"""Debian/Ubuntu Open MPI: mpirun and the headers nccl-tests' MPI=1 build needs."""


def _plan(plan: HostPlan) -> DiagPlan | None:
    """The diagnostic the plan decided, or None (with a note in the output) when this host shows
    no GPU."""
    gpus = host.get_fact(NvidiaGpuCount)
    if not gpus or plan.diag is None:
        say_once(NO_GPU)  # once per host, not once per phase
        return None
    return plan.diag


def _replace_dir(tmp: str, final: str) -> str:
    return f"rm -rf {shlex.quote(final)} && mv {shlex.quote(tmp)} {shlex.quote(final)}"


def _fetch_source(dp: DiagPlan) -> None:
    src, tmp = dp.src_dir, f"{dp.src_dir}.tmp"
    q = shlex.quote
    if dp.source.kind == "git":
        server.shell(
            name=f"Fetch nccl-tests {dp.source.ref} (git)",
            commands=[
                f"rm -rf {q(tmp)} && git clone --quiet --depth 1 --branch {q(dp.source.ref)} "
                f"{q(dp.source.url)} {q(tmp)} && {_replace_dir(tmp, src)}"
            ],
        )
        return
    assert dp.tarball is not None
    if dp.source.kind == "local":
        assert dp.source.path is not None
        files.put(
            name="Copy the nccl-tests tarball",
            src=dp.source.path,
            dest=dp.tarball,
            create_remote_dir=False,
        )
    else:
        check = (
            f" && echo {q(dp.source.sha256 + '  ' + dp.tarball + '.part')} | sha256sum -c --quiet -"
            if dp.source.sha256
            else ""
        )
        server.shell(
            name=f"Download nccl-tests {dp.source.ref}",
            commands=[
                f"curl -fsSL -o {q(dp.tarball + '.part')} {q(dp.source.url)}{check}"
                f" && mv {q(dp.tarball + '.part')} {q(dp.tarball)}"
            ],
        )
    server.shell(
        name="Unpack nccl-tests",
        commands=[
            f"rm -rf {q(tmp)} && mkdir -p {q(tmp)} && tar -xzf {q(dp.tarball)} -C {q(tmp)} "
            f"--strip-components=1 && {_replace_dir(tmp, src)}"
        ],
    )


@deploy("nccl-tests: fetch and build")
def install(plan: HostPlan) -> None:
    dp = _plan(plan)
    if dp is not None:
        build_steps(dp)


def build_steps(dp: DiagPlan) -> None:
    """Fetch and build nccl-tests unless the build stamp shows these very inputs were built."""
    if dp.multi_node:
        apt.packages(name="Install Open MPI for multi-node nccl-tests", packages=MPI_PACKAGES)
    if host.get_fact(BuildStamp, path=dp.build_stamp) == dp.build_digest:
        return  # built from the same source, archs and MPI setting: reuse it
    files.directory(name="Sources folder", path=str(Path(dp.src_dir).parent))
    _fetch_source(dp)
    stamp = shlex.quote(dp.build_stamp)
    server.shell(
        name="Build nccl-tests",
        commands=[
            f"{shlex.join(dp.build_argv)} && mkdir -p {shlex.quote(str(Path(dp.build_stamp).parent))}"
            f" && printf '%s\\n' {dp.build_digest} > {stamp}.tmp && mv {stamp}.tmp {stamp}"
        ],
    )


@deploy("nccl-tests: run folder and hostfile")
def configure(plan: HostPlan) -> None:
    dp = _plan(plan)
    if dp is not None:
        prepare_steps(dp)


def prepare_steps(dp: DiagPlan) -> None:
    """The launcher's output folder and, for several nodes, the MPI hostfile."""
    if not dp.launcher:
        return
    files.directory(name="Diagnostic output folder", path=dp.out_dir)
    if dp.hostfile is not None and dp.hostfile_path is not None:
        files.put(
            name="MPI hostfile",
            src=StringIO(dp.hostfile),
            dest=dp.hostfile_path,
            create_remote_dir=False,
        )


def _staging(dp: DiagPlan) -> Path:
    return Path(dp.reports_dir) / "incoming" / dp.host


def last_words(text: str, width: int = 160) -> str:
    """What a log that holds no result ends with, printable and on one line: the clue to why."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "the log is empty"
    last = "".join(ch if ch.isprintable() else " " for ch in lines[-1]).strip()
    return f"the log ends with {last[:width]!r}"


def judge_and_file(dp: DiagPlan, runs: tuple[CollectiveRun, ...], gate: bool = False) -> list[str]:
    """On the control host, after the fetch: judge each run, write its report, fail on FAIL.

    As the re-provisioning gate (``gate``), a run that produced no result also fails the host,
    unless the inventory accepts that with a reason (``diag.gate_accepts_no_result``): nothing
    measured is not the same as nothing wrong. Returns the lines to show beside a pass (a run
    whose bandwidth could not be judged, an accepted run without result)."""
    staging = _staging(dp)
    folder = Path(dp.reports_dir) / datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ") / dp.host
    failed: list[str] = []
    empty: list[tuple[str, str]] = []
    notes: list[str] = []
    for run in runs:
        log = staging / Path(run.log).name
        report_path = staging / Path(run.json_report).name if run.json_report else None
        json_text = read_text(report_path) if report_path is not None else ""
        log_text = read_text(log)
        parsed = merge_outputs(log_text, json_text if json_text.strip() else None)
        judged = judge(parsed, dp.topology, dp.expectation)
        report = build_report(
            parsed,
            judged,
            host=dp.host,
            profile_id=dp.profile_id,
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            command=run.argv,
        )
        write_report(report, folder, run.collective.value)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log, folder / log.name)
        name = run.collective.value
        if judged.verdict is Verdict.FAIL:
            failed.append(f"{name}: {judged.reasons[0].message}")
        elif not judged.produced_result:
            empty.append((f"{name} produced no result ({last_words(log_text)})", run.log))
        elif judged.verdict is Verdict.UNKNOWN:
            notes.append(f"host {dp.host}: NCCL diagnostic {name} UNKNOWN — "
                         f"{judged.reasons[0].message}")  # fmt: skip
    if failed and dp.fail_host:
        raise RoleError(f"host {dp.host}: NCCL diagnostic FAIL — {failed[0]} (report: {folder})")
    if gate and empty and dp.gate_accepts_no_result is None:
        what, host_log = empty[0]
        raise RoleError(
            f"host {dp.host}: NCCL gate: {what}, so nothing vouches for the new stack; the "
            f"engine stays stopped — fix: run deploy/diagnose.py and read {host_log} on the host, "
            "or set metalserve.diag.gate_accepts_no_result to the reason to start without it "
            f"(report: {folder})"
        )
    accepted = f"; accepted: {dp.gate_accepts_no_result}" if gate else ""
    notes += [f"host {dp.host}: NCCL {'gate' if gate else 'diagnostic'}: {what}{accepted}"
              for what, _ in empty]  # fmt: skip
    return notes


def judge_on_control_host(state: Any, host: Any, dp: DiagPlan, gate: bool = False) -> bool:
    """pyinfra's callback around :func:`judge_and_file`: a FAIL (or, as a gate, no result) is one
    red line and a failed host (pyinfra then runs nothing more on it), never a traceback; what
    could not be judged is one yellow line each."""
    try:
        notes = judge_and_file(dp, dp.runs, gate)
    except RoleError as failure:
        host.log_styled(str(failure), fg="red", log_func=logger.error)
        return False
    for note in notes:
        host.log_styled(note, fg="yellow", log_func=logger.warning)
    return True


def judge_gate_on_control_host(state: Any, host: Any, dp: DiagPlan) -> bool:
    """:func:`judge_on_control_host` as the re-provisioning gate: no result stops the engine too."""
    return judge_on_control_host(state, host, dp, gate=True)


@deploy("nccl-tests: run, fetch, judge")
def activate(plan: HostPlan) -> None:
    dp = _plan(plan)
    if dp is not None:
        run_steps(dp)


def run_steps(dp: DiagPlan, gate: bool = False) -> None:
    """Run each collective (the launcher only), fetch its outputs, judge them on the control host
    (``gate``: as the re-provisioning gate, see :func:`judge_and_file`)."""
    if not dp.launcher:
        return
    staging = _staging(dp)
    for run in dp.runs:
        # -J never overwrites (it writes file.1): clear the last run's report first. A failed run
        # is judged from its log, so its exit status does not stop the fetch.
        clear = f"rm -f {shlex.quote(run.json_report)} && " if run.json_report else ""
        server.shell(
            name=f"Run {run.collective.value}_perf ({'mpirun' if dp.multi_node else 'one node'})",
            commands=[f"{clear}{run.shell} || true"],
        )
        files.get(
            name=f"Fetch {Path(run.log).name}",
            src=run.log,
            dest=str(staging / Path(run.log).name),
            create_local_dir=True,
            force=True,
        )
        if run.json_report is not None:
            # absent when the run aborted before writing it; the judge then reads the log alone
            server.shell(
                name="JSON report present",
                commands=[f"touch {shlex.quote(run.json_report)}"],
            )
            files.get(
                name=f"Fetch {Path(run.json_report).name}",
                src=run.json_report,
                dest=str(staging / Path(run.json_report).name),
                create_local_dir=True,
                force=True,
            )
    python.call(
        name="Judge the runs and write reports",
        function=judge_gate_on_control_host if gate else judge_on_control_host,
        dp=dp,
    )


def gate_steps(plan: HostPlan) -> None:
    """The diagnostic as a gate, for re-provisioning: build (if its inputs changed), run, judge.

    Called once the new driver has passed verification, so the GPU count the host reported
    before the run (maybe none, from a broken driver) does not decide; a FAIL, or a run that
    produced no result (unless ``diag.gate_accepts_no_result`` gives a reason), fails the host
    before the caller's next step (starting the engine). Off with ``diag.reprovision_gate``.
    """
    dp = plan.diag
    if dp is None or not dp.reprovision_gate:
        return
    build_steps(dp)
    prepare_steps(dp)
    run_steps(dp, gate=True)
