"""The offline inputs as the control host makes them (downloads from PyPI once, then cached).

The whole chain that uses them — mirror → fetch → convert → quantize → llama-server — runs on real
sandbox hosts in ``test_serve.py``.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from metalserve.artefacts.llamacpp import llamacpp_source

pytestmark = pytest.mark.e2e


def test_the_source_tarball_is_reproducible_and_holds_the_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = llamacpp_source()
    monkeypatch.setenv("METALSERVE_CACHE", str(tmp_path))
    second = llamacpp_source()
    assert first.sha256 == second.sha256
    assert first.size < 20 * 1024 * 1024
    with tarfile.open(first.tarball) as archive:
        names = set(archive.getnames())
    assert f"{first.top_dir}/convert_hf_to_gguf.py" in names
    assert f"{first.top_dir}/tools/server/CMakeLists.txt" in names
