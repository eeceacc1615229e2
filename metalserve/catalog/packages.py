"""Debian/Ubuntu packages each serving path needs on the host (names valid on Debian 12 and
Ubuntu 22.04/24.04)."""

from __future__ import annotations

BASE: tuple[str, ...] = ("ca-certificates", "curl", "python3-venv", "procps")
"""curl: health checks and the keep-warm timer; python3-venv: engine, converter and hub venvs;
procps: ps/pgrep for operators and checks on the engine process."""

LLAMACPP_BUILD: tuple[str, ...] = ("build-essential", "cmake", "ccache")
"""llama.cpp's CPU build (CMake, ggml-org/llama.cpp docs/build.md); ccache makes a rebuild after a
driver upgrade cheap."""


FIREWALL: tuple[str, ...] = ("nftables",)
"""``nft``: metalserve's own table for the serving and rendezvous ports (Debian 12 and Ubuntu
22.04/24.04 ship nftables 1.0.x)."""


def packages_for(engine: str) -> tuple[str, ...]:
    return BASE + (LLAMACPP_BUILD if engine == "llamacpp" else ())
