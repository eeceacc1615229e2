"""llama.cpp built on the host from a pinned source: ``llama-server``, ``llama-quantize``,
``llama-gguf-split`` and the source tree (its ``convert_hf_to_gguf.py`` and ``gguf-py``).

The build happens in a scratch directory and is installed as ``<version>-<build key>.partial``,
stamped, then renamed to the versioned prefix; ``current`` points at it. A killed build leaves no
stamped prefix, so the next run starts it again (ccache makes that cheap).

Example::

    from roles import llamacpp
    llamacpp.install(plan)
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import files, server

from metalserve.layout import CCACHE_DIR
from metalserve.plan import HostPlan, LlamaCppBuildPlan

STAMP = ".metalserve-build"


def source_sha256(build: LlamaCppBuildPlan) -> str | None:
    """The tarball's sha256: read from the control host's copy, or as the inventory gives it."""
    if build.source.kind == "local" and build.source.path:
        return hashlib.sha256(Path(build.source.path).expanduser().read_bytes()).hexdigest()
    return build.source.sha256


def stamp_lines(build: LlamaCppBuildPlan) -> list[str]:
    return [f"build {build.build_key}", f"source {source_sha256(build) or 'unverified'}"]


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
    stamp = "\\n".join(stamp_lines(build))
    steps = " && ".join(
        [
            f"rm -rf {q(work)} {q(partial)}",
            f"mkdir -p {q(f'{work}/src')} {q(f'{partial}/bin')}",
            f"tar -xzf {q(build.source_tarball)} -C {q(f'{work}/src')} --strip-components=1",
            f"cmake -S {q(f'{work}/src')} -B {q(f'{work}/build')} {shlex.join(build.cmake_flags)}",
            f"cmake --build {q(f'{work}/build')} -j$(nproc) --target {shlex.join(build.targets)}",
            copies,
            f"mv {q(f'{work}/src')} {q(f'{partial}/src')}",
            f"printf '{stamp}\\n' > {q(f'{partial}/{STAMP}')}",
            f"rm -rf {q(build.prefix)}",
            f"mv {q(partial)} {q(build.prefix)}",
            f"rm -rf {q(work)}",
        ]
    )
    # One build at a time per host: a build orphaned by a killed deploy may still be running.
    # Whoever gets the lock second finds the stamp and stops.
    done = f'[ "$(cat {q(f"{build.prefix}/{STAMP}")} 2>/dev/null)" = "$(printf \'{stamp}\')" ]'
    script = f"{done} || {{ {steps}; }}"
    parent = str(Path(build.prefix).parent)
    return f"mkdir -p {q(parent)} && flock {q(f'{parent}/.build.lock')} sh -c {q(script)}"


@deploy("llama.cpp: install")
def install(plan: HostPlan) -> None:
    build = plan.llamacpp
    if build is None:
        return
    if host.get_fact(FileContents, path=f"{build.prefix}/{STAMP}") != stamp_lines(build):
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
            _env={"CCACHE_DIR": CCACHE_DIR},
        )
    files.link(
        name=f"Make llama.cpp {build.version}-{build.build_key} current",
        path=build.current,
        target=build.prefix,
    )
