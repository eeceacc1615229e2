"""Model weights onto the host through ``huggingface_hub``: from the Hub, a site mirror
(``HF_ENDPOINT``), or a bundle pushed from the control host — then verified and stamped.

``files/fetch_weights.py`` runs in a small hub venv on the host; the token is a 0600 credential
given as ``HF_TOKEN_PATH``, never an argument. The stamp (written last by the script) records
every file's size; a re-run does nothing only when the stamp names this repo and revision and a
stat of the files finds every one at its stamped size (``roles.sizes``): a shard deleted or cut
short afterwards is fetched again.

Example::

    from roles import weights
    weights.install(plan)
"""

from __future__ import annotations

import json
import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server

from metalserve.plan import HostPlan, WeightsPlan
from metalserve.sources import SourceKind
from roles.sizes import FileSizes, size_drift
from roles.venv import ensure_venv

STAMP = ".metalserve-weights.json"
SCRIPT = Path(__file__).parent / "files" / "fetch_weights.py"


def read_stamp(weights: WeightsPlan) -> dict | None:
    lines = host.get_fact(FileContents, path=f"{weights.local_dir}/{STAMP}")
    try:
        stamp = json.loads("\n".join(lines or []))
    except ValueError:
        return None
    return stamp if isinstance(stamp, dict) else None


def is_fetched(weights: WeightsPlan) -> bool:
    """The stamp names these weights, and every file it lists is on the host at its size."""
    stamp = read_stamp(weights)
    if not stamp or (stamp.get("repo"), stamp.get("revision")) != (
        weights.repo_id,
        weights.revision,
    ):
        return False
    sizes = stamp.get("sizes")
    if not isinstance(sizes, dict) or not sizes:
        return False  # a stamp without sizes cannot vouch for the files: fetch (and stamp) again
    drift = size_drift(sizes, host.get_fact(FileSizes, path=weights.local_dir))
    if drift:
        host.log(
            f"weights: {len(drift)} file(s) differ from the stamp ({', '.join(drift[:3])}): "
            "fetching again",
            log_func=logger.warning,
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
    env = {"HF_HUB_DISABLE_TELEMETRY": "1"}
    if weights.source.kind is SourceKind.MIRROR and weights.source.endpoint:
        env["HF_ENDPOINT"] = weights.source.endpoint
    if weights.token_file:
        env["HF_TOKEN_PATH"] = weights.token_file
    return env


@deploy("Weights: install")
def install(plan: HostPlan) -> None:
    weights = plan.weights
    if weights is None or is_fetched(weights):
        return
    if weights.source.kind is SourceKind.BUNDLE:
        bundle = Path(str(weights.source.path)).expanduser()
        files.sync(
            name=f"Push the {weights.repo_id} checkpoint", src=str(bundle), dest=weights.local_dir
        )
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
    ensure_venv(weights.hub_venv, weights.hub_requirements, weights.python)
    script = f"{plan.layout.bin}/fetch_weights.py"
    files.put(name="Weights fetcher", src=str(SCRIPT), dest=script, mode="755")
    server.shell(
        name=f"Fetch and verify {weights.repo_id}@{weights.revision}",
        commands=[fetch_command(weights, script)],
        _env=fetch_environment(weights),
    )


def fetch_command(weights: WeightsPlan, script: str) -> str:
    """The fetcher under a lock, every value one shell word (flock: a fetch orphaned by a killed
    deploy may still run)."""
    return shlex.join(
        [
            "flock",
            f"{weights.local_dir}.lock",
            f"{weights.hub_venv}/bin/python",
            script,
            "--repo",
            weights.repo_id,
            "--revision",
            weights.revision,
            "--local-dir",
            weights.local_dir,
        ]
    )
