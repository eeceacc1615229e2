"""The API key made on the control host when an inventory names none: private, made once."""

from __future__ import annotations

import stat
from pathlib import Path

from roles.layout import ensure_generated_key


def test_a_generated_key_is_private_strong_and_made_once(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "cluster.api_key"
    ensure_generated_key(key)
    first = key.read_text()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(first.strip()) >= 43  # 32 random bytes, base64url
    ensure_generated_key(key)
    assert key.read_text() == first, "a second deploy must not rotate the key under the clients"


def test_two_clusters_get_different_keys(tmp_path: Path) -> None:
    a, b = tmp_path / "a.api_key", tmp_path / "b.api_key"
    ensure_generated_key(a)
    ensure_generated_key(b)
    assert a.read_text() != b.read_text()
