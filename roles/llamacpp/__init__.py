"""llama.cpp built on the host from a pinned source: the plan's targets (``llama-server``,
``llama-quantize``; ``llama-gguf-split`` where the plan splits a GGUF; ``rpc-server`` in an RPC
cluster) and the source tree (its ``convert_hf_to_gguf.py`` and ``gguf-py``).

The build happens in a scratch directory and is installed as ``<version>-<build key>.partial``,
stamped, then renamed to the versioned prefix; ``current`` points at it. A killed build leaves no
stamped prefix, so the next run starts it again (ccache makes that cheap). The stamp names what
the build was made from and the size of each binary; a binary deleted or cut short since (a stat
finds it) means the build runs again.

Example::

    from roles import llamacpp
    llamacpp.install(plan)
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import files, server

from metalserve.layout import CCACHE_DIR
from metalserve.plan import HostPlan, LlamaCppBuildPlan
from roles.sizes import FileSizes, size_drift

STAMP = ".metalserve-build"


def source_sha256(build: LlamaCppBuildPlan) -> str | None:
    """The tarball's sha256: read from the control host's copy, or as the inventory gives it."""
    if build.source.kind == "local" and build.source.path:
        return hashlib.sha256(Path(build.source.path).expanduser().read_bytes()).hexdigest()
    return build.source.sha256


def stamp_lines(build: LlamaCppBuildPlan) -> list[str]:
    """The stamp's first lines: what the build was made from. Then one ``size NAME BYTES`` line
    per binary (``stamp_command``)."""
    return [f"build {build.build_key}", f"source {source_sha256(build) or 'unverified'}"]


def stamp_command(build: LlamaCppBuildPlan, prefix: str) -> str:
    """Print the stamp ``prefix`` should hold: the stamp lines, then each binary's size as found
    (a missing binary prints no line). The build writes it; the build's own skip check under the
    lock compares it with the stamp on disk."""
    header = "\\n".join(stamp_lines(build))
    return f"(printf '{header}\\n' && cd {shlex.quote(prefix + '/bin')} && stat -c 'size %n %s' {shlex.join(build.targets)})"


def recorded_sizes(stamp: list[str]) -> dict[str, object]:
    """The ``size NAME BYTES`` lines of a build stamp, as NAME → BYTES."""
    sizes: dict[str, object] = {}
    for line in stamp:
        kind, _, rest = line.partition(" ")
        name, _, size = rest.partition(" ")
        if kind == "size" and name:
            sizes[name] = int(size) if size.isdigit() else size
    return sizes


def is_built(build: LlamaCppBuildPlan) -> bool:
    """The prefix's stamp names this build, and every binary is there at its stamped size."""
    stamp = host.get_fact(FileContents, path=f"{build.prefix}/{STAMP}") or []
    sizes = recorded_sizes(stamp[2:])
    if stamp[:2] != stamp_lines(build) or set(sizes) != set(build.targets):
        return False
    drift = size_drift(sizes, host.get_fact(FileSizes, path=f"{build.prefix}/bin"))
    if drift:
        host.log(
            f"llama.cpp: {', '.join(drift)} in {build.prefix}: building again",
            log_func=logger.warning,
        )
    return not drift


def fetch_command(build: LlamaCppBuildPlan) -> str:
    """Download (tarball URL) or export (git) the source to the tarball path, verified, atomically."""
    q = shlex.quote
    dest, partial = build.source_tarball, f"{build.source_tarball}.partial"
    if build.source.kind == "git":
        # The pin is a short commit id, which a server will not fetch by name: take the history
        # without file contents (blobless) and let git resolve the id locally.
        clone = dest.removesuffix(".tar.gz") + ".git"
        fetch = (
            f"rm -rf {q(clone)} && git clone -q --filter=blob:none --no-checkout "
            f"{q(str(build.source.url))} {q(clone)} && "
            f"git -C {q(clone)} checkout -q {q(build.version)} && "
            f"tar -czf {q(partial)} -C {q(clone)} --exclude .git --transform 's,^\\.,llama.cpp,' . && "
            f"rm -rf {q(clone)}"
        )
    else:
        fetch = (
            "curl --fail --location --silent --show-error "
            f"-o {q(partial)} {q(str(build.source.url))}"
        )
    verify = ""
    if build.source.sha256:
        verify = f" && echo {q(f'{build.source.sha256}  {partial}')} | sha256sum --check --status"
    return f"mkdir -p {q(str(Path(dest).parent))} && {fetch}{verify} && mv {q(partial)} {q(dest)}"


def build_command(build: LlamaCppBuildPlan) -> str:
    q = shlex.quote
    work = f"{Path(build.prefix).parent}/.build-{build.build_key}"
    partial = f"{build.prefix}.partial"
    copies = " && ".join(
        f"cp {q(f'{work}/build/bin/{t}')} {q(f'{partial}/bin/')}" for t in build.targets
    )
    steps = " && ".join(
        [
            f"rm -rf {q(work)} {q(partial)}",
            f"mkdir -p {q(f'{work}/src')} {q(f'{partial}/bin')}",
            f"tar -xzf {q(build.source_tarball)} -C {q(f'{work}/src')} --strip-components=1",
            f"cmake -S {q(f'{work}/src')} -B {q(f'{work}/build')} {shlex.join(build.cmake_flags)}",
            f"cmake --build {q(f'{work}/build')} -j$(nproc) --target {shlex.join(build.targets)}",
            copies,
            f"mv {q(f'{work}/src')} {q(f'{partial}/src')}",
            f"{stamp_command(build, partial)} > {q(f'{partial}/{STAMP}')}",
            f"rm -rf {q(build.prefix)}",
            f"mv {q(partial)} {q(build.prefix)}",
            f"rm -rf {q(work)}",
        ]
    )
    # One build at a time per host: a build orphaned by a killed deploy may still be running.
    # Whoever gets the lock second finds the stamp, and the binaries at its sizes, and stops.
    done = (
        f'[ "$(cat {q(f"{build.prefix}/{STAMP}")} 2>/dev/null)" = '
        f'"$( {stamp_command(build, build.prefix)} 2>/dev/null)" ]'  # "$( (": not "$((" arithmetic
    )
    script = f"{done} || {{ {steps}; }}"
    parent = str(Path(build.prefix).parent)
    return f"mkdir -p {q(parent)} && flock {q(f'{parent}/.build.lock')} sh -c {q(script)}"


@deploy("llama.cpp: install")
def install(plan: HostPlan) -> None:
    build = plan.llamacpp
    if build is None:
        return
    if not is_built(build):
        if build.source.kind == "local":
            files.put(
                name=f"Push the llama.cpp {build.version} source",
                src=str(Path(str(build.source.path)).expanduser()),
                dest=build.source_tarball,
            )
        elif not host.get_fact(File, path=build.source_tarball):
            server.shell(
                name=f"Fetch the llama.cpp {build.version} source", commands=[fetch_command(build)]
            )
        server.shell(
            name=f"Build llama.cpp {build.version} ({', '.join(build.targets)})",
            commands=[build_command(build)],
            # paths under the llama.cpp root are hashed relative to the compile directory, so a
            # build in another .build-<key> folder (new flags, new toolkit) reuses every object
            # that did not change (ccache manual: "Compiling in different directories")
            _env={
                "CCACHE_DIR": CCACHE_DIR,
                "CCACHE_BASEDIR": str(Path(build.prefix).parent),
                "CCACHE_NOHASHDIR": "1",
            },
        )
    files.link(
        name=f"Make llama.cpp {build.version}-{build.build_key} current",
        path=build.current,
        target=build.prefix,
    )
