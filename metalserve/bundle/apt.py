"""The Debian packages of a bundle: resolved for a host release on this machine, with apt itself,
then fetched, indexed and signed as one flat repository per release and architecture.

apt runs against a configuration of its own (``-o Dir::…``: its sources, its lists, an empty dpkg
status, the target's architecture, the plan's own pins in ``preferences.d``), so nothing of this
machine's apt is read or changed. With an empty status apt resolves every dependency down to
libc: the repository holds more than a host lacks, never less. ``--print-uris`` lists each .deb's
URL, the ``Size`` and ``SHA256`` its ``Packages`` index states, without downloading it.

Example::

    resolved = resolve_target(target, [distro_input, nvidia_input])
    fetch_all(resolved, bundle_root); index_and_sign(bundle_root / "apt" / target.name, key)
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from metalserve.artefacts.cache import cache_root
from metalserve.bundle.fetch import Fetch, Resolved, Unreachable, open_url
from metalserve.bundle.signing import SigningKey
from metalserve.catalog.nvidia_stack import KEYRING_DEB, KEYRING_PATH, keyring_deb_url
from metalserve.offline import BundleInput
from metalserve.sandbox.aptrepo import index_flat_repo
from metalserve.sandbox.system import run
from metalserve.target import Target

APT_TIMEOUT_S = 20
"""apt's own connect/read timeout (``Acquire::http::Timeout``): an unreachable archive fails fast."""
RUN_TIMEOUT_S = 900
ORIGIN = ("metalserve-bundle", "packages for an offline metalserve site, signed by its bundle key")
_URI_LINE = re.compile(
    r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+) SHA256:(?P<sha>[0-9a-f]{64})$"
)
_ERR_LINE = re.compile(r"^(?:Err|W|E):.*?(?P<url>https?://\S+)")


def _options(root: Path, arch: str) -> list[str]:
    settings = {
        "Dir::State": root,
        "Dir::State::lists": root / "lists",
        "Dir::State::status": root / "status",
        "Dir::Cache": root,
        "Dir::Cache::archives": root / "archives",
        "Dir::Etc::sourcelist": root / "sources.list",
        "Dir::Etc::sourceparts": "-",
        "Dir::Etc::preferencesparts": root / "preferences.d",
        "Dir::Etc::trustedparts": root / "trusted.gpg.d",
        "APT::Architecture": arch,
        "APT::Architectures": arch,
        "Acquire::Languages": "none",
        "Acquire::ForceHash": "SHA256",
        "Acquire::Retries": 0,
        "Acquire::http::Timeout": APT_TIMEOUT_S,
        "Acquire::https::Timeout": APT_TIMEOUT_S,
        "Debug::NoLocking": 1,
    }
    return [word for name, value in settings.items() for word in ("-o", f"{name}={value}")]


def distro_lines(target: Target) -> list[str]:
    """The release's archive, its updates and its security suite, signed by its archive key."""
    facts = target.facts
    archive = facts.ports_archive if target.arch == "arm64" else facts.archive
    security = archive if target.release.is_ubuntu and target.arch == "arm64" else facts.security
    components = " ".join(facts.components)
    signed = f"[signed-by={facts.keyring}]"
    return [
        f"deb {signed} {archive} {facts.suite} {components}",
        f"deb {signed} {archive} {facts.suite}-updates {components}",
        f"deb {signed} {security} {facts.suite}-security {components}",
    ]


def nvidia_repository(target: Target) -> str:
    return keyring_deb_url(target.release, target.arch).removesuffix(KEYRING_DEB)


def _nvidia_keyring(target: Target, root: Path) -> Path:
    """NVIDIA's archive key, from the ``cuda-keyring`` package of its repository."""
    keyring = root / "cuda-archive-keyring.gpg"
    if keyring.is_file():
        return keyring
    deb = root / KEYRING_DEB
    with open_url(keyring_deb_url(target.release, target.arch)) as response:
        deb.write_bytes(response.read())
    with tempfile.TemporaryDirectory(prefix="cuda-keyring-") as unpacked:
        run(["dpkg-deb", "-x", deb, unpacked], what=f"unpack {deb}", fix="install dpkg, retry")
        shutil.copyfile(Path(unpacked) / KEYRING_PATH.lstrip("/"), keyring)
    return keyring


def _prepare(root: Path, target: Target, needs: Sequence[BundleInput]) -> dict[str, str]:
    """The apt folder for ``target``; returns a problem per input that cannot be resolved here."""
    for sub in ("lists/partial", "archives/partial", "preferences.d", "trusted.gpg.d"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "status").touch()
    problems: dict[str, str] = {}
    lines = []
    keyring = Path(target.facts.keyring)
    if keyring.is_file():
        lines += distro_lines(target)
    else:
        for need in needs:
            problems[need.id] = (
                f"no {target.release.value} archive key here ({keyring}): size unknown — fix: "
                f"install the {'ubuntu' if target.release.is_ubuntu else 'debian'}-keyring package"
            )
    for pref in root.glob("preferences.d/*"):
        pref.unlink()
    for number, pin in enumerate(p for need in needs for p in need.preferences):
        (root / "preferences.d" / f"metalserve-{number}").write_text(pin.preferences())
    if any(need.nvidia for need in needs):
        try:
            nvidia_key = _nvidia_keyring(target, root)
            lines.append(f"deb [signed-by={nvidia_key}] {nvidia_repository(target)} /")
        except (Unreachable, OSError) as error:
            for need in needs:
                if need.nvidia:
                    problems[need.id] = f"unreachable here: size unknown ({error})"
    (root / "sources.list").write_text("".join(f"{line}\n" for line in lines))
    return problems


def _update(root: Path, target: Target) -> list[str]:
    """Refresh the lists; the URLs apt could not read."""
    updated = run(
        ["apt-get", *_options(root, target.arch), "-q", "update"],
        what=f"read the package lists for {target.name}",
        fix="check that the archives are reachable from this machine",
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = f"{updated.stdout}\n{updated.stderr}"
    return sorted({m["url"] for line in output.splitlines() if (m := _ERR_LINE.match(line))})


def parse_uris(output: str, target: Target) -> tuple[Fetch, ...]:
    """``apt-get --print-uris`` lines as fetches into the target's repository folder."""
    fetches = []
    for line in output.splitlines():
        match = _URI_LINE.match(line.strip())
        if match:
            fetches.append(
                Fetch(
                    dest=f"apt/{target.name}/{match['file']}",
                    url=match["url"],
                    size=int(match["size"]),
                    sha256=match["sha"],
                )
            )
    return tuple(fetches)


def _print_uris(root: Path, target: Target, need: BundleInput) -> tuple[Fetch, ...]:
    listed = run(
        ["apt-get", *_options(root, target.arch), "-qq", "-y", "--no-install-recommends",
         "--print-uris", "install", *need.items],
        what=f"resolve {need.id}",
        fix="see the line above",
        timeout=RUN_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        last = (listed.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unreachable(f"apt cannot resolve {shlex.join(need.items)}: {last}")
    return parse_uris(listed.stdout, target)


def _origin(target: Target, need: BundleInput) -> str:
    return nvidia_repository(target) if need.nvidia else distro_lines(target)[0].split()[2]


def resolve_target(target: Target, needs: Sequence[BundleInput]) -> list[Resolved]:
    """Each apt input of ``target`` with its .debs (URL, size, sha256), or why not from here."""
    root = cache_root() / "bundle-apt" / target.name
    problems = _prepare(root, target, needs)
    failed = _update(root, target) if len(problems) < len(needs) else []
    resolved = []
    for need in needs:
        origin = _origin(target, need)
        problem = problems.get(need.id)
        unread = [url for url in failed if url.startswith(origin.rstrip("/"))]
        if problem is None and unread:
            problem = f"unreachable here: size unknown ({unread[0]} did not answer)"
        if problem is None:
            try:
                resolved.append(Resolved(need, origin, _print_uris(root, target, need)))
                continue
            except Unreachable as error:
                problem = f"size unknown: {error}"
        resolved.append(Resolved(need, origin, problem=problem))
    return resolved


def index_and_sign(repo: Path, key: SigningKey, suite: str) -> None:
    """``Packages``, ``Release`` and its signatures for the .debs in ``repo``."""
    index_flat_repo(repo, suite, origin=ORIGIN)
    key.sign_release(repo)
