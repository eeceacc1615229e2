"""The fault and attack report: every fault injected and attack tried that runs without the
sandbox, its outcome, and the figures to quote — faults survived, attacks refused, secrets found,
tracebacks.

    .venv/bin/python bench/faults.py [--only WORD] [--json FILE]

Each check is one function registered with ``@fault(...)`` or ``@attack(...)``. It injects one
fault (a file deleted or cut short after its stamp, a full disk, a killed conversion, a
crash-looping unit, an NCCL run that produced nothing) or tries one attack, through the real code
path — a role's operations against the facts of a damaged host, a host script in its own
process, a shell command with stand-in tools (``tests/faultkit.py``) — and says what it saw.
Every figure is counted in this run: each check's captured output is scanned for tracebacks and
for every secret value the checks put in play. More checks are one decorated function each; the
faults that need real hosts (one unreachable, one whose SSH is cut mid-deploy) are
``tests/e2e/test_faults.py``.

Exit status 0 only when every fault was survived, every attack refused, and no secret and no
traceback was found.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metalserve.catalog.pins import LLAMA_CPP  # noqa: E402
from metalserve.errors import MetalserveError  # noqa: E402
from tests.faultkit import (  # noqa: E402
    CONVERT_QUANTIZE,
    DOWNLOAD_FILLS_THE_DISK,
    FETCH_WEIGHTS,
    TRACEBACK,
    WORKER_KILLED_MID_SHARD,
    FakeBuild,
    FakeUnit,
    diag_plan,
    fake_llamacpp,
    run_host_script,
    stage_log,
    timed_shell,
)

HEALTH_TIMEOUT_S = 1800
"""The serve deploy's health timeout: what a crash loop used to be waited out for."""
CRASH_LOOP_BOUND_S = 60
"""The issue's bound: a crash-looping engine fails the deploy within a minute."""


@dataclass
class Seen:
    """What a check saw: whether the protection held, in one line, and everything it captured."""

    held: bool
    what: str
    output: str = ""


@dataclass(frozen=True)
class Check:
    kind: str  # "fault" or "attack"
    name: str
    run: Callable[[Path], Seen]


@dataclass
class Row:
    check: Check
    seen: Seen
    seconds: float
    tracebacks: int = 0
    secrets: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.seen.held and not self.tracebacks and not self.secrets


CHECKS: list[Check] = []
SECRETS: set[str] = set()
"""Secret values the checks put in play; every captured output is scanned for each."""


def fault(name: str) -> Callable[[Callable[[Path], Seen]], Callable[[Path], Seen]]:
    def register(run: Callable[[Path], Seen]) -> Callable[[Path], Seen]:
        CHECKS.append(Check("fault", name, run))
        return run

    return register


def attack(name: str) -> Callable[[Callable[[Path], Seen]], Callable[[Path], Seen]]:
    def register(run: Callable[[Path], Seen]) -> Callable[[Path], Seen]:
        CHECKS.append(Check("attack", name, run))
        return run

    return register


def secret(prefix: str) -> str:
    value = f"{prefix}{secrets.token_hex(16)}"
    SECRETS.add(value)
    return value


def one_line(text: str) -> bool:
    return text.count("\n") == 1 and text.endswith("\n") and TRACEBACK not in text


# --------------------------------------------------------------------------- stamps vs files


@contextlib.contextmanager
def _role_log() -> Iterator[list[str]]:
    """The lines roles log through pyinfra's logger while a case runs."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("pyinfra")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def _role_case(case_file: str, step: str) -> Seen:
    """Run a role against the facts of a damaged host (an operation case): it must plan ``step``,
    and with the facts of the repaired host plan nothing."""
    from tests.opcases import load_case, run_case

    case = load_case(REPO / "tests" / "roles" / case_file)
    with _role_log() as said:
        first = run_case(case)
        again = run_case(case, "second_run_facts")
    acted = [c for c in first if step in c]
    noticed = next((line for line in said if "differ" in line or "again" in line), "")
    return Seen(
        held=bool(acted) and again == [],
        what=f"{noticed or 'nothing logged'}; {len(first)} operation(s) incl. {step}; "
        f"repaired: {len(again)} operation(s)",
        output="\n".join([*said, *first, *again]),
    )


@fault("quantized GGUF deleted after its stamp (serve re-run)")
def gguf_deleted(_: Path) -> Seen:
    return _role_case("gguf/deleted_gguf_reconverts.json", "convert_quantize.py")


@fault("weight shard truncated to 1 MiB after its stamp (serve re-run)")
def shard_truncated(_: Path) -> Seen:
    return _role_case("weights/shard_truncated_refetches.json", "fetch_weights.py")


@fault("llama-quantize binary deleted from the llama.cpp build (serve re-run)")
def binary_deleted(_: Path) -> Seen:
    return _role_case("llamacpp/binary_missing_rebuilds.json", "cmake --build")


@fault("llama-server binary cut short: the build under the lock runs again")
def binary_cut_short(tmp: Path) -> Seen:
    build = FakeBuild(tmp)
    first = build.run()
    skipped = build.run()
    os.truncate(build.bin / "llama-server", 3)
    rebuilt = build.run()
    size = (build.bin / "llama-server").stat().st_size
    return Seen(
        held=(first, skipped, rebuilt) == (1, 1, 2) and size > 3,
        what=f"builds run: {first}, re-run {skipped}, after the damage {rebuilt}; "
        f"llama-server back to {size} bytes",
    )


# --------------------------------------------------------------------------- weights download


@dataclass
class Hub:
    endpoint: str
    repo: str


_hub: Hub | None = None
_stack = contextlib.ExitStack()


def hub() -> Hub:
    """A hub mirror on loopback serving the tiny MoE checkpoint, started once per report."""
    global _hub
    if _hub is None:
        from metalserve.artefacts.tinymodel import tiny_moe_checkpoint
        from metalserve.mirror.hub import publish, running_mirror

        root = Path(_stack.enter_context(tempfile.TemporaryDirectory(prefix="faults-hub-")))
        publish(root, "metalserve/tiny-moe", tiny_moe_checkpoint(seed=0).path)
        _hub = Hub(_stack.enter_context(running_mirror(root)), "metalserve/tiny-moe")
    return _hub


def _fetch(local: Path, inject: str = "", token: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub().endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    if token is not None:
        env["HF_TOKEN_PATH"] = str(token)
    return run_host_script(FETCH_WEIGHTS, ["--repo", hub().repo, "--local-dir", str(local)],
                           env, inject)  # fmt: skip


@fault("disk fills during the weights download (ENOSPC)")
def download_disk_full(tmp: Path) -> Seen:
    local = tmp / "models"
    run = _fetch(local, inject=DOWNLOAD_FILLS_THE_DISK)
    partial = list(local.rglob("*.incomplete"))
    stamped = (local / ".metalserve-weights.json").exists()
    return Seen(
        held=run.returncode == 2 and one_line(run.stderr) and not partial and not stamped,
        what=f"exit {run.returncode}; {run.stderr.strip()[:150]}…; partial files left: "
        f"{len(partial)}; stamp: {'yes' if stamped else 'none'}",
        output=run.stdout + run.stderr,
    )


@fault("a download worker killed mid-shard (the OOM killer's choice), then the fetch re-run")
def download_worker_killed(tmp: Path) -> Seen:
    local = tmp / "models"
    run = _fetch(local, inject=WORKER_KILLED_MID_SHARD)
    kept = sorted(p.name for p in local.glob("*") if p.is_file())
    partial = list(local.rglob("*.incomplete"))  # the cut shard's bytes, to go on from
    again = _fetch(local)
    left = list(local.rglob("*.incomplete"))
    return Seen(
        held=run.returncode == 2 and one_line(run.stderr) and again.returncode == 0 and not left,
        what=f"exit {run.returncode}; {run.stderr.strip()[:120]}…; files kept: {len(kept)}, "
        f"partial files kept to go on from: {len(partial)}; re-run exit {again.returncode}, "
        f"partial files after it: {len(left)}",
        output=run.stdout + run.stderr + again.stdout + again.stderr,
    )


@fault("weight shard truncated on the host: the fetcher fetches it again")
def shard_refetched(tmp: Path) -> Seen:
    local = tmp / "models"
    first = _fetch(local)
    shard = local / "model-00002-of-00002.safetensors"
    size = shard.stat().st_size
    os.truncate(shard, size // 3)
    again = _fetch(local)
    return Seen(
        held=again.returncode == 0 and shard.stat().st_size == size,
        what=f"cut to {size // 3} of {size} bytes; re-run exit {again.returncode}, "
        f"shard back to {shard.stat().st_size} bytes",
        output=first.stdout + first.stderr + again.stdout + again.stderr,
    )


# --------------------------------------------------------------------------- GGUF conversion


def _converter_host(tmp: Path, checkpoint_bytes: int = 7_863_491) -> tuple[list[str], Path]:
    model = tmp / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    stamp = {"repo": "metalserve/tiny-moe", "commit": "1f2e3d4c", "bytes": checkpoint_bytes}
    (model / ".metalserve-weights.json").write_text(json.dumps(stamp))
    src, quantize = fake_llamacpp(tmp / "llama.cpp")
    gguf = tmp / "gguf"
    args = [
        "--llamacpp-src", str(src), "--llamacpp-commit", LLAMA_CPP.version, "--quantize", str(quantize),
        "--model-dir", str(model), "--f16", str(gguf / "tiny-F16.gguf"),
        "--out", str(gguf / "tiny-Q4_K_M.gguf"), "--type", "Q4_K_M", "--drop-f16",
    ]  # fmt: skip
    return args, gguf


def _convert(tmp: Path, converter: str, inject: str = "", **host: int) -> tuple[Seen, Path]:
    args, gguf = _converter_host(tmp, **host)
    run = run_host_script(CONVERT_QUANTIZE, args, {**os.environ, "FAKE_CONVERTER": converter},
                          inject)  # fmt: skip
    left = sorted(p.name for p in gguf.iterdir()) if gguf.exists() else []
    return Seen(
        held=run.returncode == 2 and one_line(run.stderr) and not left,
        what=f"exit {run.returncode}; {run.stderr.strip()[:150]}…; files left: {len(left)}",
        output=run.stdout + run.stderr,
    ), gguf


@fault("disk fills during the f16 conversion (the converter dies with ENOSPC)")
def convert_disk_full(tmp: Path) -> Seen:
    return _convert(tmp, "full-disk")[0]


@fault("disk fills while the GGUF stamp is written (ENOSPC in the script)")
def stamp_disk_full(tmp: Path) -> Seen:
    inject = (
        "import errno, json\n"
        "def _full(*args, **kwargs):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "json.dump = _full\n"
    )
    return _convert(tmp, "ok", inject=inject)[0]


@fault("a 10 PB checkpoint: too little room for its f16 GGUF")
def convert_no_room(tmp: Path) -> Seen:
    return _convert(tmp, "hang", checkpoint_bytes=10**16)[0]


@fault("conversion killed mid-way (SIGKILL), then the deploy re-run")
def conversion_killed(tmp: Path) -> Seen:
    args, gguf = _converter_host(tmp)
    env = {**os.environ, "FAKE_CONVERTER": "hang"}
    proc = subprocess.Popen([sys.executable, str(CONVERT_QUANTIZE), *args], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while not (gguf.exists() and any(p.suffix == ".partial" for p in gguf.iterdir())):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            return Seen(False, "the converter never started writing")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    orphans = [p.name for p in gguf.iterdir()]
    taken = (gguf / "tiny-Q4_K_M.gguf").exists() or (gguf / "tiny-F16.gguf").exists()
    again = run_host_script(CONVERT_QUANTIZE, args, {**os.environ, "FAKE_CONVERTER": "ok"})
    left = sorted(p.name for p in gguf.iterdir())
    return Seen(
        held=not taken and again.returncode == 0 and not any(".partial" in n for n in left),
        what=f"after the kill: {len(orphans)} partial file(s), no output under its name; "
        f"re-run exit {again.returncode}, left: {', '.join(left)}",
        output=again.stdout + again.stderr,
    )


# --------------------------------------------------------------------------- the engine unit


@fault(f"engine crash-loops (restart every 2 s) during a {HEALTH_TIMEOUT_S} s health wait")
def crash_loop(tmp: Path) -> Seen:
    from roles.service import wait_for_health_command

    unit = FakeUnit(tmp, restart_every_s=2)
    code, seconds, stderr = timed_shell(
        wait_for_health_command("http://127.0.0.1:8080/health", HEALTH_TIMEOUT_S, unit.name),
        unit.env,
    )
    quoted = "failed to load model" in stderr
    return Seen(
        held=code == 1 and seconds < CRASH_LOOP_BOUND_S and one_line(stderr) and quoted,
        what=f"failed after {seconds:.1f} s (bound {CRASH_LOOP_BOUND_S} s), journal tail quoted: "
        f"{'yes' if quoted else 'no'}",
        output=stderr,
    )


@fault("engine unit failed (systemd gave up) during the health wait")
def unit_failed(tmp: Path) -> Seen:
    from roles.service import wait_for_health_command

    unit = FakeUnit(tmp, state="failed")
    code, seconds, stderr = timed_shell(
        wait_for_health_command("http://127.0.0.1:8080/health", HEALTH_TIMEOUT_S, unit.name),
        unit.env,
    )
    return Seen(
        held=code == 1 and seconds < CRASH_LOOP_BOUND_S and "found it failed" in stderr,
        what=f"failed after {seconds:.1f} s: {stderr.strip()[:120]}…",
        output=stderr,
    )


# --------------------------------------------------------------------------- the NCCL gate

STARTED = "# nccl-tests version 2.19.6 nccl-headers=22703 nccl-library=22703\n"
NO_RESULT_LOGS = {
    "an empty log": "",
    "binary not found": "sh: 1: /opt/metalserve/src/nccl-tests/build/all_reduce_perf: not found\n",
    "a segfault": STARTED + "Segmentation fault (core dumped)\n",
    "a SIGKILL": STARTED + "Killed\n",
}


def _gate(tmp: Path, log: str, inventory: str = "inventories/h100.py") -> Seen:
    from roles.base import RoleError
    from roles.nccl_diag import judge_and_file

    dp = diag_plan(tmp, inventory)
    stage_log(tmp, dp, log)
    try:
        notes = judge_and_file(dp, dp.runs, gate=True)
    except RoleError as stopped:
        return Seen(True, f"engine stays stopped: {str(stopped)[:140]}…", str(stopped) + "\n")
    return Seen(False, f"the gate let the engine start: {'; '.join(notes) or 'no note'}")


def _register_gate(what: str, log: str) -> None:
    fault(f"re-provisioning gate: nccl-tests produced nothing ({what})")(
        lambda tmp: _gate(tmp, log)
    )


for _what, _log in NO_RESULT_LOGS.items():
    _register_gate(_what, _log)


@fault("re-provisioning gate, no sourced busbw (4×H100 NVLink): wrong results")
def gate_wrong_results_without_figure(tmp: Path) -> Seen:
    from tests.diag.synthetic import wrong_results

    return _gate(tmp, wrong_results(), "inventories/h100x4.py")


# --------------------------------------------------------------------------- attacks


@attack("HF token in a file others can read (0644): fetch refused, token not echoed")
def loose_token(tmp: Path) -> Seen:
    token = tmp / "hf_token"
    token.write_text(secret("hf_") + "\n")
    token.chmod(0o644)
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN_PATH": str(token)}
    run = run_host_script(FETCH_WEIGHTS, ["--repo", "acme/x", "--local-dir", str(tmp / "m")], env)
    return Seen(
        held=run.returncode == 2 and "expected mode 0600, found 0644" in run.stderr,
        what=f"exit {run.returncode}: {run.stderr.strip()[:120]}",
        output=run.stdout + run.stderr,
    )


@attack("tampered llama.cpp source tarball (sha256 differs from the pin)")
def tampered_source(tmp: Path) -> Seen:
    from roles.llamacpp import fetch_command
    from tests.faultkit import REPO as TREE

    genuine = (TREE / "tests/fixtures/llamacpp/llama.cpp-fixture.tar.gz").read_bytes()
    served = tmp / "served.tar.gz"
    served.write_bytes(genuine + b"\0")  # one byte appended by whoever sits in between
    build = FakeBuild(tmp / "build").build
    dest = tmp / "src" / "llama.cpp.tar.gz"
    build = build.model_copy(update={
        "source": build.source.model_copy(update={"kind": "tarball", "url": served.as_uri(),
                                                  "sha256": hashlib.sha256(genuine).hexdigest()}),
        "source_tarball": str(dest),
    })  # fmt: skip
    run = subprocess.run(["sh", "-c", fetch_command(build)], capture_output=True, text=True)
    return Seen(
        held=run.returncode != 0 and not dest.exists(),
        what=f"fetch exit {run.returncode}; tarball kept for the build: "
        f"{'yes' if dest.exists() else 'no'}",
        output=run.stdout + run.stderr,
    )


@attack("read the sandbox API key from rendered units, env files or the engines' argv")
def api_key_scan(tmp: Path) -> Seen:
    """Render every unit of a sandbox host and of the sandbox's 2-node cluster with a fresh key;
    the key must be nowhere in them (it reaches the engine through LoadCredential=)."""
    from metalserve.artefacts.tinymodel import tiny_moe_checkpoint
    from metalserve.io.inventory import plan_host_data
    from metalserve.io.templating import render
    from metalserve.sandbox.demo import SandboxInputs, sandbox_cluster_data, sandbox_metalserve_data

    key = tmp / "api_key"
    key.write_text(secret("sk-sandbox-") + "\n")
    key.chmod(0o600)
    source = REPO / "tests/fixtures/llamacpp/llama.cpp-fixture.tar.gz"
    inputs = SandboxInputs(
        llamacpp_tarball=source, llamacpp_sha256=hashlib.sha256(source.read_bytes()).hexdigest(),
        wheelhouse=tmp / "wheels", checkpoint=tiny_moe_checkpoint(seed=0).path,
        hub_root=tmp / "hub", api_key_file=key, hub_endpoint="http://10.77.0.1:8390",
    )  # fmt: skip
    apt = "http://10.77.0.1:8080/apt"
    clients = ("10.77.0.1/32",)  # the controller, as in the sandbox
    data = {
        "ms-host1": sandbox_metalserve_data(apt, inputs, clients),
        **{f"ms-host{rank + 2}": sandbox_cluster_data(apt, inputs, clients, 2, rank, f"10.77.0.{12 + rank}")
           for rank in range(2)},
    }  # fmt: skip
    scanned = []
    for plan in plan_host_data(data):
        scanned += [f.content for f in render(plan)]
        scanned.append(" ".join(plan.service.exec_argv))
    text = "\n".join(scanned)
    found = sum(text.count(s) for s in SECRETS)
    return Seen(
        held=found == 0 and bool(scanned),
        what=f"{len(scanned)} rendered files and argv lines of 3 hosts scanned, key found {found}×",
        output=text,
    )


# --------------------------------------------------------------------------- the report


def run_checks(checks: list[Check]) -> list[Row]:
    rows = []
    for check in checks:
        with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
            started = time.monotonic()
            try:
                seen = check.run(Path(tmp))
                crashed = 0
            except (Exception, SystemExit) as error:  # a check that crashes is a failed check
                seen = Seen(False, f"crashed: {type(error).__name__}: {error}"[:200])
                crashed = 1
            seconds = time.monotonic() - started
        found = [s for s in SECRETS if s in seen.output]
        rows.append(Row(check, seen, seconds, seen.output.count(TRACEBACK) + crashed, found))
    return rows


def totals(rows: list[Row]) -> dict[str, object]:
    faults = [r for r in rows if r.check.kind == "fault"]
    attacks = [r for r in rows if r.check.kind == "attack"]
    return {
        "faults_survived": sum(r.passed for r in faults),
        "faults": len(faults),
        "attacks_refused": sum(r.passed for r in attacks),
        "attacks": len(attacks),
        "secrets_found": sum(len(r.secrets) for r in rows),
        "tracebacks": sum(r.tracebacks for r in rows),
    }


def table(rows: list[Row]) -> str:
    lines = [f"{'kind':<7} {'outcome':<8} {'s':>5}  fault injected / attack tried — what happened"]
    for r in rows:
        label = ("survived" if r.check.kind == "fault" else "refused") if r.passed else "NOT HELD"
        lines.append(f"{r.check.kind:<7} {label:<8} {r.seconds:5.1f}  {r.check.name}")
        lines.append(f"{'':<23}{r.seen.what}")
        if r.tracebacks or r.secrets:
            lines.append(f"{'':<23}tracebacks {r.tracebacks}, secrets found {len(r.secrets)}")
    t = totals(rows)
    lines.append(
        f"faults survived {t['faults_survived']}/{t['faults']}, attacks refused "
        f"{t['attacks_refused']}/{t['attacks']}, secrets found {t['secrets_found']}, "
        f"tracebacks {t['tracebacks']}"
    )
    return "\n".join(lines)


def _refused_by_check(tmp: Path, data: dict[str, object]) -> Seen:
    """``metalserve check`` on an inventory holding ``data``: refused in one line, exit 2."""
    inventory = tmp / "inventory.py"
    inventory.write_text(f"hosts = [('gpu01', {{'metalserve': {data!r}}})]\n")
    run = subprocess.run(
        [sys.executable, "-m", "metalserve.cli", "check", str(inventory)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    lines = run.stderr.strip().splitlines()
    return Seen(
        held=run.returncode == 2 and len(lines) == 1,
        what=f"exit {run.returncode}: {run.stderr.strip()[:120]}",
        output=run.stdout + run.stderr,
    )


_VLLM = {"profile": "h200-sxm-8", "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
         "engine": {"name": "vllm", "tensor_parallel_size": 8}}  # fmt: skip


@attack("shell syntax in model.repo_id ('a/b; rm -rf /') reaching the weights command")
def repo_id_injection(tmp: Path) -> Seen:
    return _refused_by_check(tmp, {**_VLLM, "model": {"repo_id": "a/b; rm -rf /"}})


@attack("a line break in model.served_name writing a live ExecStartPre= into the unit")
def served_name_injection(tmp: Path) -> Seen:
    served = "glm\nExecStartPre=/bin/sh -c 'id > /tmp/pwned'"
    return _refused_by_check(tmp, {**_VLLM, "model": {**_VLLM["model"], "served_name": served}})


@attack("an engine on every interface with no client allow-list (open endpoint)")
def open_endpoint(tmp: Path) -> Seen:
    return _refused_by_check(tmp, {**_VLLM, "engine": {**_VLLM["engine"], "host": "0.0.0.0"}})


@attack("hub mirror: a repo folder linked to /etc/ssh served to clients")
def mirror_symlink_escape(tmp: Path) -> Seen:
    from metalserve.mirror.hub import running_mirror

    root = tmp / "hub"
    (root / "acme").mkdir(parents=True)
    (root / "acme" / "ssh").symlink_to("/etc/ssh")
    with running_mirror(root) as url:
        status = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
             f"{url}/acme/ssh/resolve/main/ssh_config"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    return Seen(held=status.startswith("4"), what=f"GET ssh_config through the link: {status}")


@attack("hub mirror: %0d%0a in the path injecting a Set-Cookie header")
def mirror_header_injection(tmp: Path) -> Seen:
    from metalserve.mirror.hub import running_mirror

    (tmp / "hub").mkdir()
    with running_mirror(tmp / "hub") as url:
        head = subprocess.run(
            ["curl", "-s", "-i", "--max-time", "5", f"{url}/acme/x%0d%0aSet-Cookie:%20a=b/resolve/main/f"],
            capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
    headers = head.split("\r\n\r\n", 1)[0]
    return Seen(
        held="set-cookie" not in headers.lower() and head.startswith("HTTP/1"),
        what=f"status line {head.splitlines()[0] if head else 'none'!r}, Set-Cookie absent",
        output=head,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the checks whose name contains this word")
    parser.add_argument("--json", type=Path, help="also write the rows and totals here")
    args = parser.parse_args(argv)
    checks = [c for c in CHECKS if not args.only or args.only.lower() in c.name.lower()]
    try:
        with _stack:
            rows = run_checks(checks)
    except MetalserveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(rows))
    if args.json:
        document = {
            "rows": [{"kind": r.check.kind, "name": r.check.name, "held": r.seen.held,
                      "what": r.seen.what, "seconds": round(r.seconds, 2),
                      "tracebacks": r.tracebacks, "secrets_found": len(r.secrets)}
                     for r in rows],
            "totals": totals(rows),
        }  # fmt: skip
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
