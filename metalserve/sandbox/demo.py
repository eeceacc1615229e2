"""Edge: the built-in sandbox demo — sandbox hosts, the offline inputs they are served, the serve
deploy over SSH, and a completion from the llama-server unit.

The hosts have no internet. What they need reaches them from the control host: the llama.cpp
source tarball and the Python wheelhouse are pushed over SSH (bundle sources), Debian packages come
from the sandbox's local apt repository, and the tiny MoE checkpoint from a Hugging Face mirror run
in the controller's network namespace (so the weights take the real ``huggingface_hub`` path).

Example::

    inputs = prepare_inputs()      # cached: source tarball, wheelhouse, tiny checkpoint, API key
    start_hub_mirror(state, inputs)
    host_data = sandbox_metalserve_data(state, inputs)
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import BaseModel, ConfigDict

from metalserve.errors import MetalserveError

if TYPE_CHECKING:
    from metalserve.sandbox.layout import SandboxLayout
    from metalserve.sandbox.state import SandboxState

DEMO_REPO = "metalserve/tiny-moe"
HUB_MIRROR_PORT = 8390
INPUTS_FILE = "inputs.json"
INVENTORY = "inventories/sandbox.py"
CLUSTER_INVENTORY = "inventories/sandbox-cluster.py"
SERVE = "deploy/serve.py"
HEALTH = "deploy/health.py"

CLUSTER_NAME = "sandbox-rpc"
CLUSTER_SERVICE = "metalserve-rpc"
CLUSTER_HTTP_PORT = 8090
CLUSTER_RPC_PORT = 50052
"""The two-host cluster serves beside the single-host units (8080): its own unit name and ports."""


class SandboxInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    llamacpp_tarball: Path
    llamacpp_sha256: str
    wheelhouse: Path
    checkpoint: Path
    hub_root: Path
    repo_id: str = DEMO_REPO
    api_key_file: Path
    hub_token_file: Path | None = None
    hub_endpoint: str | None = None


def prepare_inputs(run_dir: Path, progress: Callable[[str], None] = print) -> SandboxInputs:
    """Build (or take from the cache) everything the sandbox hosts are served."""
    from metalserve.artefacts.cache import cache_root
    from metalserve.artefacts.llamacpp import llamacpp_source
    from metalserve.artefacts.tinymodel import tiny_moe_checkpoint
    from metalserve.artefacts.wheelhouse import converter_wheelhouse
    from metalserve.mirror.index import publish

    started = time.monotonic()
    source = llamacpp_source()
    progress(
        f"[inputs {time.monotonic() - started:5.1f} s] llama.cpp {source.commit} source: {source.tarball}"
    )
    house = converter_wheelhouse()
    progress(f"[inputs {time.monotonic() - started:5.1f} s] wheelhouse: {len(house.wheels)} wheels")
    checkpoint = tiny_moe_checkpoint()
    hub_root = cache_root() / "hub-mirror"
    publish(hub_root, DEMO_REPO, checkpoint.path)
    progress(
        f"[inputs {time.monotonic() - started:5.1f} s] tiny MoE checkpoint published as {DEMO_REPO}"
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs = SandboxInputs(
        llamacpp_tarball=source.tarball,
        llamacpp_sha256=source.sha256,
        wheelhouse=house.path,
        checkpoint=checkpoint.path,
        hub_root=hub_root,
        api_key_file=_secret_file(run_dir / "api_key", "sk-sandbox"),
        hub_token_file=_secret_file(run_dir / "hub_token", "hub-sandbox"),
    )
    save_inputs(run_dir, inputs)
    return inputs


def _secret_file(path: Path, prefix: str) -> Path:
    """A 0600 file holding a random secret, made once and then kept (a changed credential
    restarts the hosts' services)."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(f"{prefix}-{secrets.token_hex(16)}\n")
    return path


def save_inputs(run_dir: Path, inputs: SandboxInputs) -> None:
    tmp = run_dir / f".{INPUTS_FILE}.tmp"
    tmp.write_text(inputs.model_dump_json(indent=2))
    tmp.replace(run_dir / INPUTS_FILE)


def load_inputs(run_dir: Path) -> SandboxInputs | None:
    try:
        return SandboxInputs.model_validate_json((run_dir / INPUTS_FILE).read_text())
    except FileNotFoundError:
        return None


def start_hub_mirror(
    controller_netns: str, controller_ip: str, inputs: SandboxInputs, log: Path
) -> str:
    """Serve the mirror inside the controller namespace (reachable from the hosts only), guarded
    by the hub token the hosts hold as their HF token; the sandbox's ``down`` stops it with
    everything else in that namespace."""
    from metalserve.sandbox.procs import start_daemon

    endpoint = f"http://{controller_ip}:{HUB_MIRROR_PORT}"
    argv = [
        "ip", "netns", "exec", controller_netns, sys.executable, "-m", "metalserve.cli",
        "mirror", "serve", str(inputs.hub_root), "--bind", f"{controller_ip}:{HUB_MIRROR_PORT}",
    ]  # fmt: skip
    header = ""
    if inputs.hub_token_file:
        argv += ["--token-file", str(inputs.hub_token_file)]
        header = f"Authorization: Bearer {inputs.hub_token_file.read_text().strip()}\n"
    # the header on stdin (-H @-), so the token is not in curl's argv
    probe = ["ip", "netns", "exec", controller_netns, "curl", "-fsS", "-o", "/dev/null",
             "-H", "@-", f"{endpoint}/api/models/{inputs.repo_id}"]  # fmt: skip
    start_daemon(argv, log, f"hub mirror at {endpoint}",
                 lambda: subprocess.run(probe, input=header, text=True,
                                        capture_output=True).returncode == 0, 20)  # fmt: skip
    return endpoint


def _sandbox_sources(apt_url: str, inputs: SandboxInputs) -> dict[str, Any]:
    """Each input from the sandbox's own services: its apt repository, the wheelhouse and the
    llama.cpp source pushed from the control host, the weights from its Hub mirror."""
    return {
        "apt": {"kind": "mirror", "url": apt_url},
        "python": {"kind": "bundle", "wheelhouse": str(inputs.wheelhouse)},
        "llamacpp": {
            "kind": "local",
            "path": str(inputs.llamacpp_tarball),
            "sha256": inputs.llamacpp_sha256,
        },  # fmt: skip
        "weights": {
            "kind": "mirror",
            "endpoint": inputs.hub_endpoint,
            # the mirror's token crosses the sandbox's own host-only bridge, nothing else
            "trust_plain_http": "the sandbox's host-only network",
        },
    }


def sandbox_metalserve_data(
    apt_url: str, inputs: SandboxInputs, clients: tuple[str, ...], bundle: Path | None = None
) -> dict[str, Any]:
    """The ``metalserve`` host data of a sandbox host: llama.cpp on the CPU serving the tiny MoE
    checkpoint, every input from a local source (or, given ``bundle``, from that offline bundle
    alone), reachable from ``clients`` only (the controller, where the demo's client runs).

    ``os`` names the sandbox's release, so ``metalserve bundle build`` bundles it alone; the
    checkpoint's ``local_dir`` on the control host is what a bundle takes the weights from."""
    from metalserve.sandbox.recipe import ROOTFS

    return {
        "profile": "sandbox-cpu",
        "os": ROOTFS.host_os,
        "access": {"clients": list(clients)},
        "model": {"repo_id": inputs.repo_id, "local_dir": str(inputs.checkpoint)},
        "engine": {
            "name": "llamacpp",
            "host": "0.0.0.0",
            "port": 8080,
            "ctx_size": 2048,
            "parallel": 2,
        },  # fmt: skip
        "sources": (
            {"bundle": str(bundle)} if bundle is not None else _sandbox_sources(apt_url, inputs)
        ),
        "secrets": {
            "api_key_file": str(inputs.api_key_file),
            **({"hf_token_file": str(inputs.hub_token_file)} if inputs.hub_token_file else {}),
        },
        "service": {"keep_warm_minutes": 14, "health_timeout_s": 600},
    }


def sandbox_cluster_data(
    apt_url: str,
    inputs: SandboxInputs,
    clients: tuple[str, ...],
    nodes: int,
    rank: int,
    address: str,
) -> dict[str, Any]:
    """The ``metalserve`` host data of one node of the sandbox's llama.cpp RPC cluster: the head
    serves the tiny MoE and offloads to the workers' ``rpc-server`` over the sandbox network."""
    data = sandbox_metalserve_data(apt_url, inputs, clients)
    del data["profile"]
    return {
        **data,
        "hardware": {
            "gpu": None,
            "gpus_per_node": 0,
            "nodes": nodes,
            "fabric": "ethernet",
            "host_ram_gb": 4,
        },
        # every layer on the workers' rpc-server: the head holds none of the model itself
        "engine": {**data["engine"], "port": CLUSTER_HTTP_PORT, "n_gpu_layers": "all"},
        "service": {**data["service"], "name": CLUSTER_SERVICE},
        "cluster": {
            "name": CLUSTER_NAME,
            "node_rank": rank,
            "address": address,
            "port": CLUSTER_RPC_PORT,
        },
    }


def completion(controller_netns: str, url: str, api_key_file: Path, served: str) -> str:
    """Ask the endpoint for a completion from the controller namespace, as a client would."""
    body = json.dumps({"model": served, "prompt": "A serving host", "max_tokens": 16,
                       "temperature": 0})  # fmt: skip
    header = f"Authorization: Bearer {api_key_file.read_text().strip()}"
    run = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            controller_netns,
            "curl",
            "-fsS",
            "--max-time",
            "60",
            "-H",
            "@-",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            url,
        ],  # fmt: skip
        input=header + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise MetalserveError(f"completion from {url}: {run.stderr.strip() or run.returncode}")
    return str(json.loads(run.stdout)["choices"][0]["text"])


def prepare_sandbox(
    state: SandboxState, layout: SandboxLayout, progress: Callable[[str], None] = print
) -> SandboxInputs:
    """The inputs built and served, and recorded where ``inventories/sandbox.py`` reads them."""
    inputs = prepare_inputs(layout.run_dir, progress)
    endpoint = start_hub_mirror(state.controller_netns, state.controller_ip, inputs,
                                layout.log_dir / "hubmirror.log")  # fmt: skip
    inputs = inputs.model_copy(update={"hub_endpoint": endpoint})
    save_inputs(layout.run_dir, inputs)
    progress(f"hub mirror serving {inputs.repo_id} at {endpoint}")
    return inputs


@click.command("demo")
@click.option("-n", "hosts", default=1, show_default=True, help="sandbox hosts to deploy to")
def demo_command(hosts: int) -> None:
    """Sandbox hosts up, the serve deploy over SSH, and a completion from the endpoint."""
    from metalserve.io.runner import run_pyinfra
    from metalserve.sandbox import down, up
    from metalserve.sandbox.layout import default_layout
    from metalserve.sandbox.recipe import APT_REPO, ROOTFS, CachePaths
    from metalserve.sandbox.state import load_state

    layout = default_layout()
    click.secho(f"== 1/4 sandbox: {hosts} Debian 12 host(s) with systemd, no internet", bold=True)
    state = load_state(layout.state_file) if layout.state_file.exists() else up(hosts)
    if not CachePaths.from_env().made_from(
        state.rootfs_tarball, state.ccache_dir, ROOTFS, APT_REPO
    ):
        click.echo("the sandbox up was made from an older recipe: replacing it")
        down(progress=click.echo)
        state = up(hosts)
    click.secho(
        "== 2/4 offline inputs: llama.cpp source, wheelhouse, tiny MoE checkpoint", bold=True
    )
    inputs = prepare_sandbox(state, layout, progress=click.echo)
    click.secho(f"== 3/4 pyinfra -y {INVENTORY} {SERVE}", bold=True)
    run = run_pyinfra(INVENTORY, SERVE, on_line=click.echo)
    if run.returncode != 0:
        raise MetalserveError(
            f"the serve deploy failed (exit {run.returncode}); see its output above"
        )
    click.secho("== 4/4 the endpoint", bold=True)
    for h in state.hosts:
        url = f"http://{h.ip}:8080/v1/completions"
        text = completion(state.controller_netns, url, inputs.api_key_file, inputs.repo_id)
        click.echo(f"{h.name}: {url} (from `ip netns exec {state.controller_netns} ...`)")
        click.echo(f"  completion: {text!r}")
    click.echo(
        f"deploy took {run.elapsed:.0f} s; tear down with: .venv/bin/metalserve sandbox down"
    )
