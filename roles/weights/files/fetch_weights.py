#!/usr/bin/env python3
"""Bring a Hugging Face repo onto this host, check it, and stamp it — run by the weights role.

Runs inside the host's hub venv (``huggingface_hub`` from the pushed wheelhouse). Everything it
needs comes from the environment or flags, never a secret on the command line:

* ``HF_ENDPOINT``: the Hub or a mirror (``metalserve mirror serve``);
* ``HF_TOKEN_PATH``: a 0600 file holding the token, read by ``huggingface_hub`` itself.

Steps: list the repo at the revision → remove any file whose size is not the Hub's (cut short by a
full disk, damaged afterwards) and the stamp → refuse if the free space is short →
``snapshot_download`` into ``--local-dir`` (finished files are skipped on a re-run; a killed file
starts again) → verify every file against the Hub's checksums (sha256 for LFS, git blob sha1
otherwise) → write ``.metalserve-weights.json`` last, atomically, with every file's size. The stamp
is what tells the role it is done; the sizes let the role notice, with a stat, a file deleted or
truncated afterwards. A full disk is one line naming how much to free where; the partial downloads
are removed, and no stamp is written.

Example::

    HF_ENDPOINT=http://10.77.1.1:8090 /opt/metalserve/hub-venv/bin/python fetch_weights.py \\
        --repo metalserve/tiny-moe --revision main --local-dir /var/lib/metalserve/models/tiny-moe
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

STAMP = ".metalserve-weights.json"
EXIT_OPERATOR_ERROR = 2
PARTIAL_DOWNLOADS = ".cache/huggingface/download"
"""Where ``snapshot_download(local_dir=...)`` keeps its ``.incomplete`` files (huggingface_hub
``_local_folder.get_local_download_paths``)."""
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
        try:
            json.dump(stamp, tmp, indent=2, sort_keys=True)
            tmp.write("\n")
            tmp.flush()
        except OSError:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, local_dir / STAMP)


def remove_partials(local_dir: Path, downloads: bool = True) -> list[Path]:
    """Delete what a cut-short run leaves behind: this script's unfinished stamp files and, with
    ``downloads``, huggingface_hub's ``.incomplete`` files (kept otherwise: a re-run resumes
    them). Returns what it removed."""
    leftovers = list(local_dir.glob(f"{STAMP}.*"))
    if downloads:
        leftovers += (local_dir / PARTIAL_DOWNLOADS).glob("**/*.incomplete")
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def wrong_sized(local_dir: Path, sizes: dict[str, int]) -> list[str]:
    """Files of the repo that are on disk with another size than the Hub lists (a stat each)."""
    wrong = []
    for name, size in sorted(sizes.items()):
        path = local_dir / name
        if path.is_file() and path.stat().st_size != size:
            wrong.append(name)
    return wrong


def bytes_to_fetch(local_dir: Path, sizes: dict[str, int]) -> int:
    present = sum(s for n, s in sizes.items() if (local_dir / n).is_file()
                  and (local_dir / n).stat().st_size == s)  # fmt: skip
    return sum(sizes.values()) - present


def gigabytes(size: float, up: bool = True) -> str:
    """Decimal GB to a tenth: a need rounded up, what is there rounded down."""
    tenths = max(size, 0) / 1e8
    return f"{(math.ceil(tenths) if up else math.floor(tenths)) / 10:.1f}"


def _intact(local_dir: Path, stamp: dict[str, object]) -> bool:
    sizes = stamp.get("sizes")
    if not isinstance(sizes, dict) or not sizes:
        return False  # a stamp from before sizes were kept: it cannot vouch for the files
    return all((local_dir / n).is_file() for n in sizes) and not wrong_sized(local_dir, sizes)


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
    if local_dir.is_dir():
        remove_partials(local_dir, downloads=False)  # a killed run's unfinished stamp
    if (stamp and stamp.get("repo") == repo and stamp.get("commit") == commit
            and _intact(local_dir, stamp)):  # fmt: skip
        return {**stamp, "changed": False}

    files = [f for f in api.list_repo_tree(repo, revision=commit, recursive=True)
             if isinstance(f, RepoFile)]  # fmt: skip
    sizes = {f.path: f.size for f in files}
    local_dir.mkdir(parents=True, exist_ok=True)
    (local_dir / STAMP).unlink(missing_ok=True)  # no stamp may outlive the files it describes
    for name in wrong_sized(local_dir, sizes):
        (local_dir / name).unlink()  # cut short or damaged: fetched again whole
    needed = int(bytes_to_fetch(local_dir, sizes) * headroom)
    free = shutil.disk_usage(local_dir).free
    if free < needed:
        raise FetchError(f"{local_dir}: expected {needed} free bytes for {repo}@{commit[:12]} "
                         f"({len(files)} files), found {free} — fix: free space or choose "
                         "another models directory")  # fmt: skip
    try:
        snapshot_download(repo, revision=commit, local_dir=local_dir)
        check = api.verify_repo_checksums(repo, revision=commit, local_dir=local_dir)
        if check.mismatches or check.missing_paths:
            bad = [m["path"] for m in check.mismatches] + list(check.missing_paths)
            raise FetchError(f"{repo}@{commit[:12]}: expected every file to match the Hub's "
                             f"checksum, found {len(bad)} that do not ({', '.join(sorted(bad)[:3])})"
                             " — fix: delete them and run again; if it repeats, the source is "
                             "corrupt")  # fmt: skip
        stamp = {"repo": repo, "revision": revision, "commit": commit, "files": len(files),
                 "bytes": sum(sizes.values()), "verified": check.checked_count, "sizes": sizes}  # fmt: skip
        _write_stamp(local_dir, stamp)
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        remove_partials(local_dir)
        still = int(bytes_to_fetch(local_dir, sizes) * headroom)
        free = shutil.disk_usage(local_dir).free
        raise FetchError(f"{local_dir}: expected room for {repo}@{commit[:12]}, found the disk "
                         f"full ({os.strerror(error.errno)}) — fix: free space at {local_dir} "
                         f"until {gigabytes(still)} GB are free ({gigabytes(free, up=False)} GB now) or "
                         "choose another models directory, then run again (partial files "
                         "removed)") from None  # fmt: skip
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
        fetched = fetch(args.repo, args.revision, args.local_dir, args.headroom)
        summary = json.dumps({k: v for k, v in fetched.items() if k != "sizes"})
    except FetchError as error:
        parser.exit(EXIT_OPERATOR_ERROR, f"error: {error}\n")
    except Exception as error:
        if type(error).__module__.startswith(("huggingface_hub", "httpx")):
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
            found = (str(error).strip().splitlines() or [type(error).__name__])[0]
            parser.exit(EXIT_OPERATOR_ERROR,
                        f"error: {args.repo}@{args.revision}: expected {endpoint} to serve it, "
                        f"found {found} — fix: check the repo id, revision, token file and "
                        "HF_ENDPOINT\n")  # fmt: skip
        if not isinstance(error, OSError):
            raise
        where = error.filename or args.local_dir
        parser.exit(EXIT_OPERATOR_ERROR,
                    f"error: {where}: expected to write {args.repo} there, found "
                    f"{error.strerror or error} — fix: check the directory's owner, mode and "
                    "disk, then run again\n")  # fmt: skip
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
