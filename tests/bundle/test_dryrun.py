"""--dry-run sizes: what the index states (PEP 700 ``size``), apt's ``Packages`` Size, "unknown"
where nothing states it, an unreachable source in one line — never a download, never a hang."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metalserve.bundle.apt import parse_uris
from metalserve.bundle.build import _llamacpp, dry_run_lines, inventory_needs
from metalserve.bundle.fetch import Fetch, Resolved, human
from metalserve.bundle.weights import resolve_weights
from metalserve.bundle.wheels import report_fetches, sized
from metalserve.catalog.nvidia_stack import Distro
from metalserve.offline import BundleInput
from metalserve.target import Target
from tests.bundle.conftest import CPU_HOST, needs_of, write_inventory

PAGES = Path(__file__).parents[1] / "fixtures" / "pypi"


def _page(project: str) -> dict:
    return json.loads((PAGES / project / "index.html").read_text())


def _size(project: str, filename: str) -> int:
    return next(int(f["size"]) for f in _page(project)["files"] if f["filename"] == filename)


@pytest.fixture
def index() -> Iterator[str]:
    """The recorded PyPI pages, served as a PEP 691 index."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(PAGES))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_wheel_sizes_are_the_ones_the_index_states(index: str) -> None:
    wheel = "vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl"
    hub = "huggingface_hub-2.4.0-py3-none-any.whl"
    found = sized(
        [
            Fetch(dest=f"wheels/{wheel}", url=f"https://files.pythonhosted.org/x/{wheel}"),
            Fetch(dest=f"wheels/{hub}", url=f"https://files.pythonhosted.org/x/{hub}"),
            Fetch(dest="wheels/unlisted-1.0-py3-none-any.whl", url="https://x/unlisted.whl"),
        ],
        index,
    )
    assert [f.size for f in found] == [_size("vllm", wheel), _size("huggingface-hub", hub), None]


def test_the_llamacpp_source_is_sized_by_its_sdist(index: str) -> None:
    need = BundleInput(id="source/llama.cpp", kind="source", items=("x",), dest="sources/l.tar.gz")
    resolved = _llamacpp(need, index)
    assert resolved.known_bytes == _size("llama-cpp-python", "llama_cpp_python-0.3.36.tar.gz")


def test_an_unreachable_index_leaves_the_size_unknown_quickly() -> None:
    started = time.monotonic()
    (found,) = sized([Fetch(dest="wheels/a-1-py3-none-any.whl", url="https://x/a.whl")],
                     "http://127.0.0.1:9")  # fmt: skip
    assert found.size is None
    assert time.monotonic() - started < 30


def test_a_pip_report_lists_each_wheel_with_its_sha256() -> None:
    # the shape of pip's installation report (pip docs, "Installation Report", version 1)
    report = {
        "version": "1",
        "install": [
            {
                "download_info": {
                    "url": "https://files.pythonhosted.org/packages/aa/bb/huggingface_hub-2.4.0-py3-none-any.whl",
                    "archive_info": {"hashes": {"sha256": "ab" * 32}},
                },
                "metadata": {"name": "huggingface_hub", "version": "2.4.0"},
            }
        ],
    }
    (fetch,) = report_fetches(report)
    assert fetch.dest == "wheels/huggingface_hub-2.4.0-py3-none-any.whl"
    assert fetch.sha256 == "ab" * 32


def test_apt_print_uris_gives_each_deb_its_size_and_sha256() -> None:
    # as `apt-get --print-uris -o Acquire::ForceHash=SHA256 install curl` printed it (Debian 12)
    line = (
        "'http://deb.debian.org/debian/pool/main/g/gcc-12/gcc-12-base_12.2.0-14%2bdeb12u1_amd64.deb' "
        "gcc-12-base_12.2.0-14+deb12u1_amd64.deb 37596 "
        "SHA256:1896a2aacf4ad681ff5eacc24a5b0ca4d5d9c9b9c9e4b6de5197bc1e116ea619"
    )
    (fetch,) = parse_uris(
        f"{line}\nnot a uri line\n", Target(release=Distro.DEBIAN_12, arch="amd64")
    )
    assert fetch.dest == "apt/debian12-amd64/gcc-12-base_12.2.0-14+deb12u1_amd64.deb"
    assert fetch.size == 37596
    assert fetch.sha256 == "1896a2aacf4ad681ff5eacc24a5b0ca4d5d9c9b9c9e4b6de5197bc1e116ea619"


def test_the_dry_run_is_one_line_per_input_and_a_known_total() -> None:
    needs = needs_of({"node-1": CPU_HOST})
    by_kind: dict[str, BundleInput] = {}
    for need in needs.inputs:
        by_kind.setdefault(need.kind, need)  # the first of each kind
    shared = Fetch(dest="wheels/six-1.16.0-py2.py3-none-any.whl", url="u", size=11_000)
    resolved = [
        Resolved(
            by_kind["apt"],
            "http://deb.debian.org/debian",
            (Fetch(dest="apt/x/a.deb", url="u", size=2_000_000),),
        ),  # fmt: skip
        Resolved(by_kind["wheels"], "idx", (shared, Fetch(dest="wheels/b.whl", url="u"))),
        Resolved(needs.inputs[2], "idx", (shared,)),
        Resolved(
            by_kind["weights"],
            "https://huggingface.co/x",
            problem="unreachable here: size unknown (huggingface.co: Name or service not known)",
        ),  # fmt: skip
    ]
    lines = dry_run_lines(needs, resolved)
    assert lines[0].startswith(
        "apt      apt/debian12-amd64/distro: 1 files, 2.0 MB from http://deb"
    )
    assert ", 1 of unknown size from idx" in lines[1]
    assert lines[3] == (
        "weights  weights/metalserve/tiny-moe: unreachable here: size unknown (huggingface.co: "
        "Name or service not known)"
    )
    # the shared wheel counts once
    assert lines[-1] == (
        f"total    {human(2_000_000 + 11_000)} known over 3 files; size unknown for 2 input(s)"
    )


def test_a_wheel_with_a_local_version_on_disk_is_sized_from_the_file(tmp_path: Path) -> None:
    # pip's report quotes a local version's "+" in a file URL (torch-2.13.0%2Bcpu-…)
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"w" * 1234)
    assert "%2B" in wheel.as_uri()
    (found,) = sized([Fetch(dest=f"wheels/{wheel.name}", url=wheel.as_uri())], "http://127.0.0.1:9")
    assert found.size == 1234


def _local_inventory(tmp_path: Path, checkpoint: Path) -> Path:
    data = {**CPU_HOST, "model": {"repo_id": "metalserve/tiny-moe", "local_dir": str(checkpoint)},
            "sources": {"bundle": str(tmp_path / "bundle")}}  # fmt: skip
    return write_inventory(tmp_path / "inv.py", {"node-1": data})


def test_a_checkpoint_on_the_control_host_is_bundled_from_there(tmp_path: Path) -> None:
    checkpoint = tmp_path / "tiny-moe"
    checkpoint.mkdir()
    config = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
              "num_attention_heads": 4, "vocab_size": 1000}  # fmt: skip
    (checkpoint / "config.json").write_text(json.dumps(config))
    (checkpoint / "model.safetensors").write_bytes(b"s" * 300)
    needs, local = inventory_needs(_local_inventory(tmp_path, checkpoint))
    (need,) = [n for n in needs.inputs if n.kind == "weights"]
    # the inventory deploys from the bundle: its checkpoint is still read from local_dir
    assert local == {need.id: checkpoint}
    resolved = resolve_weights(need, "http://127.0.0.1:9", None, local[need.id])
    assert resolved.problem is None
    assert {(f.dest, f.size) for f in resolved.fetches} == {
        (f"{need.dest}/config.json", len(json.dumps(config))),
        (f"{need.dest}/model.safetensors", 300),
    }
