"""Model weights onto the host through ``huggingface_hub``: from the Hub, a site mirror
(``HF_ENDPOINT``), or a bundle pushed from the control host (``roles.push``: rsync over SSH,
checked against the bundle's manifest) — then verified and stamped.

The download overlaps the rest of the deploy. ``install`` (run early, right after the layout)
starts ``files/fetch_weights.py`` in a transient systemd unit (``systemd-run``, named by the plan;
the unit first builds the hub venv unless it is current) and returns; the driver, CUDA, engine and
llama.cpp steps run meanwhile; ``roles.weights.ready`` waits for the unit, with its progress lines,
before the GGUF conversion and the engine need the files. The fetcher downloads the files in worker
processes, one per CPU up to the plan's ``max_workers``, and checks each file's sha256 as soon as
it lands; stopping the unit, or killing the fetcher, takes the workers along. The token is a 0600
credential given as ``HF_TOKEN_PATH`` (a path in the unit's environment), never an argument. With
``model.shared_dir`` only the rank-0 node downloads; the others wait for its stamp in the shared
folder.

The stamp (written last by the script) names the repo, revision and the file patterns, and records
every file's size; a re-run does nothing only when the stamp names these weights and a stat of the
files finds every one at its stamped size (``roles.sizes``): a shard deleted or cut short
afterwards is fetched again.

Example::

    from roles import weights
    weights.install(plan)
"""

from __future__ import annotations

import json
import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server

from metalserve.plan import HostPlan, WeightsPlan
from metalserve.sources import SourceKind
from roles.base import say_once
from roles.push import push
from roles.sizes import FileSizes, size_drift
from roles.venv import build_unless_current, push_wheelhouse

STAMP = ".metalserve-weights.json"
PROGRESS = ".cache/metalserve-progress.json"
"""The fetcher's last progress line (``files/fetch_weights.py`` writes it)."""
SCRIPT = Path(__file__).parent / "files" / "fetch_weights.py"


def read_stamp(weights: WeightsPlan) -> dict | None:
    lines = host.get_fact(FileContents, path=f"{weights.local_dir}/{STAMP}")
    try:
        stamp = json.loads("\n".join(lines or []))
    except ValueError:
        return None
    return stamp if isinstance(stamp, dict) else None


def stamp_names(weights: WeightsPlan, stamp: object) -> bool:
    """The stamp is of these weights: repo, revision and the files chosen (a bundle's stamp
    names no patterns: it holds the whole folder)."""
    if not isinstance(stamp, dict):
        return False
    if (stamp.get("repo"), stamp.get("revision")) != (weights.repo_id, weights.revision):
        return False
    if weights.source.kind is SourceKind.BUNDLE:
        return True
    chosen = {"allow": list(weights.allow_patterns), "ignore": list(weights.ignore_patterns)}
    return {k: stamp.get(k) for k in chosen} == chosen


def is_fetched(weights: WeightsPlan) -> bool:
    """The stamp names these weights, and every file it lists is on the host at its size."""
    stamp = read_stamp(weights)
    if not stamp_names(weights, stamp):
        return False
    assert stamp is not None
    sizes = stamp.get("sizes")
    if not isinstance(sizes, dict) or not sizes:
        return False  # a stamp without sizes cannot vouch for the files: fetch (and stamp) again
    drift = size_drift(sizes, host.get_fact(FileSizes, path=weights.local_dir))
    if drift:
        say_once(
            f"weights: {len(drift)} file(s) differ from the stamp ({', '.join(drift[:3])}): "
            "fetching again"
        )
    return not drift


def bundle_sizes(folder: Path) -> dict[str, int]:
    """Every file of a checkpoint folder on the control host and its size, as the stamp keeps."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != ".cache" and p.name != STAMP
    }


def fetch_environment(weights: WeightsPlan) -> dict[str, str]:
    """The download's environment: no telemetry, no progress bars in the journal (the script
    prints its own lines), hf-xet's high-performance mode (huggingface_hub 2.4 reads no
    ``HF_HUB_ENABLE_HF_TRANSFER`` any more; hf-xet reads ``HF_XET_HIGH_PERFORMANCE``), the mirror,
    and the token's file path."""
    env = {
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_XET_HIGH_PERFORMANCE": "1",
    }
    if weights.source.kind is SourceKind.MIRROR and weights.source.endpoint:
        env["HF_ENDPOINT"] = weights.source.endpoint
    if weights.token_file:
        env["HF_TOKEN_PATH"] = weights.token_file
    return env


@deploy("Weights: start")
def install(plan: HostPlan) -> None:
    weights = plan.weights
    if weights is None or is_fetched(weights):
        return
    if weights.source.kind is SourceKind.BUNDLE:
        bundle = Path(str(weights.source.path)).expanduser()
        push(name=f"Push the {weights.repo_id} checkpoint", src=str(bundle), dest=weights.local_dir)
        stamp = {
            "repo": weights.repo_id,
            "revision": weights.revision,
            "commit": "bundle",
            "sizes": bundle_sizes(bundle),
        }
        files.put(
            name="Stamp the pushed checkpoint",
            src=StringIO(json.dumps(stamp, sort_keys=True) + "\n"),
            dest=f"{weights.local_dir}/{STAMP}",
        )
        return
    if not weights.fetches:
        return  # the rank-0 node downloads into the shared folder; roles.weights.ready waits
    push_wheelhouse(weights.python)  # the unit builds the hub venv from it
    files.put(name="Weights fetcher", src=str(SCRIPT), dest=script_path(plan), mode="755")
    server.shell(
        name=f"Start fetching {weights.repo_id}@{weights.revision} ({weights.unit})",
        commands=[start_command(weights, script_path(plan))],
    )


def script_path(plan: HostPlan) -> str:
    return f"{plan.layout.bin}/fetch_weights.py"


def fetch_argv(weights: WeightsPlan, script: str) -> list[str]:
    """The fetcher, in the hub venv."""
    return [
        f"{weights.hub_venv}/bin/python",
        script,
        *("--repo", weights.repo_id, "--revision", weights.revision),
        *("--local-dir", weights.local_dir),
        *(arg for pattern in weights.allow_patterns for arg in ("--allow", pattern)),
        *(arg for pattern in weights.ignore_patterns for arg in ("--ignore", pattern)),
        *("--max-workers", str(weights.max_workers)),
        *("--progress-every", str(weights.progress_every_s)),
    ]


def fetch_command(weights: WeightsPlan, script: str) -> str:
    """The fetcher as one shell line, every value one shell word."""
    return shlex.join(fetch_argv(weights, script))


def unit_argv(weights: WeightsPlan, script: str) -> list[str]:
    """What the transient unit runs, under a lock (flock: a fetch orphaned by a killed deploy
    may still run): the hub venv built if it is not current, then the fetcher. The venv is built
    in the unit, not by a deploy operation, so that its 10-20 s of pip overlap the llama.cpp and
    driver steps instead of delaying the download's start (bench/stages.py)."""
    venv = build_unless_current(weights.hub_venv, weights.hub_requirements, weights.python)
    return [
        "flock",
        f"{weights.local_dir}.lock",
        "sh",
        "-c",
        f"{venv} && exec {fetch_command(weights, script)}",
    ]


def start_command(weights: WeightsPlan, script: str) -> str:
    """Start the download as a transient unit, unless it runs already (a deploy killed and run
    again finds it); a unit left failed by an earlier run is reset first. The unit's environment
    holds the token's path, never the token."""
    unit = shlex.quote(f"{weights.unit}.service")
    run = [
        "systemd-run",
        f"--unit={weights.unit}",
        f"--description=metalserve weights {weights.repo_id}@{weights.revision}",
        "--property=Type=exec",  # systemd-run fails at once when the fetcher cannot start
        "--property=UMask=0022",  # the engine's own user reads the files
        "--quiet",
        *(f"--setenv={k}={v}" for k, v in sorted(fetch_environment(weights).items())),
        *unit_argv(weights, script),
    ]
    progress = shlex.quote(f"{weights.local_dir}/{PROGRESS}")
    return (
        f"systemctl is-active --quiet {unit} || {{ systemctl reset-failed {unit} 2>/dev/null; "
        f"rm -f {progress}; {shlex.join(run)}; }}"
    )
