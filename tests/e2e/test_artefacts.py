"""The offline llama.cpp path end to end on the control host, with every real part.

mirror (127.0.0.1) → fetch_weights.py in a hub venv built from the wheelhouse → convert_quantize.py
in a converter venv built from the wheelhouse → a CPU llama.cpp built from the trimmed source →
``llama-server`` on 127.0.0.1 answers ``/health`` and a completion.

Slow the first time (sdist and wheel downloads, a 10-20 min llama.cpp build on 2 cores); every
product is cached under ``$METALSERVE_CACHE``, so later runs take about a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalserve.artefacts.cache import cached_build
from metalserve.artefacts.llamacpp import llamacpp_source
from metalserve.artefacts.tinymodel import tiny_moe_checkpoint
from metalserve.artefacts.wheelhouse import converter_wheelhouse
from metalserve.hubmirror import free_port, publish, running_mirror

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FETCH = ROOT / "roles" / "weights" / "files" / "fetch_weights.py"
CONVERT = ROOT / "roles" / "gguf" / "files" / "convert_quantize.py"
REPO = "metalserve/tiny-moe"
TARGETS = ("llama-server", "llama-quantize", "llama-gguf-split")


def _venv(path: Path, wheelhouse: Path, requirements: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-compile",
         "--find-links", str(wheelhouse), "-r", str(requirements)],
        check=True, env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )  # fmt: skip
    return python


def _cpu_build(source_tarball: Path, sha256: str) -> Path:
    """A CPU build of the trimmed source, cached by the tarball's sha256 (the role does this on hosts)."""

    def build(folder: Path) -> None:
        with tarfile.open(source_tarball) as archive:
            archive.extractall(folder / "src", filter="data")
        (tree,) = (folder / "src").iterdir()
        configure = ["cmake", "-S", str(tree), "-B", str(folder / "build"), "-DGGML_NATIVE=OFF",
                     "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                     "-DLLAMA_BUILD_EXAMPLES=OFF", "-DCMAKE_BUILD_TYPE=Release"]  # fmt: skip
        subprocess.run(configure, check=True, capture_output=True)
        subprocess.run(["cmake", "--build", str(folder / "build"), "-j", str(os.cpu_count()),
                        "--target", *TARGETS], check=True, capture_output=True)  # fmt: skip
        (folder / "bin").mkdir()
        for target in TARGETS:
            shutil.copy2(folder / "build" / "bin" / target, folder / "bin" / target)
        shutil.rmtree(folder / "build")

    return cached_build("e2e-llamacpp-cpu", {"source_sha256": sha256}, build).path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-artefacts")


@pytest.fixture(scope="module")
def endpoint(workdir: Path) -> Iterator[str]:
    hub = workdir / "hub"
    hub.mkdir()
    publish(hub, REPO, tiny_moe_checkpoint(seed=0).path)
    with running_mirror(hub) as url:
        yield url


def test_the_source_tarball_is_reproducible_and_holds_the_converter(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    first = llamacpp_source()
    monkeypatch.setenv("METALSERVE_CACHE", str(tmp_path))
    second = llamacpp_source()
    assert first.sha256 == second.sha256
    assert first.size < 20 * 1024 * 1024
    with tarfile.open(first.tarball) as archive:
        names = set(archive.getnames())
    assert f"{first.top_dir}/convert_hf_to_gguf.py" in names
    assert f"{first.top_dir}/tools/server/CMakeLists.txt" in names


def test_weights_convert_quantize_and_serve(workdir: Path, endpoint: str) -> None:
    house = converter_wheelhouse()
    hub_python = _venv(workdir / "hub-venv", house.path, house.requirements("hub"))
    convert_python = _venv(workdir / "convert-venv", house.path, house.requirements("converter"))
    source = llamacpp_source()
    build = _cpu_build(source.tarball, source.sha256)
    with tarfile.open(source.tarball) as archive:
        archive.extractall(workdir / "src", filter="data")

    token = workdir / "token"
    token.write_text("not-a-real-token\n")
    token.chmod(0o600)
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN_PATH": str(token),
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip
    models = workdir / "models" / "tiny-moe"
    fetch = [str(hub_python), str(FETCH), "--repo", REPO, "--local-dir", str(models)]
    fetched = json.loads(subprocess.run(fetch, env=env, check=True, capture_output=True,
                                        text=True).stdout)  # fmt: skip
    assert (fetched["changed"], fetched["verified"]) == (True, 9)
    again = subprocess.run(fetch, env=env, check=True, capture_output=True, text=True)
    assert json.loads(again.stdout)["changed"] is False

    gguf = workdir / "gguf" / "tiny-moe.Q4_K_M.gguf"
    convert = [str(convert_python), str(CONVERT),
               "--llamacpp-src", str(workdir / "src" / source.top_dir),
               "--llamacpp-commit", source.commit, "--quantize", str(build / "bin" / "llama-quantize"),
               "--model-dir", str(models), "--f16", str(workdir / "gguf" / "tiny-moe.f16.gguf"),
               "--out", str(gguf), "--type", "Q4_K_M", "--drop-f16"]  # fmt: skip
    converted = json.loads(
        subprocess.run(convert, check=True, capture_output=True, text=True).stdout
    )
    assert converted["changed"] is True
    assert 1_000_000 < gguf.stat().st_size < 4_000_000  # 7.6 MB of f16 → ~2.3 MB of Q4_K_M
    assert not (workdir / "gguf" / "tiny-moe.f16.gguf").exists()
    rerun = subprocess.run(convert, check=True, capture_output=True, text=True)
    assert json.loads(rerun.stdout)["changed"] is False

    port = free_port()
    server = subprocess.Popen(
        [str(build / "bin" / "llama-server"), "-m", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "-c", "512", "-t", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        request = urllib.request.Request(
            f"{base}/completion",
            data=json.dumps({"prompt": "The server", "n_predict": 8}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            completion = json.loads(response.read())
        assert completion["tokens_predicted"] == 8
        assert completion["content"]
    finally:
        server.terminate()
        server.wait(timeout=10)
