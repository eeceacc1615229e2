"""Download throughput of the project's fetcher over a raw copy of the same bytes from a Hub mirror.

    .venv/bin/python bench/download.py [--mb 1024] [--files 4] [--repeat 2]

Publishes --mb MB of synthetic safetensors files (random bytes, --files of them) as a repo of a
local Hub mirror (``metalserve.mirror``: ``publish`` and the mirror server, in this process, on
127.0.0.1), then, --repeat times and alternating, (1) downloads the repo with
``roles/weights/files/fetch_weights.py`` into a scratch folder, as a host's weights unit runs it
(``snapshot_download`` with 16 workers, then every file checked against the mirror's sha256, then
the stamp), (2) runs ``snapshot_download`` alone on the same files (the fetcher's own share of
the time is the difference), and (3) copies the same files from the same server with curl, all
at once, and nothing else. Prints each one's MB/s (best of the repeats) and the ratio fetch / raw
copy (the goal: at least 0.8). Everything runs on the control host: the files come from the page cache
and go to the same disk, so the figure is the fetcher's own cost, not a link's. A report, not a
test. ``bench/stages.py --weights-mb N`` measures the same on a sandbox host, over the sandbox
network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _download import compare, raw_copy_result, raw_copy_script, synthetic_shards

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metalserve.mirror.hub import running_mirror  # noqa: E402
from metalserve.mirror.index import publish  # noqa: E402

FETCHER = REPO / "roles" / "weights" / "files" / "fetch_weights.py"
BENCH_REPO = "bench/download"


def hub_environment(endpoint: str, dest: Path) -> dict[str, str]:
    """The weights unit's environment (``roles.weights.fetch_environment``) for this mirror."""
    return {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_XET_HIGH_PERFORMANCE": "1",
            "HF_HOME": str(dest.parent / "hf-home")}  # fmt: skip


def timed(argv: list[str], env: dict[str, str], dest: Path) -> float:
    """Seconds ``argv`` takes to bring the repo into ``dest`` (emptied first)."""
    shutil.rmtree(dest, ignore_errors=True)
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[1]} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return seconds


def fetch_argv(dest: Path) -> list[str]:
    """The project's fetcher, as the weights unit runs it (16 workers)."""
    return [sys.executable, str(FETCHER), "--repo", BENCH_REPO, "--local-dir", str(dest),
            "--allow", "*.safetensors", "--max-workers", "16", "--progress-every", "5"]  # fmt: skip


def snapshot_argv(dest: Path) -> list[str]:
    """``snapshot_download`` alone, as the fetcher calls it: no listing, checks or stamp."""
    code = ("import sys; from huggingface_hub import snapshot_download; "
            "snapshot_download(sys.argv[1], local_dir=sys.argv[2], max_workers=16)")  # fmt: skip
    return [sys.executable, "-c", code, BENCH_REPO, str(dest)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="MB (10^6 bytes) to publish")
    parser.add_argument("--files", type=int, default=4, help="files they are split into")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-download-") as scratch:
        work = Path(scratch)
        names = synthetic_shards(work / "source", args.mb, args.files, "bench")
        repo = publish(work / "hub", BENCH_REPO, work / "source")
        shutil.rmtree(work / "source")
        total = sum(f.size for f in repo.files)
        fetches, snapshots, copies = [], [], []
        dest = work / "fetched"
        with running_mirror(work / "hub") as endpoint:
            base = f"{endpoint}/{BENCH_REPO}/resolve/{repo.sha}"
            env = hub_environment(endpoint, dest)
            for _ in range(args.repeat):
                fetches.append(timed(fetch_argv(dest), env, dest))
                snapshots.append(timed(snapshot_argv(dest), env, dest))
                copy = subprocess.run(["bash", "-c", raw_copy_script(base, names)],
                                      capture_output=True, text=True, check=False)  # fmt: skip
                copied, seconds = raw_copy_result(copy.stdout + copy.stderr)
                if copied != total:
                    raise SystemExit(f"the raw copy got {copied} bytes of {total}: {copy.stderr}")
                copies.append(seconds)
    print(f"{args.mb} MB in {args.files} files, local mirror on 127.0.0.1, best of {args.repeat}")
    for line in compare(total, min(fetches), total, min(copies)):
        print(line)
    alone = min(snapshots)
    print(f"of which snapshot_download alone: {alone:6.2f} s = {total / alone / 1e6:7.1f} MB/s "
          f"(the rest: listing, sha256 of every file, stamp)")  # fmt: skip


if __name__ == "__main__":
    main()
