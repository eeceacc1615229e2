"""The model snapshots of a bundle, listed through the Hub API (huggingface.co or a mirror such as
``metalserve mirror serve``) with each file's size and, for LFS files, sha256, then fetched from
its ``resolve`` URL and checked against them.

The listing is the route ``huggingface_hub``'s ``list_repo_tree`` reads
(``GET /api/models/<repo>/tree/<revision>?recursive=true``, paginated with a ``Link: rel="next"``
header); a bundle keeps the files a serving host reads and leaves out duplicate weight formats.

Example::

    resolved = resolve_weights(need, "https://huggingface.co", token=None)
"""

from __future__ import annotations

import fnmatch
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metalserve.bundle.fetch import Fetch, Resolved, Unreachable, get_json
from metalserve.offline import BundleInput

HUB = "https://huggingface.co"
LEFT_OUT = ("*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.onnx", "original/*", ".gitattributes")
"""Left out where a repo has safetensors: vLLM and SGLang load safetensors first (vLLM
``load_format`` "auto": "try safetensors, fall back to pytorch bin"), and llama.cpp's
``convert_hf_to_gguf.py`` reads safetensors before ``*.bin``; ``original/`` holds the
publisher's native checkpoint (e.g. Meta's consolidated .pth)."""
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


def kept(paths: list[str]) -> set[str]:
    """The repo files a serving host reads.

    >>> sorted(kept(["a.safetensors", "pytorch_model.bin", "config.json"]))
    ['a.safetensors', 'config.json']
    >>> sorted(kept(["pytorch_model.bin", "config.json"]))
    ['config.json', 'pytorch_model.bin']
    """
    if not any(p.endswith(".safetensors") for p in paths):
        return set(paths)
    return {p for p in paths if not any(fnmatch.fnmatch(p, pattern) for pattern in LEFT_OUT)}


def _listing(endpoint: str, repo: str, revision: str, headers: Mapping[str, str]) -> list[Any]:
    quoted = urllib.parse.quote(revision, safe="")
    url: str | None = f"{endpoint}/api/models/{repo}/tree/{quoted}?recursive=true"
    entries: list[Any] = []
    while url:
        page, response_headers = get_json(url, headers)
        entries += page if isinstance(page, list) else []
        following = _NEXT.search(response_headers.get("Link", ""))
        url = following.group(1) if following else None
    return entries


def tree_fetches(entries: list[Any], endpoint: str, need: BundleInput) -> list[Fetch]:
    """The listed files, as fetches into ``need.dest``."""
    repo = need.id.removeprefix("weights/")
    files = {e["path"]: e for e in entries if isinstance(e, dict) and e.get("type") == "file"}
    revision = urllib.parse.quote(need.items[0], safe="")
    return [
        Fetch(
            dest=f"{need.dest}/{path}",
            url=f"{endpoint}/{repo}/resolve/{revision}/{urllib.parse.quote(path)}",
            size=files[path].get("size"),
            sha256=(files[path].get("lfs") or {}).get("oid"),
        )
        for path in sorted(kept(list(files)))
    ]


def resolve_weights(
    need: BundleInput, endpoint: str, token: str | None, local: Path | None = None
) -> Resolved:
    """The snapshot's files from the Hub API, or from ``local`` (a folder on this machine)."""
    repo = need.id.removeprefix("weights/")
    if local is not None:
        return Resolved(need, str(local), tuple(local_fetches(local, need)))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    origin = f"{endpoint}/{repo}@{need.items[0]}"
    try:
        entries = _listing(endpoint.rstrip("/"), repo, need.items[0], headers)
    except Unreachable as error:
        return Resolved(need, origin, problem=f"unreachable here: size unknown ({error})")
    fetches = tree_fetches(entries, endpoint.rstrip("/"), need)
    if not fetches:
        return Resolved(need, origin, problem="the listing names no file")
    return Resolved(need, origin, tuple(fetches), extra={"headers": headers})


def local_fetches(folder: Path, need: BundleInput) -> list[Fetch]:
    """A checkpoint folder on the control host, as fetches (``file://``)."""
    return [
        Fetch(
            dest=f"{need.dest}/{p.relative_to(folder).as_posix()}",
            url=p.resolve().as_uri(),
            size=p.stat().st_size,
        )  # fmt: skip
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).parts[0].startswith(".")
    ]
