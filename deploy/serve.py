"""Serve: take a host from a fresh OS to a verified endpoint.

    pyinfra inventories/h200.py deploy/serve.py

Preflight first (a FAIL on any node stops every node before anything changes), then phase by
phase across the roles (install everywhere, then configure, then activate), so the engine
starts only once the driver stack, the engine and the weights are in place. Each role does nothing
where the plan has no part for it (no llama.cpp build on a vLLM host, no driver on a CPU host).
"""

from metalserve.preflight import Purpose
from roles import (
    base,
    engine_venv,
    firewall,
    gguf,
    layout,
    llamacpp,
    packages,
    preflight,
    service,
    weights,
)
from roles.nvidia_driver.stack import ROLES as NVIDIA_STACK

plan = base.current_plan()
preflight.first(plan, Purpose.SERVE)
gpu_stack = [role for role in NVIDIA_STACK if role is not packages] if plan.profile.gpu else []
base.run_phases(
    [packages, layout, *gpu_stack, firewall, engine_venv, llamacpp, weights, gguf, service], plan
)
