"""Edge: a sandbox host dressed as a one-GPU vLLM or SGLang node, for the engine install run (the
opt-in e2e ``tests/e2e/test_engines.py``) and its bench (``bench/stages.py --engine vllm``).

The host stands in for an H100 PCIe node: the NVIDIA packages come from the stand-in repository
(as in the stack's e2e), the engine's wheels from the lock's wheelhouse (downloaded once on the
control host, cached by the lock's hash, pushed as the python bundle source), everything else
as in the demo. With no GPU, the engine's own start is what fails.

Example::

    inputs = prepare_sandbox(state, default_layout())
    vllm = engine_host(state, inputs, "vllm", folder)
    run_pyinfra(str(vllm.inventory), "deploy/serve.py")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalserve.catalog import pins
from metalserve.sandbox.demo import SandboxInputs
from metalserve.sandbox.state import SandboxState

LOCKS = Path(__file__).resolve().parents[2] / "locks"
ENGINES: dict[str, tuple[str, dict[str, Any]]] = {
    "vllm": (pins.VLLM.version, {"max_model_len": 2048, "enforce_eager": True}),
    "sglang": (pins.SGLANG.version, {"context_length": 2048}),
}
"""Each engine the sandbox installs: its pinned version (the catalogue's) and the inventory's
engine settings."""


def engine_lock(engine: str) -> Path:
    """The engine pin's lock for the sandbox hosts' Python (Debian 12: 3.11) on x86_64."""
    return LOCKS / f"{engine}-{ENGINES[engine][0]}-py3.11-x86_64.txt"


@dataclass(frozen=True)
class EngineHost:
    """The host, its pyinfra host data and the inventory that holds it, and the wheelhouse it
    installs from."""

    name: str
    data: dict[str, Any]
    inventory: Path
    wheelhouse: Path


def engine_host(
    state: SandboxState, inputs: SandboxInputs, engine: str, folder: Path
) -> EngineHost:
    """The last sandbox host as a one-GPU H100 PCIe node of ``engine`` (a key of ``ENGINES``),
    installed from its lock's wheelhouse, its other inputs served as ``prepare_sandbox`` served
    them (``inputs``); its inventory is written into ``folder``."""
    from metalserve.artefacts.wheelhouse import converter_wheelhouse, engine_wheelhouse
    from metalserve.sandbox import fileserver
    from metalserve.sandbox.demo import sandbox_metalserve_data
    from metalserve.sandbox.inventory import clients, host_data
    from metalserve.sandbox.layout import default_layout
    from metalserve.sandbox.lifecycle import APT_SERVED_NAME
    from metalserve.sandbox.recipe import RootfsRecipe
    from metalserve.sandbox.standins import standin_repo

    layout = default_layout()
    wheels = engine_wheelhouse(engine_lock(engine), converter_wheelhouse())
    repo = standin_repo((layout.www_dir / APT_SERVED_NAME).resolve(), RootfsRecipe().suite)
    apt = fileserver.serve_dir(layout, "apt-nvidia", repo)
    target = state.hosts[-1]
    base = sandbox_metalserve_data(state.apt_url, inputs, clients(state))
    data: dict[str, Any] = {
        **host_data(state, target),
        "metalserve": {
            **{k: v for k, v in base.items() if k not in ("profile", "engine")},
            "hardware": {"gpu": "h100-pcie", "gpus_per_node": 1, "nodes": 1,
                         "interconnect": "pcie", "host_ram_gb": 16},
            "engine": {"name": engine, **ENGINES[engine][1]},
            "sources": {
                **base["sources"],
                "apt": {"kind": "mirror", "url": apt},
                "python": {"kind": "bundle", "wheelhouse": str(wheels)},
            },
            "service": {"health_timeout_s": 600},
        },
    }  # fmt: skip
    data.pop("sandbox")
    folder.mkdir(parents=True, exist_ok=True)
    inventory = folder / f"{engine}_sandbox.py"
    inventory.write_text(f"hosts = [({target.name!r}, {data!r})]\n")
    return EngineHost(target.name, data, inventory, wheels)
