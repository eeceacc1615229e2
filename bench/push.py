"""Pushing a bundle's checkpoint onto a sandbox host: ``roles.push`` (rsync over SSH) and the
``files.sync`` the roles used before, each over a raw local copy of the same bytes.

    sudo .venv/bin/python bench/push.py [--gb 2] [--shards 4] [--repeat 2] [--keep]

On a sandbox of its own (layout ``mp``, 10.76.0.0/24, beside the shared one and the other
benches') with one host: a bundle is made on the control host holding a checkpoint-shaped folder
(``--shards`` safetensors of random bytes, ``--gb`` GB in all, and the small JSON files a checkpoint
has) with its manifest, and rsync is installed on the host (from the .debs ``apt-get download``
fetches here; on a site they come from the bundle's own repository). Then, ``--repeat`` rounds of,
each into an empty folder after a ``sync``:

1. raw copy: ``cp -r`` of the folder to another folder of the control host — the same bytes from
   the same page cache to the same disk, with no network and no SSH (the yardstick);
2. ssh pipe: ``tar | ssh | tar`` of the folder onto the host — what this machine's SSH path
   carries with no rsync and no check (the ceiling of any push over SSH here);
3. push: ``roles.push`` through pyinfra (the dry run, rsync with ``roles.push.STREAMS`` streams for
   the shards, then the manifest check on the host), with 4 streams and with 1, each followed by
   the same push again, which must report no change;
4. files.sync: pyinfra's SFTP, in Python, as the roles carried bundles before.

Each push figure is the pyinfra operation's seconds, from its start line to the end of the run
(connecting and the facts gathered before it not counted), with rsync's own share as the push logs
it. Printed, the best of the rounds for each: MB/s and the ratio to the raw copy (push / raw copy,
files.sync / raw copy), all measured in this one run. The host's sshd is reached through the
sandbox's loopback relay (a Python TCP pump, ``metalserve/sandbox/relay.py``) and every process
shares this machine's CPUs, so the figures say what each way costs here, not what a site's link
carries. A report, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _download import synthetic_shards
from _sandbox import on_host

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metalserve.bundle.manifest import file_records, write_manifest  # noqa: E402
from metalserve.io.runner import DeployRun, run_pyinfra  # noqa: E402
from metalserve.offline import BUNDLE_FORMAT, BundleManifest  # noqa: E402
from metalserve.sandbox import down, up  # noqa: E402
from metalserve.sandbox.inventory import host_data  # noqa: E402
from metalserve.sandbox.layout import SandboxLayout  # noqa: E402
from metalserve.sandbox.state import SandboxState  # noqa: E402

DEPLOY = REPO / "bench" / "_push_deploy.py"
LAYOUT = SandboxLayout(prefix="mp", subnet="10.76.0.0/24", http_port=8085,
                       run_dir=Path.home() / ".local/state/metalserve/sandbox-mp")  # fmt: skip
RSYNC_DEBS = ("rsync", "libpopt0")
"""rsync and what of its dependencies the sandbox's minimal Debian 12 root lacks."""
ON_HOST = "/var/lib/metalserve/bench"
PUSH_LOG = re.compile(r"push \S+: (\d+) file\(s\), .* in ([0-9.]+) s ")


def checkpoint_bundle(root: Path, gb: float, shards: int) -> Path:
    """A bundle holding one checkpoint-shaped folder, with its manifest; the folder."""
    folder = root / "models" / "bench--push"
    names = synthetic_shards(folder, int(gb * 1000), shards, "model")
    index = {"metadata": {}, "weight_map": {f"layer{i}": n for i, n in enumerate(names)}}
    small = {
        "config.json": {"architectures": ["BenchForCausalLM"], "hidden_size": 4096},
        "generation_config.json": {"do_sample": True},
        "model.safetensors.index.json": index,
        "tokenizer.json": {"vocab": {f"tok{i}": i for i in range(50_000)}},
    }
    for name, doc in small.items():
        (folder / name).write_text(json.dumps(doc))
    listed = [f"models/bench--push/{p.name}" for p in sorted(folder.iterdir())]
    write_manifest(root, BundleManifest(format=BUNDLE_FORMAT, hosts=(), pins={},
                   key_fingerprint=None, inputs=(), files=file_records(root, listed, {})))  # fmt: skip
    return folder


def install_rsync(state: SandboxState, host: str, scratch: Path) -> str:
    debs = scratch / "debs"
    debs.mkdir()
    fetched = subprocess.run(["apt-get", "download", *RSYNC_DEBS], cwd=debs,
                             capture_output=True, text=True, check=False)  # fmt: skip
    if fetched.returncode != 0:
        raise SystemExit(f"apt-get download {' '.join(RSYNC_DEBS)}: {fetched.stderr.strip()}")
    tar = subprocess.run(["tar", "-C", str(debs), "-c", "."], capture_output=True, check=True)
    script = "mkdir -p /tmp/debs && tar -C /tmp/debs -x && dpkg -i /tmp/debs/*.deb >/dev/null"
    return on_host(state, host, f"{script} && rsync --version | head -n 1", tar.stdout).strip()


def raw_copy(folder: Path, scratch: Path) -> float:
    target = scratch / "raw-copy"
    shutil.rmtree(target, ignore_errors=True)
    os.sync()
    started = time.monotonic()
    subprocess.run(["cp", "-r", str(folder), str(target)], check=True)
    seconds = time.monotonic() - started
    shutil.rmtree(target)
    return seconds


def ssh_pipe(state: SandboxState, host: str, folder: Path) -> float:
    """Seconds ``tar | ssh | tar`` takes to put the folder's bytes on the host: what this
    machine's SSH path carries, with no rsync."""
    os.sync()
    started = time.monotonic()
    tar = subprocess.Popen(["tar", "-C", str(folder), "-c", "."], stdout=subprocess.PIPE)
    on_host(state, host, f"mkdir -p {ON_HOST}/pipe && tar -C {ON_HOST}/pipe -x", stream=tar.stdout)
    tar.wait()
    seconds = time.monotonic() - started
    on_host(state, host, f"rm -rf {ON_HOST}")
    return seconds


def deploy(state: SandboxState, scratch: Path, job: dict) -> tuple[float, DeployRun]:
    """One run of the bench deploy; the seconds of its operation, and the run."""
    entries = [(h.name, {**host_data(state, h), "bench_push": job}) for h in state.hosts]
    inventory = scratch / "inventory.py"
    inventory.write_text(f"hosts = {entries!r}\n")
    os.sync()
    run = run_pyinfra(str(inventory), str(DEPLOY), timeout_s=3600)
    if run.returncode != 0:
        raise SystemExit(f"bench deploy {job['how']} failed:\n{run.output[-3000:]}")
    seconds = [s for name, s in run.operation_seconds() if name.startswith("bench: ")]
    return seconds[0] if seconds else 0.0, run


def line(what: str, size: int, seconds: float, raw: float, pipe: float) -> str:
    """One way's figures, and its ratios to the raw copy and to the ssh pipe."""
    shown = f"{what:28} {size / 1e6:8.1f} MB in {seconds:7.2f} s = {size / seconds / 1e6:7.1f} MB/s"
    if what.startswith("raw copy"):
        return shown
    label = what.split(",")[0].split(" (")[0]
    ratios = f"   {label} / raw copy = {raw / seconds:.3f}"
    return (
        shown
        + ratios
        + ("" if what.startswith("ssh pipe") else f", / ssh pipe = {pipe / seconds:.2f}")
    )


def one_round(state: SandboxState, folder: Path, scratch: Path) -> dict[str, tuple[float, str]]:
    """Each way of carrying the folder once: its seconds and a note."""
    host = state.hosts[0].name
    found = {"raw copy (cp -r, local)": (raw_copy(folder, scratch), "")}
    found["ssh pipe (tar|ssh|tar)"] = (ssh_pipe(state, host, folder), "")
    for streams in (4, 1):
        job = {"how": "push", "src": str(folder), "dest": f"{ON_HOST}/push", "streams": streams}
        seconds, run = deploy(state, scratch, job)
        logged = PUSH_LOG.search(run.output)
        rsync = float(logged[2]) if logged else float("nan")
        note = f"rsync {rsync:.2f} s, dry run + manifest check {seconds - rsync:.2f} s"
        found[f"push, {streams} stream(s)"] = (seconds, note)
        again, rerun = deploy(state, scratch, job)
        found[f"push again, {streams} stream(s)"] = (again, f"changed {rerun.totals.changed}")
        on_host(state, host, f"rm -rf {ON_HOST}")
    job = {"how": "files.sync", "src": str(folder), "dest": f"{ON_HOST}/sync"}
    found["files.sync"] = (deploy(state, scratch, job)[0], "")
    on_host(state, host, f"rm -rf {ON_HOST}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="checkpoint size in GB (10^9)")
    parser.add_argument("--shards", type=int, default=4, help="safetensors shards")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best of each counts")
    parser.add_argument("--keep", action="store_true", help="leave the mp sandbox up")
    args = parser.parse_args()
    quiet = lambda _: None  # noqa: E731
    down(LAYOUT, progress=quiet)  # whatever an interrupted run left
    try:
        state = up(1, layout=LAYOUT, progress=quiet)
        host = state.hosts[0].name
        with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
            scratch = Path(tmp)
            folder = checkpoint_bundle(scratch / "bundle", args.gb, args.shards)
            size = sum(p.stat().st_size for p in folder.iterdir())
            print(f"host {host}: {install_rsync(state, host, scratch)}")
            print(f"checkpoint: {len(list(folder.iterdir()))} files, {size / 1e9:.2f} GB; "
                  f"best of {args.repeat} rounds")  # fmt: skip
            rounds = [one_round(state, folder, scratch) for _ in range(args.repeat)]
            best = {what: min(r[what] for r in rounds) for what in rounds[0]}
            raw, pipe = best["raw copy (cp -r, local)"][0], best["ssh pipe (tar|ssh|tar)"][0]
            for what, (seconds, note) in best.items():
                if what.startswith("push again"):
                    changed = max(int(r[what][1].split()[-1]) for r in rounds)
                    print(f"{what:28} {seconds:7.2f} s, changed {changed} (expected 0)")
                else:
                    print(line(what, size, seconds, raw, pipe) + (f"   ({note})" if note else ""))
    finally:
        if not args.keep:
            down(LAYOUT, progress=quiet)


if __name__ == "__main__":
    main()
