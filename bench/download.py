"""Download throughput of the project's fetcher over a raw copy of the same bytes from a Hub mirror.

    .venv/bin/python bench/download.py [--mb 4096] [--files 8] [--repeat 2] [--fetcher FILE]
                                       [--link-mbit N]

Publishes --mb MB of synthetic safetensors files (random bytes, --files of them) as a repo of a
local Hub mirror (``metalserve.mirror``: ``publish`` and the mirror server, in this process, on
127.0.0.1), then, --repeat times and alternating, (1) downloads the repo with
``roles/weights/files/fetch_weights.py`` (or --fetcher, another checkout's) into a scratch folder,
as a host's weights unit runs it (16 workers asked for: the files in worker processes, one per CPU
at most, each file's sha256 checked against the mirror's as it lands, then the stamp), (2) runs
``snapshot_download`` alone on the same files (one process, 16 threads, nothing checked), (3) copies
the same files from the same server with curl, all at once, and nothing else, and (4) the same copy
with each file hashed (``openssl dgst -sha256``) as soon as its curl ends (the digests checked
against the mirror's). Prints each one's MB/s (best of the repeats), the ratio fetch / raw copy (the
goal: at least 0.8), and the ratio fetch / (raw copy + sha256): the floor any download that verifies
what it got pays — where the raw copy alone keeps every core busy, as on a 2-core machine, hashing
cannot overlap it for free. Everything runs on the control host: the files come from the page cache
and go to the same disk, so the figure is the fetcher's own cost, not a link's. A report, not a
test. ``bench/stages.py --weights-mb N`` measures the same on a sandbox host, over the sandbox
network.

With ``--link-mbit N`` the mirror is reached over a link of N Mbit/s instead of the loopback: a
network namespace of the bench's own (root needed), joined to this one by a veth pair whose mirror
end sends at most N Mbit/s (``tc`` ``tbf``); every download and copy runs inside the namespace. On
loopback the bytes cost nothing to carry and every figure is the CPU's; over a link slower than
the CPUs (a site mirror on a shared 10-25 GbE, the Hub over a WAN: every real host), the question
is whether the fetcher keeps the link full as curl does, startup, listing, hashing and stamp
included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _download import (
    compare,
    compare_floor,
    raw_copy_result,
    raw_copy_script,
    sha256_lines,
    synthetic_shards,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metalserve.mirror.hub import running_mirror  # noqa: E402
from metalserve.mirror.index import publish  # noqa: E402

LINK_SUBNET = "10.83.0"
"""The shaped link's /30: the mirror's end .1, the namespace's .2 (sandboxes use 10.76-10.81)."""
FETCHER = REPO / "roles" / "weights" / "files" / "fetch_weights.py"
BENCH_REPO = "bench/download"


def hub_environment(endpoint: str, dest: Path) -> dict[str, str]:
    """The weights unit's environment (``roles.weights.fetch_environment``) for this mirror."""
    return {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_XET_HIGH_PERFORMANCE": "1",
            "HF_HOME": str(dest.parent / "hf-home")}  # fmt: skip


@contextlib.contextmanager
def shaped_link(mbit: int) -> Iterator[tuple[str, list[str]]]:
    """A namespace of this bench's own, joined to this one by a veth pair whose end here sends at
    most ``mbit`` Mbit/s; yields the address of that end (the mirror binds it) and the argv
    prefix that runs a command inside the namespace. Both are removed on the way out."""
    if os.geteuid() != 0:
        raise SystemExit("--link-mbit: expected root (it creates a network namespace and a veth "
                         f"pair), found uid {os.geteuid()} — fix: run it as root, or drop the flag")  # fmt: skip
    netns, outer, inner = f"msbench{os.getpid()}", f"msb{os.getpid()}o", f"msb{os.getpid()}i"
    in_ns = ["ip", "netns", "exec", netns]
    # tbf's bucket must hold what the veth hands it at once (64 KiB GSO segments, more at high
    # rates); 1 ms of the rate, and never below 1 MB, keeps it from throttling below the rate.
    burst = max(mbit * 1000 // 8, 10**6)
    steps = [
        ["ip", "netns", "add", netns],
        ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", netns],
        ["ip", "addr", "add", f"{LINK_SUBNET}.1/30", "dev", outer],
        ["ip", "link", "set", outer, "up"],
        [*in_ns, "ip", "addr", "add", f"{LINK_SUBNET}.2/30", "dev", inner],
        [*in_ns, "ip", "link", "set", inner, "up"],
        [*in_ns, "ip", "link", "set", "lo", "up"],
        ["tc", "qdisc", "add", "dev", outer, "root", "tbf", "rate", f"{mbit}mbit",
         "burst", str(burst), "latency", "100ms"],
    ]  # fmt: skip
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"--link-mbit: {' '.join(step)}: {done.stderr.strip()}")
        yield f"{LINK_SUBNET}.1", in_ns
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def timed(argv: list[str], env: dict[str, str], dest: Path, empty: bool = True) -> float:
    """Seconds ``argv`` takes to bring the repo into ``dest`` (emptied first, unless not
    ``empty``)."""
    if empty:
        shutil.rmtree(dest, ignore_errors=True)
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[1]} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return seconds


def fetch_argv(fetcher: Path, dest: Path) -> list[str]:
    """The project's fetcher, as the weights unit runs it (16 workers)."""
    return [sys.executable, str(fetcher), "--repo", BENCH_REPO, "--local-dir", str(dest),
            "--allow", "*.safetensors", "--max-workers", "16", "--progress-every", "5"]  # fmt: skip


def snapshot_argv(dest: Path) -> list[str]:
    """``snapshot_download`` alone, as the fetcher calls it: no listing, checks or stamp."""
    code = ("import sys; from huggingface_hub import snapshot_download; "
            "snapshot_download(sys.argv[1], local_dir=sys.argv[2], max_workers=16)")  # fmt: skip
    return [sys.executable, "-c", code, BENCH_REPO, str(dest)]


def raw_copy(
    base: str, names: list[str], total: int, sha256: bool, prefix: list[str]
) -> tuple[float, list[str]]:
    """Seconds the raw copy of every file takes (with ``sha256``: each hashed as it lands), and
    the digests it printed."""
    copy = subprocess.run([*prefix, "bash", "-c", raw_copy_script(base, names, sha256=sha256)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    copied, seconds = raw_copy_result(copy.stdout + copy.stderr)
    if copied != total:
        raise SystemExit(f"the raw copy got {copied} bytes of {total}: {copy.stderr}")
    return seconds, sha256_lines(copy.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=4096, help="MB (10^6 bytes) to publish")
    parser.add_argument("--files", type=int, default=8, help="files they are split into")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fetcher", type=Path, default=FETCHER,
                        help="the fetch_weights.py to measure (another checkout's)")  # fmt: skip
    parser.add_argument("--link-mbit", type=int,
                        help="reach the mirror over a link of this many Mbit/s, not loopback")  # fmt: skip
    args = parser.parse_args()
    if args.link_mbit is not None and args.link_mbit <= 0:
        parser.error(f"--link-mbit: expected a positive rate, found {args.link_mbit}")
    with tempfile.TemporaryDirectory(prefix="bench-download-") as scratch:
        work = Path(scratch)
        names = synthetic_shards(work / "source", args.mb, args.files, "bench")
        repo = publish(work / "hub", BENCH_REPO, work / "source")
        shutil.rmtree(work / "source")
        total = sum(f.size for f in repo.files)
        digests = sorted(f.sha256 for f in repo.files)
        fetches, fixed, snapshots, copies, floors = [], [], [], [], []
        dest = work / "fetched"
        with contextlib.ExitStack() as stack:
            host, prefix = "127.0.0.1", []
            if args.link_mbit:
                host, prefix = stack.enter_context(shaped_link(args.link_mbit))
            endpoint = stack.enter_context(running_mirror(work / "hub", f"{host}:0"))
            base = f"{endpoint}/{BENCH_REPO}/resolve/{repo.sha}"
            env = hub_environment(endpoint, dest)
            for _ in range(args.repeat):
                fetches.append(timed([*prefix, *fetch_argv(args.fetcher, dest)], env, dest))
                fixed.append(timed([*prefix, *fetch_argv(args.fetcher, dest)], env, dest, False))
                snapshots.append(timed([*prefix, *snapshot_argv(dest)], env, dest))
                copies.append(raw_copy(base, names, total, sha256=False, prefix=prefix)[0])
                seconds, hashed = raw_copy(base, names, total, sha256=True, prefix=prefix)
                if hashed != digests:
                    raise SystemExit(f"the raw copy's sha256 are not the mirror's: {hashed}")
                floors.append(seconds)
    where = (f"over a {args.link_mbit} Mbit/s link (tc tbf)" if args.link_mbit
             else "on 127.0.0.1")  # fmt: skip
    print(f"{args.mb} MB in {args.files} files, local mirror {where}, best of {args.repeat}, "
          f"{len(os.sched_getaffinity(0))} CPUs; fetcher {args.fetcher}")  # fmt: skip
    for line in compare(total, min(fetches), total, min(copies)):
        print(line)
    for line in compare_floor(total, min(fetches), total, min(floors)):
        print(line)
    print(f"fixed cost: {min(fixed):.2f} s, a run with nothing to fetch (Python, imports, the "
          "repo's commit): paid once per download, whatever its size")  # fmt: skip
    alone = min(snapshots)
    print(f"snapshot_download alone: {alone:6.2f} s = {total / alone / 1e6:7.1f} MB/s "
          "(one process, 16 threads, nothing checked)")  # fmt: skip


if __name__ == "__main__":
    main()
