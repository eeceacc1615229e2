#!/usr/bin/env python3
"""Bring a Hugging Face repo onto this host, check it, and stamp it — run by the weights role.

Runs inside the host's hub venv (``huggingface_hub`` from the pushed wheelhouse). Everything it
needs comes from the environment or flags, never a secret on the command line:

* ``HF_ENDPOINT``: the Hub or a mirror (``metalserve mirror serve``);
* ``HF_TOKEN_PATH``: a 0600 file holding the token, read by ``huggingface_hub`` itself.

Steps: list the repo at the revision → refuse if the free space is short → ``snapshot_download``
into ``--local-dir`` (finished files are skipped on a re-run; a killed file starts again) →
verify every file against the Hub's checksums (sha256 for LFS, git blob sha1 otherwise) → write
``.metalserve-weights.json`` last, atomically. The stamp is what tells the role it is done.

Example::

    HF_ENDPOINT=http://10.77.1.1:8090 /opt/metalserve/hub-venv/bin/python fetch_weights.py \\
        --repo metalserve/tiny-moe --revision main --local-dir /var/lib/metalserve/models/tiny-moe
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

STAMP = ".metalserve-weights.json"
EXIT_OPERATOR_ERROR = 2


class FetchError(Exception):
    """One line for the operator: what was expected, what was found, what to do."""


def _check_token_file() -> None:
    token_path = os.environ.get("HF_TOKEN_PATH")
    if not token_path:
        return
    path = Path(token_path)
    if not path.is_file():
        raise FetchError(
            f"HF_TOKEN_PATH: expected a token file, found nothing at {path} — "
            "fix: write the token there with mode 0600, or unset HF_TOKEN_PATH"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise FetchError(f"{path}: expected mode 0600, found {mode:04o} — fix: chmod 600 {path}")


def read_stamp(local_dir: Path) -> dict[str, object] | None:
    try:
        return json.loads((local_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _write_stamp(local_dir: Path, stamp: dict[str, object]) -> None:
    with tempfile.NamedTemporaryFile("w", dir=local_dir, prefix=f"{STAMP}.", delete=False) as tmp:
        json.dump(stamp, tmp, indent=2, sort_keys=True)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, local_dir / STAMP)


def fetch(repo: str, revision: str, local_dir: Path, headroom: float) -> dict[str, object]:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.hf_api import RepoFile

    _check_token_file()
    api = HfApi()
    commit = api.repo_info(repo, revision=revision).sha
    if commit is None:
        raise FetchError(f"{repo}@{revision}: expected the endpoint to name a commit, found none — "
                         "fix: point HF_ENDPOINT at the Hub or a metalserve mirror")  # fmt: skip
    stamp = read_stamp(local_dir)
    if stamp and stamp.get("repo") == repo and stamp.get("commit") == commit:
        return {**stamp, "changed": False}

    files = [f for f in api.list_repo_tree(repo, revision=commit, recursive=True)
             if isinstance(f, RepoFile)]  # fmt: skip
    total = sum(f.size for f in files)
    local_dir.mkdir(parents=True, exist_ok=True)
    present = sum(
        (local_dir / f.path).stat().st_size for f in files if (local_dir / f.path).is_file()
    )
    needed = int((total - present) * headroom)
    free = shutil.disk_usage(local_dir).free
    if free < needed:
        raise FetchError(f"{local_dir}: expected {needed} free bytes for {repo}@{commit[:12]} "
                         f"({len(files)} files), found {free} — fix: free space or choose "
                         "another models directory")  # fmt: skip

    snapshot_download(repo, revision=commit, local_dir=local_dir)
    check = api.verify_repo_checksums(repo, revision=commit, local_dir=local_dir)
    if check.mismatches or check.missing_paths:
        bad = [m["path"] for m in check.mismatches] + list(check.missing_paths)
        raise FetchError(f"{repo}@{commit[:12]}: expected every file to match the Hub's checksum, "
                         f"found {len(bad)} that do not ({', '.join(sorted(bad)[:3])}) — fix: "
                         "delete them and run again; if it repeats, the source is corrupt")  # fmt: skip
    stamp = {"repo": repo, "revision": revision, "commit": commit, "files": len(files),
             "bytes": total, "verified": check.checked_count}  # fmt: skip
    _write_stamp(local_dir, stamp)
    return {**stamp, "changed": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="ORG/NAME on the Hub or the mirror")
    parser.add_argument("--revision", default="main")
    parser.add_argument("--local-dir", required=True, type=Path)
    parser.add_argument("--headroom", type=float, default=1.05,
                        help="free space asked for, as a multiple of the bytes still to fetch")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        summary = json.dumps(fetch(args.repo, args.revision, args.local_dir, args.headroom))
    except FetchError as error:
        parser.exit(EXIT_OPERATOR_ERROR, f"error: {error}\n")
    except Exception as error:
        if not type(error).__module__.startswith(("huggingface_hub", "httpx")):
            raise
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        found = (str(error).strip().splitlines() or [type(error).__name__])[0]
        parser.exit(EXIT_OPERATOR_ERROR,
                    f"error: {args.repo}@{args.revision}: expected {endpoint} to serve it, found "
                    f"{found} — fix: check the repo id, revision, token file and HF_ENDPOINT\n")  # fmt: skip
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
