"""``metalserve bundle build|verify``: make an offline bundle on a connected machine; check it on
either side of the air gap.

Example::

    metalserve bundle build inventories/h200.py --out /srv/bundle --dry-run
    metalserve bundle build inventories/h200.py --out /srv/bundle
    metalserve bundle verify /srv/bundle --inventory inventories/h200.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from metalserve.bundle.fetch import human
from metalserve.bundle.manifest import file_problems, read_manifest
from metalserve.bundle.signing import verify_release
from metalserve.offline import BundleManifest, shortfall
from metalserve.sources import BundleLayout
from metalserve.types import printable


@click.group("bundle")
def bundle_group() -> None:
    """Offline bundles: everything an inventory's deploys need, for sites without internet."""


def _token(path: str | None) -> str | None:
    if path is None:
        return os.environ.get("HF_TOKEN") or None
    from metalserve.mirror.hub import read_token

    return read_token(Path(path)).decode()


@bundle_group.command("build")
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="bundle dir")
@click.option("--dry-run", is_flag=True, help="list what would be fetched, from where, how big")
@click.option(
    "--hf-endpoint",
    default=lambda: os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
    show_default="$HF_ENDPOINT or https://huggingface.co",
    help="where the model snapshots come from (the Hub or a mirror)",
)
@click.option("--hf-token-file", type=click.Path(dir_okay=False), help="default: $HF_TOKEN")
@click.option(
    "--index",
    default="https://pypi.org/simple",
    show_default=True,
    help="PEP 691 index for wheel sizes",
)
def build_command(
    inventory: str, out: str, dry_run: bool, hf_endpoint: str, hf_token_file: str | None, index: str
) -> None:
    """Collect what INVENTORY's deploys need into OUT: a signed apt repository per release and
    architecture, one wheelhouse, the sources, the model snapshots, and bundle.json."""
    from metalserve.bundle.build import (
        BuildOptions,
        build,
        dry_run_lines,
        inventory_needs,
        resolve_all,
        unbuilt,
    )

    options = BuildOptions(
        hub=hf_endpoint.rstrip("/"), hub_token=_token(hf_token_file), index=index.rstrip("/")
    )
    needs, local = inventory_needs(inventory)
    resolved = resolve_all(needs, local, options, progress=lambda line: click.echo(line, err=True))
    if dry_run:
        for line in dry_run_lines(needs, resolved):
            click.echo(printable(line))
        return
    root = Path(out)
    manifest = build(
        needs, resolved, root, options, progress=lambda line: click.echo(line, err=True)
    )
    size = sum(record.size for record in manifest.files.values())
    click.echo(
        f"bundle {root}: {len(manifest.files)} files, {human(size)}; manifest {root / BundleLayout().manifest}"
    )
    click.echo(f'inventory: "sources": {{"bundle": "{root.resolve()}"}}')
    missing = unbuilt(resolved)
    for line in missing:
        click.echo(printable(f"not bundled: {line}"), err=True)
    if missing:
        sys.exit(1)


def signature_problems(root: Path, manifest: BundleManifest) -> list[str]:
    """Each apt repository whose InRelease does not verify against the bundle's key."""
    key = root / BundleLayout().key
    repos = sorted(
        {name.rsplit("/", 1)[0] for name in manifest.files if name.endswith("/InRelease")}
    )
    problems = []
    for repo in repos:
        if not key.is_file():
            problems.append(f"{BundleLayout().key}: missing (needed to check {repo})")
            break
        why = verify_release(root / repo, key)
        if why is not None:
            problems.append(f"{repo}/InRelease: signature does not verify: {why}")
    return problems


@bundle_group.command("verify")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option(
    "--inventory", type=click.Path(dir_okay=False), help="also check it serves this inventory"
)
def verify_command(bundle: str, inventory: str | None) -> None:
    """Name missing, truncated and altered files, bad signatures, and (with --inventory) what the
    inventory needs that the bundle was not built for. Exit 1 on any problem."""
    root = Path(bundle)
    manifest = read_manifest(root)
    problems = file_problems(root, manifest)
    problems += [p for p in signature_problems(root, manifest) if not p.startswith(tuple(problems))]
    if inventory is not None:
        from metalserve.bundle.build import inventory_needs

        needs, _ = inventory_needs(inventory)
        problems += shortfall(manifest, needs, hosts=True)
    for problem in problems:
        click.echo(printable(f"{root}: {problem}"))
    if problems:
        sys.exit(1)
    size = sum(record.size for record in manifest.files.values())
    click.echo(f"{root}: ok, {len(manifest.files)} files, {human(size)}, as the manifest says")
