"""What the download benches share: synthetic weight files, a raw copy of a mirror's files with
curl (the yardstick), and the line that compares the two."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import quote

import numpy as np
from safetensors.numpy import save_file

RAW_COPY_MARK = "raw-copy"
SHA256_LINE = re.compile(r"[0-9a-f]{64} \*")
"""A line of ``openssl dgst -sha256 -r``: the digest, a space, ``*`` and the file."""


def synthetic_shards(folder: Path, megabytes: int, count: int, prefix: str) -> list[str]:
    """``count`` safetensors files of random bytes (incompressible), ``megabytes`` MB (10^6 bytes)
    in all, named ``PREFIX-0000i-of-0000n.safetensors``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    each = megabytes * 10**6 // count
    names = []
    for i in range(1, count + 1):
        name = f"{prefix}-{i:05d}-of-{count:05d}.safetensors"
        save_file({"bytes": np.frombuffer(rng.bytes(each), dtype=np.uint8)}, str(folder / name))
        names.append(name)
    return names


def raw_copy_script(
    base_url: str,
    files: list[str],
    token_file: str | None = None,
    sha256: bool = False,
    scratch_in: str | None = None,
) -> str:
    """A bash script that fetches every file of ``base_url`` (``<endpoint>/<repo>/resolve/<commit>``)
    with curl, all at once, into a scratch folder it removes; it prints ``raw-copy BYTES SECONDS``.
    The token (if any) goes to curl on stdin (``-H @-``), never in an argument. With ``sha256``,
    each file is hashed as soon as its curl ends, while the others go on, and its digest printed:
    the least a download that verifies what it got can cost. ``scratch_in``: the folder the
    scratch folder is made in (the same disk the download it is compared with writes to; a
    host's ``/tmp`` may be a small tmpfs), else ``$TMPDIR`` or ``/tmp``. ``openssl dgst``: OpenSSL's sha256,
    as Python's ``hashlib`` (the fetcher's) uses; coreutils' ``sha256sum`` 9.1 has its own, about
    a quarter as fast where the CPU has SHA extensions."""
    header = (
        f"printf 'Authorization: Bearer %s\\n' \"$(cat {shlex.quote(token_file)})\""
        if token_file
        else "true"
    )

    def fetch(i: int, name: str) -> str:
        url = shlex.quote(f"{base_url}/{quote(name)}")
        hashed = f' && openssl dgst -sha256 -r "$dir"/{i}' if sha256 else ""
        return f'{{ {header} | curl -fsS -H @- -o "$dir"/{i} {url}{hashed}; }} &'

    fetches = "\n".join(fetch(i, name) for i, name in enumerate(files))
    return (
        f"set -e\ndir=$(mktemp -d{' -p ' + shlex.quote(scratch_in) if scratch_in else ''})\n"
        "start=$(date +%s.%N)\n"
        f"{fetches}\n"
        "wait\nend=$(date +%s.%N)\n"
        "size=$(find \"$dir\" -type f -printf '%s\\n' | awk '{ s += $1 } END { printf \"%.0f\", s }')\n"
        f'echo {RAW_COPY_MARK} "$size" "$(awk "BEGIN {{ print $end - $start }}")"\n'
        'rm -rf "$dir"\n'
    )


def raw_copy_result(output: str) -> tuple[int, float]:
    """(bytes, seconds) from what ``raw_copy_script`` printed."""
    for line in output.splitlines():
        if line.startswith(RAW_COPY_MARK + " "):
            _, size, seconds = line.split()
            return int(size), float(seconds)
    raise SystemExit(f"the raw copy printed no result:\n{output[-2000:]}")


def sha256_lines(output: str) -> list[str]:
    """The digests in what ``raw_copy_script(sha256=True)`` printed."""
    return sorted(line.split()[0] for line in output.splitlines() if SHA256_LINE.match(line))


def compare(fetched: int, fetch_s: float, copied: int, copy_s: float) -> list[str]:
    """The lines that compare the project's download with the raw copy of the same bytes."""
    fetch_rate, copy_rate = fetched / fetch_s / 1e6, copied / copy_s / 1e6
    return [
        f"fetch_weights.py: {fetched / 1e6:9.1f} MB in {fetch_s:6.2f} s = {fetch_rate:7.1f} MB/s",
        f"raw copy (curl):  {copied / 1e6:9.1f} MB in {copy_s:6.2f} s = {copy_rate:7.1f} MB/s",
        f"download / raw copy: {fetch_rate / copy_rate:.2f} (goal >= 0.8)",
    ]


def compare_floor(fetched: int, fetch_s: float, copied: int, floor_s: float) -> list[str]:
    """The lines that compare the project's download with a raw copy that also hashes every file
    (``raw_copy_script(sha256=True)``): what any download that verifies must pay at least."""
    fetch_rate, floor_rate = fetched / fetch_s / 1e6, copied / floor_s / 1e6
    return [
        f"raw copy + sha256: {copied / 1e6:8.1f} MB in {floor_s:6.2f} s = {floor_rate:7.1f} MB/s",
        f"download / (raw copy + sha256): {fetch_rate / floor_rate:.2f} "
        "(against the floor any verifying download pays)",
    ]
