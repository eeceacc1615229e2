from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty METALSERVE_CACHE."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("METALSERVE_CACHE", str(cache))
    return cache
