"""Each stage of the serve deploy on one fresh sandbox host, the critical path, the wall time, and
how far the one is from the other; the weights download's own throughput against a raw copy.

    sudo .venv/bin/python bench/stages.py [--weights-mb 2048] [--engine vllm] [--keep] [--operations]

What is measured:

* each stage: the roles' @deploy names (``Packages: install``, ``llama.cpp: install``, ``GGUF:
  install`` …), from one of pyinfra's "Starting operation" lines to the next
  (``DeployRun.stage_seconds``); the time before the first operation (connecting, facts) is its
  own stage;
* the weights download: its transient unit on the host (started in ``Weights: start``, waited for
  in ``Weights: wait``), from the unit's first journal line to its last (the host shares the
  control host's clock, so it is placed on the deploy's timeline);
* the critical path: the longest chain of stages each needing the one before
  (``metalserve.io.stagegraph``, where the graph is), by those seconds; the wall time over it says
  how much of what could overlap did not (the goal: at most 1.15);
* the download's MB/s (the stamp's bytes over the fetcher's time, from its first progress line to
  the unit's last, verification included; the unit builds the hub venv before it) against
  curl copying the same files from the same mirror on the same host, after the deploy;
* with ``--engine vllm`` (or ``sglang``): the host stands in for a one-GPU node of that engine
  (``metalserve.sandbox.engines``, as the opt-in e2e run does): the wheelhouse's size, the operations that push it and install the
  engine from its lock. With no GPU the engine cannot start, so that deploy ends failed at the
  service, as expected.

The tiny sandbox model downloads in well under a second; ``--weights-mb N`` publishes it with N MB
of extra safetensors shards (random bytes the converter does not read: the index names only the
model's shards) as ``metalserve/tiny-moe-bench`` on the sandbox's mirror, so the download is long
enough to overlap. Caches on the control host (rootfs, apt repository, wheelhouses, ccache) are
used as they are: run it twice to see cold vs warm. A report, not a test.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from _download import compare, raw_copy_result, raw_copy_script, synthetic_shards
from _sandbox import fresh_sandbox, on_host

from metalserve.io.inventory import plan_host_data
from metalserve.io.runner import DeployRun, run_pyinfra
from metalserve.io.stagegraph import (
    CONNECT,
    DOWNLOAD,
    WAITS,
    critical_path,
    path_seconds,
    unknown_stages,
)
from metalserve.mirror.index import publish
from metalserve.plan import HostPlan, WeightsPlan
from metalserve.sandbox import down
from metalserve.sandbox.demo import INVENTORY, SERVE, SandboxInputs, load_inputs, save_inputs
from metalserve.sandbox.engines import ENGINES, engine_host
from metalserve.sandbox.inventory import inventory_hosts
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.state import SandboxState
from roles.weights import STAMP, fetch_command, fetch_environment, script_path

BENCH_REPO = "metalserve/tiny-moe-bench"


def publish_heavier(inputs: SandboxInputs, megabytes: int) -> SandboxInputs:
    """The tiny checkpoint with ``megabytes`` MB of extra shards, on the sandbox's mirror."""
    with tempfile.TemporaryDirectory(prefix="bench-weights-") as scratch:
        folder = Path(scratch) / "checkpoint"
        shutil.copytree(inputs.checkpoint, folder)
        synthetic_shards(folder, megabytes, max(1, megabytes // 256), "bench-extra")
        publish(inputs.hub_root, BENCH_REPO, folder)
    return inputs.model_copy(update={"repo_id": BENCH_REPO})


def download_window(state: SandboxState, host: str, weights: WeightsPlan
                    ) -> tuple[float, float, float]:  # fmt: skip
    """The weights unit's first journal line, the fetcher's first progress line (the unit builds
    the hub venv before it) and the unit's last line (epoch seconds)."""
    out = on_host(state, host, f"journalctl -u {weights.unit}.service -o short-unix -q --no-pager")
    lines = [line.split(None, 2) for line in out.splitlines() if line[:1].isdigit()]
    stamps = [float(words[0]) for words in lines]
    fetching = [float(w[0]) for w in lines if len(w) == 3 and ": weights: " in f" {w[2]}"]
    if not stamps:
        raise SystemExit(f"{host}: no journal lines for {weights.unit}.service")
    return stamps[0], (fetching or stamps)[0], stamps[-1]


def stage_durations(run: DeployRun, window: tuple[float, ...] | None) -> dict[str, float]:
    """Seconds per stage in the order they started, with the download after ``Weights: start``."""
    durations = {CONNECT: run.starts[0][0] if run.starts else run.elapsed}
    for stage, seconds in run.stage_seconds().items():
        durations[stage] = seconds
        if stage == "Weights: start" and window is not None:
            durations[DOWNLOAD] = window[-1] - window[0]
    return durations


def print_stages(durations: dict[str, float], wall: float, offsets: tuple[float, float] | None,
                 ) -> None:  # fmt: skip
    path = critical_path(durations)
    width = max(len(s) for s in durations)
    for stage, seconds in durations.items():
        mark = "*" if stage in path else " "
        note = "  (waiting: counts 0 on a path)" if stage in WAITS else ""
        if stage == DOWNLOAD and offsets:
            note = f"  (on the host, from {offsets[0]:.1f} s to {offsets[1]:.1f} s of the deploy)"
        share = "" if stage == DOWNLOAD else f"{100 * seconds / wall:5.1f} %"
        print(f"{mark} {stage:<{width}}  {seconds:8.1f} s  {share:>7}{note}")
    for stage in unknown_stages(durations):
        print(f"  note: {stage!r} is not in the stage graph: taken to need every stage before it")
    critical = path_seconds(path, durations)
    print(f"critical path (*): {' -> '.join(path)}")
    print(f"critical path: {critical:8.1f} s")
    print(f"wall time:     {wall:8.1f} s")
    print(f"wall / critical path: {wall / critical:.2f} (goal <= 1.15)")


IDLE_FETCH_MARK = "idle-fetch"


def idle_fetch_script(weights: WeightsPlan, files: list[str], script: str) -> str:
    """A bash script that removes the fetched files, the stamp and the fetcher's record of what
    it hashed, then runs the fetcher as the weights unit runs it (its environment, its argv; the
    hub venv is there by now) and prints ``idle-fetch SECONDS``: the same download, with nothing
    else running on the host."""
    local = Path(weights.local_dir)
    gone = [str(local / name) for name in files]
    gone += [str(local / STAMP), str(local / ".cache" / "metalserve-verified.json")]
    env = [f"{k}={v}" for k, v in sorted(fetch_environment(weights).items())]
    return (
        f"set -e\nrm -f -- {shlex.join(gone)}\nstart=$(date +%s.%N)\n"
        f"env {shlex.join(env)} {fetch_command(weights, script)} >/dev/null\n"
        f'echo {IDLE_FETCH_MARK} "$(awk "BEGIN {{ print $(date +%s.%N) - $start }}")"\n'
    )


def download_vs_raw_copy(state: SandboxState, host: str, plan: HostPlan,
                         seconds: float) -> None:  # fmt: skip
    """The download during the deploy, the same download again on the idle host, and curl's copy
    of the same bytes on the idle host: the deploy's figure shares the CPUs with the llama.cpp
    build and the GGUF steps it overlaps, the idle one is the fetcher's own."""
    weights = plan.weights
    assert weights is not None
    stamp = json.loads(on_host(state, host, f"cat {weights.local_dir}/{STAMP}"))
    base = f"{weights.source.endpoint}/{weights.repo_id}/resolve/{stamp['commit']}"
    files = sorted(stamp["sizes"])
    beside = str(Path(weights.local_dir).parent)  # the disk the fetcher writes to
    script = raw_copy_script(base, files, weights.token_file, scratch_in=beside)
    copy = on_host(state, host, "bash -s 2>&1", script.encode())
    copied, copy_s = raw_copy_result(copy)
    if copied != stamp["bytes"]:
        raise SystemExit(f"the raw copy got {copied} bytes of {stamp['bytes']}: {copy[-500:]}")
    idle = on_host(state, host, "bash -s",
                   idle_fetch_script(weights, files, script_path(plan)).encode())  # fmt: skip
    idle_s = float(next(line.split()[1] for line in idle.splitlines()
                        if line.startswith(IDLE_FETCH_MARK + " ")))  # fmt: skip
    size = int(stamp["bytes"])
    print(
        f"weights {weights.repo_id}: {len(files)} files, on {host} from {weights.source.endpoint}"
    )
    print(f"during the deploy:   {size / 1e6:9.1f} MB in {seconds:6.2f} s = "
          f"{size / seconds / 1e6:7.1f} MB/s (sharing the CPUs with the stages it overlaps)")  # fmt: skip
    print("on the idle host, after it:")
    for line in compare(size, idle_s, copied, copy_s):
        print(line)


def print_engine_install(run: DeployRun, wheelhouse: Path) -> None:
    wheels = list(wheelhouse.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(f"wheelhouse: {len(wheels)} wheels, {size / 1e9:.2f} GB ({wheelhouse})")
    for name, seconds in run.operation_seconds():
        if "Push the wheelhouse" in name or "from its lock" in name:
            print(f"  {name}: {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-mb", type=int, default=0,
                        help="MB of extra shards published with the tiny checkpoint")  # fmt: skip
    parser.add_argument("--engine", choices=("llamacpp", *sorted(ENGINES)), default="llamacpp")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up")
    parser.add_argument("--operations", action="store_true",
                        help="also print every operation's seconds (what a stage spent them on)")  # fmt: skip
    args = parser.parse_args()
    state = fresh_sandbox(1)
    layout = default_layout()
    inputs = load_inputs(layout.run_dir)
    assert inputs is not None
    if args.weights_mb:
        inputs = publish_heavier(inputs, args.weights_mb)
        save_inputs(layout.run_dir, inputs)
    scratch = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    if args.engine in ENGINES:
        engine = engine_host(state, inputs, args.engine, scratch)
        host, data, inventory = engine.name, engine.data, str(engine.inventory)
    else:
        host, data = inventory_hosts(state, inputs)[0]
        inventory = INVENTORY
    plan = plan_host_data({host: data["metalserve"]})[0]
    assert plan.weights is not None

    started = time.time()
    run = run_pyinfra(inventory, SERVE, timeout_s=3600)
    if run.returncode != 0 and (args.engine not in ENGINES or "from its lock" not in run.output):
        raise SystemExit(f"deploy failed:\n{run.output[-2000:]}")
    if run.returncode != 0:
        failed = [line for line in run.output.splitlines() if "last journal lines" in line]
        print(f"deploy ended failed, as it must with no GPU: {(failed or ['?'])[0].strip()[:300]}")
    window = download_window(state, host, plan.weights)
    durations = stage_durations(run, window)
    print_stages(durations, run.elapsed, (window[0] - started, window[-1] - started))
    print(f"  of which the hub venv, built in the unit first: {window[1] - window[0]:.1f} s")
    if args.operations:
        for name, seconds in run.operation_seconds():
            print(f"  {seconds:6.1f} s  {name}")
    download_vs_raw_copy(state, host, plan, window[2] - window[1])
    if args.engine in ENGINES:
        print_engine_install(run, engine.wheelhouse)
    else:
        again = run_pyinfra(inventory, SERVE)
        print(f"no-op re-run: {again.elapsed:8.1f} s  ({again.totals.changed} changed)")
    shutil.rmtree(scratch, ignore_errors=True)
    if not args.keep:
        down(progress=lambda _: None)
        if args.weights_mb:
            shutil.rmtree(inputs.hub_root / BENCH_REPO, ignore_errors=True)


if __name__ == "__main__":
    main()
