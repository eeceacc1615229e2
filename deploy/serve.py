"""Serve: take a host from a fresh OS to a verified endpoint.

    pyinfra inventories/h200.py deploy/serve.py

Phase by phase across the roles (install everywhere, then configure, then activate), so the engine
starts only once everything it needs is in place; each role does nothing where the plan has no part
for it (no llama.cpp build on a vLLM host, no engine venv on a llama.cpp host).
"""

from roles import base, engine_venv, gguf, layout, llamacpp, packages, service, weights

base.run_phases([packages, layout, engine_venv, llamacpp, weights, gguf, service])
