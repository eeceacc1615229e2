"""Files fetched into a bundle: where from, how big the source says they are, their sha256 — and
the one bounded HTTP client that reads indexes and downloads them.

Every network call has a timeout: a source that cannot be reached is one line ("unreachable
here"), never a hang. A download goes to a ``.partial`` name, is checked against the size and
sha256 its source states, and only then takes its name.

Example::

    item = Fetch(dest="wheels/x.whl", url="https://files.pythonhosted.org/...", size=857021,
                 sha256="...")
    download(item, Path("/srv/bundle"))
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalserve.artefacts.cache import sha256_file
from metalserve.errors import MetalserveError
from metalserve.offline import BundleInput

TIMEOUT_S = 20.0
"""Per connection and per read: an unreachable source answers within this, or is named."""


class BundleError(MetalserveError):
    """A bundle could not be built or read: one line naming what, where, and the fix."""


class Unreachable(BundleError):
    """A source did not answer within the timeout, or refused."""


@dataclass(frozen=True)
class Fetch:
    """One file to put at ``dest`` (relative to the bundle root), from ``url``."""

    dest: str
    url: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Resolved:
    """An input with the files it takes, or why they cannot be listed from here."""

    need: BundleInput
    origin: str
    fetches: tuple[Fetch, ...] = ()
    problem: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def known_bytes(self) -> int:
        return sum(f.size for f in self.fetches if f.size is not None)

    @property
    def unknown_sizes(self) -> int:
        return sum(1 for f in self.fetches if f.size is None)


def reason(error: BaseException) -> str:
    """Why a request failed, in a few words (no traceback)."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}"[:120]


def open_url(url: str, headers: Mapping[str, str] | None = None, timeout: float = TIMEOUT_S) -> Any:
    """``urllib`` with a timeout; an unreachable or refusing source is :class:`Unreachable`."""
    request = urllib.request.Request(url)
    for name, value in (headers or {}).items():
        if name.lower() == "authorization":  # never follows a redirect to another host (a CDN)
            request.add_unredirected_header(name, value)
        else:
            request.add_header(name, value)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s)/file only
    except (OSError, ValueError) as error:
        raise Unreachable(f"{url}: {reason(error)}") from None


def get_json(url: str, headers: Mapping[str, str] | None = None) -> tuple[Any, Mapping[str, str]]:
    """A JSON document and the response headers."""
    with open_url(url, headers) as response:
        try:
            return json.loads(response.read()), dict(response.headers)
        except (OSError, ValueError) as error:
            raise Unreachable(f"{url}: {reason(error)}") from None


def _intact(path: Path, item: Fetch, known: Mapping[str, str]) -> bool:
    """Already there: its size as stated, and its sha256 as stated (or as the manifest recorded,
    when the size matches, without hashing again)."""
    if not path.is_file() or (item.size is not None and path.stat().st_size != item.size):
        return False
    recorded = known.get(item.dest)
    if recorded is not None and (item.sha256 is None or recorded == item.sha256):
        return True
    return item.sha256 is not None and sha256_file(path) == item.sha256


def download(
    item: Fetch,
    root: Path,
    known: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """Put ``item`` under ``root`` unless it is there intact; returns whether it was fetched."""
    path = root / item.dest
    if _intact(path, item, known or {}):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open_url(item.url, headers) as response, partial.open("wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
    except (OSError, Unreachable) as error:
        partial.unlink(missing_ok=True)
        raise BundleError(
            f"{item.dest}: expected to download {item.url}, found {reason(error)} — fix: check "
            "that the source is reachable from this machine, then run the build again"
        ) from None
    _check(partial, item)
    os.replace(partial, path)
    return True


def _check(partial: Path, item: Fetch) -> None:
    size = partial.stat().st_size
    digest = sha256_file(partial) if item.sha256 else None
    if (item.size is not None and size != item.size) or digest not in (None, item.sha256):
        partial.unlink()
        raise BundleError(
            f"{item.dest}: expected {item.size} bytes with sha256 {item.sha256} from {item.url}, "
            f"found {size} bytes with sha256 {digest} — fix: run the build again; if it repeats, "
            "the source serves another file"
        )


def human(size: float) -> str:
    """Decimal units, as the sources state sizes: ``1.2 GB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


Progress = Callable[[str], None]
