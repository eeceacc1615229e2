"""The ``metalserve`` command: validate, plan and render from an inventory without touching a host.

Bad input exits 2 with one line on stderr; a plan that does not fit exits 1.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from metalserve.errors import MetalserveError
from metalserve.io.inventory import plan_inventory
from metalserve.plan import HostPlan
from metalserve.types import printable


class _OneLineErrors(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MetalserveError as exc:
            click.echo(f"error: {printable(str(exc))}", err=True)
            sys.exit(2)


@click.group(cls=_OneLineErrors)
@click.version_option(package_name="metalserve")
def main() -> None:
    """Plan, render and check GPU serving hosts from a pyinfra inventory."""


def _plan_json(plan: HostPlan) -> dict:
    return {
        "host": plan.host,
        "profile": plan.profile.id,
        "hardware": plan.profile.description,
        "cluster": plan.cluster.name,
        "node_rank": plan.node.rank,
        "address": plan.node.address,
        "start_order": [list(stage) for stage in plan.cluster.start_order],
        "engine": plan.engine.name,
        "engine_version": plan.engine.version,
        "model": plan.service.served_model,
        "command": list(plan.command),
        "command_line": shlex.join(plan.command),
        "exec_start": list(plan.service.exec_argv),
        "nccl": [s.model_dump() for s in plan.nccl.settings],
        "nccl_left_unset": [{"name": n, "reason": why} for n, why in plan.nccl.unset],
        "environment": dict(plan.environment),
        "sizing": plan.sizing.model_dump() if plan.sizing else None,
        "fits": plan.sizing.fits if plan.sizing else None,
        "smallest_setup": plan.smallest_setup,
        "service": plan.service.model_dump(),
        "unit_security": _unit_scores(plan),
        "gpudirect_rdma": plan.fabric.gpudirect.model_dump(mode="json") if plan.fabric else None,
        "warnings": list(plan.warnings),
    }


def _unit_scores(plan: HostPlan) -> list[dict] | str:
    """Each service unit's ``systemd-analyze security`` exposure, or why there is none."""
    from metalserve.io.unitsecurity import NoAnalyzer, score_plan

    try:
        return [s.model_dump() for s in score_plan(plan)]
    except NoAnalyzer as exc:
        return f"not scored: {exc}"


def _print_cluster(plan: HostPlan) -> None:
    cluster = plan.cluster
    click.secho(f"== cluster {cluster.name}: {cluster.hardware.description}", bold=True)
    for node in cluster.nodes:
        role = "head" if node.rank == 0 else "worker"
        click.echo(f"node     rank {node.rank} {node.host} ({node.address}) {role}")
    stages = " → ".join(", ".join(stage) for stage in cluster.start_order)
    click.echo(f"start    {stages} (rendezvous port {cluster.port}); stop: all together")


def _access(plan: HostPlan) -> str:
    """Who reaches this node's ports, in one line."""
    fw = plan.firewall
    key = next(c for c in plan.credentials if c.name == "api_key")
    keyed = f"API key {'generated at ' if key.generate else 'from '}{key.local_path}"
    if fw is None:
        return f"firewall off (the site's); {keyed}"
    clients = ", ".join((*fw.clients_v4, *fw.clients_v6)) or "loopback only"
    parts = [f"port {fw.serving_port} from {clients}"] if fw.serving_port else []
    if fw.cluster_ports:
        peers = ", ".join((*fw.peers_v4, *fw.peers_v6))
        parts.append(f"port {', '.join(map(str, fw.cluster_ports))} from the cluster ({peers})")
    return "; ".join([*parts, keyed])


def _print_plan(plan: HostPlan) -> None:
    if plan.cluster.multi_node and plan.node.rank == 0:
        _print_cluster(plan)
    role = (
        f", rank {plan.node.rank} of cluster {plan.cluster.name}" if plan.cluster.multi_node else ""
    )
    click.secho(f"== {plan.host} ({plan.profile.description}{role})", bold=True)
    click.echo(f"engine   {plan.engine.name} {plan.engine.version}")
    for lock in plan.engine.locks:
        cuda = f" (CUDA {lock.cuda_major})" if lock.cuda_major else ""
        found = f"{lock.path}{cuda}" if lock.sha256 else f"none: {lock.unavailable}"
        click.echo(f"lock     {lock.target}: {found}")
    click.echo(f"command  {shlex.join(plan.command)}")
    click.echo(f"unit     {shlex.join(plan.service.exec_argv)}")
    if plan.sizing:
        click.echo(f"sizing   {plan.sizing.summary()}")
        for reason in plan.sizing.reasons:
            click.secho(f"         ✗ {reason}", fg="red")
    if plan.smallest_setup:
        click.echo(f"smallest {plan.smallest_setup}")
    for s in plan.nccl.settings:
        click.echo(f"nccl     {s.name}={s.value}  # {s.reason}")
    for name, why in plan.nccl.unset:
        click.echo(f"nccl     {name} left unset  # {why}")
    click.echo(f"access   {_access(plan)}")
    scores = _unit_scores(plan)
    if isinstance(scores, str):
        click.echo(f"security {scores}")
    for score in scores if isinstance(scores, list) else []:
        click.echo(
            f"security {score['unit']} {score['exposure']:.1f} {score['verdict']}  "
            "# systemd-analyze security: 0 sandboxed … 10 exposed"
        )
    hardening = plan.service.hardening
    keepwarm = hardening.keepwarm.relaxed if hardening.keepwarm else ()
    for name, reason in dict((*hardening.engine.relaxed, *keepwarm)).items():
        click.echo(f"security {name} relaxed: {reason}")
    if plan.fabric:
        gpudirect = plan.fabric.gpudirect
        click.echo(f"rdma     GPUDirect RDMA: {gpudirect.path}  # {gpudirect.reason}")
    for warning in plan.warnings:
        click.secho(f"warning  {warning}", fg="yellow")


def _exit_for(plans: list[HostPlan]) -> None:
    if any(p.sizing is not None and not p.sizing.fits for p in plans):
        sys.exit(1)


@main.command()
@click.argument("inventories", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(inventories: tuple[str, ...]) -> None:
    """Validate every host of each INVENTORY; exit 1 if a plan does not fit its hardware."""
    plans: list[HostPlan] = []
    for inventory in inventories:
        for plan in plan_inventory(inventory):
            plans.append(plan)
            if plan.sizing is None:
                verdict = "ok (sizing skipped: model not in catalogue)"
            elif plan.sizing.fits:
                verdict = "ok, fits"
            else:
                verdict = f"does NOT fit: {plan.sizing.reasons[0]}"
            where = f" (cluster {plan.cluster.name}, rank {plan.node.rank})"
            click.echo(
                f"{inventory}: {plan.host}{where if plan.cluster.multi_node else ''}: {verdict}"
            )
    _exit_for(plans)


@main.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--host", "only", help="plan only this host")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plan(inventory: str, only: str | None, as_json: bool) -> None:
    """Sizing, engine command, NCCL environment and warnings for each host."""
    plans = plan_inventory(inventory, only)
    if as_json:
        click.echo(json.dumps([_plan_json(p) for p in plans], indent=2))
    else:
        for p in plans:
            _print_plan(p)
    _exit_for(plans)


@main.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--host", "only", required=True, help="the host whose files to render")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="output root")
def render(inventory: str, only: str, out: str) -> None:
    """Write the exact files a deploy would write for HOST under OUT (as OUT/etc/..., OUT/opt/...)."""
    from metalserve.io.templating import render as render_files

    (plan_,) = plan_inventory(inventory, only)
    root = Path(out)
    for f in render_files(plan_):
        target = root / f.path.lstrip("/")
        if ".." in Path(f.path).parts:  # paths come from typed names; a '..' would be a bug
            raise MetalserveError(f"{f.path}: expected a path inside --out — fix: report this")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
        target.chmod(int(f.mode, 8))
        click.echo(f"{f.mode} {target}")


@main.command()
def audit() -> None:
    """Where the published guides' sizing claims do not add up, checkpoint by checkpoint."""
    from metalserve.sizing import audit_catalogue

    for checkpoint_id, findings in audit_catalogue().items():
        click.secho(checkpoint_id, bold=True)
        for finding in findings or ["all claims add up"]:
            click.echo(f"  - {finding}")


def _register_groups() -> None:
    from metalserve.bundle.cli import bundle_group
    from metalserve.cli.diag import diag_group
    from metalserve.cli.preflight import preflight_group
    from metalserve.mirror.hub import mirror_group
    from metalserve.sandbox.cli import sandbox_group
    from metalserve.sandbox.demo import demo_command

    main.add_command(bundle_group)
    main.add_command(diag_group)
    main.add_command(mirror_group)
    main.add_command(preflight_group)
    main.add_command(demo_command)
    main.add_command(sandbox_group)


_register_groups()

if __name__ == "__main__":
    main()
