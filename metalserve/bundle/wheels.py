"""The wheels of a bundle: each wheel set resolved by pip for a host's Python and platform (not
this machine's), then fetched into one wheelhouse that serves every host (pip picks the wheels
whose tags fit the interpreter it runs in).

pip resolves without installing or downloading the wheels (``install --dry-run --report``, with
``--python-version``, ``--platform`` and ``--only-binary=:all:``; pip reads the metadata files
PEP 658 serves beside each wheel); the size of each wheel is what its index states (PEP 700
``size`` in the JSON simple API, PEP 691).

Example::

    resolved = resolve_wheels(need)       # the wheels of vllm==0.33.0 for cp312 manylinux_2_39
    [f.url for f in resolved.fetches]
"""

from __future__ import annotations

import json
import sys
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from metalserve.bundle.fetch import Fetch, Resolved, Unreachable, get_json
from metalserve.offline import BundleInput
from metalserve.sandbox.system import run

PYPI_SIMPLE = "https://pypi.org/simple"
PIP_TIMEOUT_S = 900
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
"""PEP 691: the JSON form of the simple repository API; PEP 700 adds each file's ``size``."""


def normalized(name: str) -> str:
    """PEP 503 name normalization, as the simple index spells its pages."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-"))


def _report(need: BundleInput) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="metalserve-pip-") as scratch:
        report = Path(scratch) / "report.json"
        resolved = run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "--disable-pip-version-check", "--timeout", "20", "--retries", "0",
             "--only-binary=:all:", "--python-version", str(need.python),
             *(f"--platform={tag}" for tag in need.platforms), "--target", f"{scratch}/target",
             "--report", str(report), *need.items],
            what=f"resolve {need.id}",
            fix="see the line above",
            timeout=PIP_TIMEOUT_S,
            check=False,
        )  # fmt: skip
        if resolved.returncode != 0 or not report.is_file():
            last = (resolved.stderr.strip().splitlines() or ["no output"])[-1]
            raise Unreachable(
                f"pip cannot resolve {' '.join(need.items)} for Python {need.python}: {last}"
            )
        return dict(json.loads(report.read_text()))


def report_fetches(report: Mapping[str, Any]) -> list[Fetch]:
    """Each wheel of a pip installation report: its URL and the sha256 pip read from the index."""
    fetches = []
    for item in report.get("install", []):
        info = item["download_info"]
        url = info["url"]
        hashes = info.get("archive_info", {}).get("hashes", {})
        name = urllib.parse.unquote(url.rsplit("/", 1)[-1].split("#", 1)[0])
        fetches.append(Fetch(dest=f"wheels/{name}", url=url, sha256=hashes.get("sha256")))
    return fetches


def index_sizes(page: Mapping[str, Any]) -> dict[str, int]:
    """File name → size from a PEP 691 JSON project page (files without ``size`` left out)."""
    return {
        f["filename"]: int(f["size"])
        for f in page.get("files", [])
        if isinstance(f.get("size"), int)
    }


def _project(fetch: Fetch) -> str:
    return normalized(fetch.dest.rsplit("/", 1)[-1].split("-", 1)[0])


def sized(fetches: Iterable[Fetch], index: str = PYPI_SIMPLE) -> list[Fetch]:
    """``fetches`` with the size their index (or the local file) states; None where it cannot."""
    fetches = list(fetches)
    projects = sorted({_project(f) for f in fetches if not f.url.startswith("file:")})

    def page(project: str) -> dict[str, int]:
        try:
            document, _ = get_json(f"{index}/{project}/", {"Accept": SIMPLE_JSON})
        except Unreachable:
            return {}
        return index_sizes(document)

    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes: dict[str, int] = {}
        for found in pool.map(page, projects):
            sizes.update(found)
    result = []
    for f in fetches:
        name = f.dest.rsplit("/", 1)[-1]
        local = (
            Path(urllib.parse.unquote(urllib.parse.urlparse(f.url).path))
            if f.url.startswith("file:")
            else None
        )  # a local version's "+" is quoted in pip's file URL: torch-2.13.0%2Bcpu-…whl
        size = local.stat().st_size if local and local.is_file() else sizes.get(name)
        result.append(Fetch(dest=f.dest, url=f.url, size=size, sha256=f.sha256))
    return result


def resolve_wheels(need: BundleInput, index: str = PYPI_SIMPLE) -> Resolved:
    origin = f"{index} (Python {need.python}, {need.platforms[0] if need.platforms else '?'})"
    try:
        fetches = sized(report_fetches(_report(need)), index)
    except Unreachable as error:
        return Resolved(need, origin, problem=f"size unknown: {error}")
    return Resolved(need, origin, tuple(fetches))
