"""Fault injectors shared by the tests and ``bench/faults.py``: stand-ins for the tools a host
script or a role's shell command calls, and a full disk inside a host script — nothing mounted,
nothing of the machine's own touched.

* ``run_host_script``: a host script run as the role runs it (its own Python process), with
  Python code injected first — e.g. ``DOWNLOAD_FILLS_THE_DISK`` makes the first write into a
  partial download raise ``ENOSPC`` once 64 KiB are in;
  ``DOWNLOAD_KILLED_MID_SHARD`` kills the fetcher and its worker while the second shard
  downloads, ``WORKER_KILLED_MID_SHARD`` only the worker, ``WORKERS_STUCK`` holds every
  worker (its pid in ``$STUCK_WORKERS``). Patches reach the fetcher's download workers: they are
  forked from the process the injection ran in.
* ``fake_llamacpp``: a llama.cpp source folder whose ``convert_hf_to_gguf.py`` writes, fills the
  disk or hangs (``FAKE_CONVERTER``), and a ``llama-quantize`` that writes its output;
  ``FAKE_GGUF_SPLIT`` plans and cuts parts as ``llama-gguf-split`` does;
  ``FAKE_CMAKE`` builds stand-in binaries.
* ``FakeUnit``: ``systemctl``, ``journalctl`` and ``curl`` on a PATH of their own, answering for a
  unit that is healthy, failed, or crash-looping (``NRestarts`` growing every few seconds).

Example::

    unit = FakeUnit(tmp_path, restart_every_s=2)
    subprocess.run(["sh", "-c", wait_for_health_command(url, 1800, unit.name)], env=unit.env)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FETCH_WEIGHTS = REPO / "roles" / "weights" / "files" / "fetch_weights.py"
CONVERT_QUANTIZE = REPO / "roles" / "gguf" / "files" / "convert_quantize.py"
TRACEBACK = "Traceback (most recent call last)"

_RUN_AS_MAIN = """
import runpy, sys
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

PARTIAL_WRITES = """
import os

_write = os.write

def _partial(fd):
    # the file a write goes to, when it is a download in progress (an ``.incomplete`` file)
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return path if path.endswith(".incomplete") else None
"""
"""What the download faults share: the fetcher's workers write each file's bytes with
``os.write`` into an ``.incomplete`` file, and the faults act on those writes."""

DOWNLOAD_FILLS_THE_DISK = (
    PARTIAL_WRITES
    + """
import errno

def _fills_the_disk(fd, data):
    # 64 KiB of the file land, then the disk is full
    if _partial(fd):
        _write(fd, bytes(65536))
        raise OSError(errno.ENOSPC, "No space left on device")
    return _write(fd, data)

# the fetcher's workers write with it, and are forked after this ran
os.write = _fills_the_disk
"""
)

_KILLED_MID_SHARD = (
    PARTIAL_WRITES
    + """
import multiprocessing, signal

def _killed(fd, data):
    # the second shard: some bytes written, then the process is gone
    if "model-00002-of-00002" in (_partial(fd) or ""):
        _write(fd, data[:65536])
        if KILL_THE_FETCHER and multiprocessing.parent_process() is not None:
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    return _write(fd, data)

# the fetcher's download workers are forked after this ran
os.write = _killed
"""
)
DOWNLOAD_KILLED_MID_SHARD = "KILL_THE_FETCHER = True\n" + _KILLED_MID_SHARD
"""kill -9 of the whole run (a reboot): the fetcher, then the worker downloading the shard."""
WORKER_KILLED_MID_SHARD = "KILL_THE_FETCHER = False\n" + _KILLED_MID_SHARD
"""The worker downloading the shard alone (the OOM killer's choice); the fetcher lives on."""

WORKERS_STUCK = (
    PARTIAL_WRITES
    + """
import time

def _stuck(fd, data):
    # every file: the worker names itself (pid) in $STUCK_WORKERS, then waits
    if _partial(fd):
        with open(os.environ["STUCK_WORKERS"], "a") as pids:
            pids.write(f"{os.getpid()}\\n")
        time.sleep(120)
    return _write(fd, data)

os.write = _stuck
"""
)


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def run_host_script(
    script: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    inject: str = "",
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``args`` in a Python process of its own, ``inject`` run first."""
    argv = host_script_argv(script, args, inject)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s)


def host_script_argv(script: Path, args: list[str], inject: str = "") -> list[str]:
    """The argv of ``run_host_script``, for a test that starts the script and acts meanwhile."""
    return [sys.executable, "-c", inject + _RUN_AS_MAIN, str(script), *args]


# --------------------------------------------------------------------------- GGUF conversion

FAKE_CONVERTER = """#!/usr/bin/env python3
# Stands in for llama.cpp's convert_hf_to_gguf.py: MODEL --outtype f16 --outfile FILE
# ($FAKE_F16_BYTES bytes, 4096 unless set).
import os, sys, time
out = sys.argv[sys.argv.index("--outfile") + 1]
how = os.environ.get("FAKE_CONVERTER", "ok")
with open(out, "wb") as f:
    f.write(bytes(int(os.environ.get("FAKE_F16_BYTES", "4096")) if how == "ok" else 1024))
    f.flush()
    if how == "full-disk":
        raise OSError(28, "No space left on device")  # what the real one dies with
    if how == "hang":
        time.sleep(120)
"""

FAKE_QUANTIZE = """#!/bin/sh
# Stands in for llama-quantize: IN OUT TYPE THREADS writes a quarter of IN to OUT.
head -c $(( $(stat -c %s "$1") / 4 )) "$1" > "$2"
"""


FAKE_GGUF_SPLIT = """#!/usr/bin/env python3
# Stands in for llama-gguf-split: [--dry-run] --split-max-size NM IN OUT. IN's tensors are its
# bytes in blocks of $FAKE_TENSOR_BYTES (the last block shorter), the first $FAKE_HEADER_BYTES
# its header. Parts are planned as gguf-split.cpp plans them (a new part when the next tensor
# would pass the size; a first tensor larger than the size is refused) and reported in its
# words (split_strategy::print_info); a real run writes part k of n to OUT-%05d-of-%05d.gguf,
# the header in the first, and counts the runs in $FAKE_SPLIT_RUNS.
import os, sys
args = sys.argv[1:]
size = args[args.index("--split-max-size") + 1]
limit = int(size[:-1]) * 1000 * 1000
source, out = args[-2], args[-1]
header = int(os.environ.get("FAKE_HEADER_BYTES", "0"))
block = int(os.environ.get("FAKE_TENSOR_BYTES", "1000000"))
total = os.path.getsize(source)
tensors = [(o, min(block, total - o)) for o in range(header, total, block)]
parts, current = [[]], 0
for offset, length in tensors:
    if current + length > limit:
        if not parts[-1]:
            sys.exit("error: one of splits have 0 tensors. Maybe size or tensors limit is too small")
        parts.append([])
        current = 0
    parts[-1].append((offset, length))
    current += length
print(f"n_split: {len(parts)}")
for k, part in enumerate(parts, 1):
    made = sum(length for _, length in part) + (header if k == 1 else 0)
    print(f"split {k:05d}: n_tensors = {len(part)}, total_size = {made // 1000000}M")
if "--dry-run" in args:
    sys.exit(0)
with open(os.environ["FAKE_SPLIT_RUNS"], "a") as runs:
    runs.write("split\\n")
with open(source, "rb") as f:
    for k, part in enumerate(parts, 1):
        with open(f"{out}-{k:05d}-of-{len(parts):05d}.gguf", "wb") as o:
            if k == 1:
                o.write(f.read(header))
            for offset, length in part:
                f.seek(offset)
                o.write(f.read(length))
"""


def fake_llamacpp(root: Path) -> tuple[Path, Path]:
    """A llama.cpp source folder with the stand-in converter, and the stand-in quantize binary
    (the stand-in ``llama-gguf-split`` beside it)."""
    src = root / "llama.cpp-src"
    src.mkdir(parents=True)
    executable(src / "convert_hf_to_gguf.py", FAKE_CONVERTER)
    executable(root / "llama-gguf-split", FAKE_GGUF_SPLIT)
    return src, executable(root / "llama-quantize", FAKE_QUANTIZE)


# --------------------------------------------------------------------------- llama.cpp build

FAKE_CMAKE = """#!/bin/sh
# Stands in for cmake: configure makes the build folder; --build writes one file per --target
# (its size differs per target) and counts the builds in $CMAKE_BUILDS.
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


class FakeBuild:
    """The sandbox plan's llama.cpp build, installed under ``root`` from the fixture source and run
    for real (``sh -c``, ``flock``, ``stat``) with ``FAKE_CMAKE`` on PATH."""

    def __init__(self, root: Path) -> None:
        from metalserve.io.modelfiles import checkpoint_for_spec
        from metalserve.plan import plan_alone
        from metalserve.spec import host_spec

        data = {"profile": "sandbox-cpu", "model": {"repo_id": "local/tiny"},
                "engine": {"name": "llamacpp"}}  # fmt: skip
        spec = host_spec("h", data)
        build = plan_alone(spec, checkpoint_for_spec(spec)).llamacpp
        assert build is not None
        install = root / "llama.cpp"
        self.build = build.model_copy(
            update={
                "source_tarball": str(REPO / "tests/fixtures/llamacpp/llama.cpp-fixture.tar.gz"),
                "prefix": f"{install}/{build.version}-{build.build_key}",
                "current": f"{install}/current",
            }
        )
        bin_dir = root / "fake-cmake"
        bin_dir.mkdir(parents=True)
        executable(bin_dir / "cmake", FAKE_CMAKE)
        self.builds = root / "builds"
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                    "CMAKE_BUILDS": str(self.builds)}  # fmt: skip

    @property
    def bin(self) -> Path:
        return Path(self.build.prefix) / "bin"

    def run(self) -> int:
        """Run the build command; return how many builds have run so far."""
        from roles.llamacpp import build_command

        done = subprocess.run(["sh", "-c", build_command(self.build)], env=self.env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the build command failed: {done.stderr.strip()}")
        return len(self.builds.read_text().splitlines()) if self.builds.exists() else 0


# --------------------------------------------------------------------------- a systemd unit

FAKE_SYSTEMCTL = """#!/bin/sh
# systemctl show -p PROPERTY --value UNIT, answered from $FAKE_UNIT_DIR.
dir=$FAKE_UNIT_DIR
case "$3" in
  NRestarts)
    if [ -f "$dir/restart_every" ]; then
      echo $(( ($(date +%s) - $(cat "$dir/started")) / $(cat "$dir/restart_every") ))
    else
      echo 0
    fi ;;
  ActiveState) cat "$dir/state" ;;
esac
"""

FAKE_JOURNALCTL = """#!/bin/sh
cat "$FAKE_UNIT_DIR/journal"
"""

FAKE_CURL = """#!/bin/sh
# Answers every request with $FAKE_UNIT_DIR/http_code (000: nothing listens).
cat "$FAKE_UNIT_DIR/http_code"
"""

CRASH_JOURNAL = (
    "Started metalserve-llamacpp.service - metalserve llama.cpp.\n"
    "main: loading model\n"
    "gguf_init_from_file: failed to open GGUF file "
    "'/var/lib/metalserve/gguf/metalserve--tiny-moe-Q4_K_M.gguf' (No such file or directory)\n"
    "main: error: failed to load model\n"
    "metalserve-llamacpp.service: Main process exited, code=exited, status=1/FAILURE\n"
)


class FakeUnit:
    """A unit as ``systemctl``/``journalctl`` report it and ``curl`` reaches it."""

    def __init__(
        self,
        root: Path,
        name: str = "metalserve-llamacpp.service",
        state: str = "activating",
        restart_every_s: int | None = None,
        started_ago_s: int = 0,
        http_code: str | None = "000",
        journal: str = CRASH_JOURNAL,
    ) -> None:
        """``http_code`` None: the real ``curl`` answers (an HTTP server of the test's own)."""
        self.name = name
        self.dir = root / "fake-unit"
        bin_dir = self.dir / "bin"
        bin_dir.mkdir(parents=True)
        executable(bin_dir / "systemctl", FAKE_SYSTEMCTL)
        executable(bin_dir / "journalctl", FAKE_JOURNALCTL)
        if http_code is not None:
            executable(bin_dir / "curl", FAKE_CURL)
        (self.dir / "started").write_text(f"{int(time.time()) - started_ago_s}\n")
        (self.dir / "journal").write_text(journal)
        self.set(state=state, http_code=http_code)
        if restart_every_s is not None:
            (self.dir / "restart_every").write_text(f"{restart_every_s}\n")
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_UNIT_DIR": str(self.dir),
        }

    def set(self, state: str | None = None, http_code: str | None = None) -> None:
        if state is not None:
            (self.dir / "state").write_text(f"{state}\n")
        if http_code is not None:
            (self.dir / "http_code").write_text(http_code)


def timed_shell(
    command: str, env: dict[str, str], timeout_s: float = 120
) -> tuple[int, float, str]:
    """Run ``command`` with ``sh -c``; its exit status, wall seconds and stderr."""
    start = time.monotonic()
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                          timeout=timeout_s)  # fmt: skip
    return done.returncode, time.monotonic() - start, done.stderr


# --------------------------------------------------------------------------- the NCCL gate


def diag_plan(reports_dir: Path, inventory: str = "inventories/h100.py", **diag: object):  # type: ignore[no-untyped-def]
    """The diagnostic plan of an inventory's first host, its reports under ``reports_dir``."""
    import runpy

    from metalserve.io.modelfiles import checkpoint_for_spec
    from metalserve.plan import plan_alone
    from metalserve.spec import host_spec

    name, data = runpy.run_path(str(REPO / inventory))["hosts"][0]
    metalserve = {**data["metalserve"], "diag": {"reports_dir": str(reports_dir), **diag}}
    spec = host_spec(name, metalserve)
    return plan_alone(spec, checkpoint_for_spec(spec)).diag


def stage_log(reports_dir: Path, dp, log: str, report: str = "") -> None:  # type: ignore[no-untyped-def]
    """Put a run's log (and ``-J`` report, touched empty when nccl-tests wrote none) where the
    role's fetch leaves them on the control host."""
    staging = reports_dir / "incoming" / dp.host
    staging.mkdir(parents=True)
    (staging / "all_reduce.log").write_text(log)
    (staging / "all_reduce.json").write_text(report)
