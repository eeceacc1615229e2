"""The llama.cpp source tarball: trimmed and byte-for-byte reproducible.

The download of the real sdist is exercised in tests/e2e/test_artefacts.py.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from metalserve.artefacts.llamacpp import keep_in_source, write_trimmed_tarball
from metalserve.artefacts.pins import LLAMACPP_SDIST


def _fake_tree(root: Path) -> Path:
    tree = root / "llama.cpp"
    for name, content in {
        "CMakeLists.txt": "project(llama)\n",
        "convert_hf_to_gguf.py": "#!/usr/bin/env python3\n",
        "tools/server/server.cpp": "int main() {}\n",
        "gguf-py/gguf/__init__.py": "",
        "models/templates/chatml.jinja": "{{ messages }}\n",
        "models/ggml-vocab-gpt-2.gguf": "GGUF" * 100,
        "models/ggml-vocab-gpt-2.gguf.inp": "text\n",
        "docs/build.md": "# build\n",
        "media/logo.png": "png",
        ".git/HEAD": "ref: refs/heads/master\n",
        ".github/workflows/ci.yml": "on: push\n",
    }.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (tree / "convert_hf_to_gguf.py").chmod(0o700)
    return tree


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("CMakeLists.txt", True),
        ("convert_hf_to_gguf.py", True),
        ("gguf-py/gguf/constants.py", True),
        ("models/templates/chatml.jinja", True),
        ("models/ggml-vocab-llama-bpe.gguf", False),
        ("models/ggml-vocab-llama-bpe.gguf.out", False),
        ("docs/build.md", False),
        (".git/config", False),
        ("media/llama1-logo.png", False),
    ],
)
def test_the_trim_keeps_what_build_and_conversion_need(path: str, kept: bool) -> None:
    assert keep_in_source(PurePosixPath(path)) is kept


def test_the_tarball_has_one_top_folder_and_no_trimmed_files(tmp_path: Path) -> None:
    out = tmp_path / "src.tar.gz"
    write_trimmed_tarball(_fake_tree(tmp_path), "llama.cpp-0c1e57098", out)

    with tarfile.open(out) as archive:
        names = archive.getnames()
        script = archive.getmember("llama.cpp-0c1e57098/convert_hf_to_gguf.py")
        owners = {(member.uid, member.gid, member.uname) for member in archive.getmembers()}

    assert {name.split("/")[0] for name in names} == {"llama.cpp-0c1e57098"}
    assert "llama.cpp-0c1e57098/tools/server/server.cpp" in names
    assert "llama.cpp-0c1e57098/models/templates/chatml.jinja" in names
    assert not [name for name in names if "docs" in name or ".git" in name or ".gguf" in name]
    assert script.mode == 0o755
    assert owners == {(0, 0, "")}


def test_the_same_tree_gives_the_same_bytes(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path)
    first, second = tmp_path / "1.tar.gz", tmp_path / "2.tar.gz"
    write_trimmed_tarball(tree, "top", first)
    write_trimmed_tarball(tree, "top", second)

    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )


def test_the_pin_names_the_vendored_commit() -> None:
    assert LLAMACPP_SDIST.requirement == "llama-cpp-python==0.3.36"
    assert LLAMACPP_SDIST.llamacpp_commit == "0c1e57098"
    assert len(LLAMACPP_SDIST.sdist_sha256) == 64
