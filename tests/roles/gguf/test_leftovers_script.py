"""roles/gguf/files/convert_quantize.py removing what earlier conversions of the same checkpoint
left (``--leftover``, named by ``metalserve.gguf.leftovers`` from the folder as the host lists
it), run for real with the llama.cpp stand-ins: a split plan changed to one file keeps its parts
while the new file is made, and loses them once the new file is stamped; a failed or killed
conversion removes nothing; files the conversion never wrote stay; a temporary output whose run
is alive stays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from metalserve.engines.llamacpp import QUANT_BITS_PER_WEIGHT
from metalserve.gguf import leftovers
from tests.faultkit import CONVERT_QUANTIZE, host_script_argv, run_host_script
from tests.roles.gguf.test_split_script import SplitHost

UNRELATED = {
    "tiny-Q4_K_M.gguf.bak": b"an operator's copy",
    "tiny2-Q4_K_M.gguf": b"another checkpoint's file",
    "notes.txt": b"kept",
}


def listing(folder: Path) -> dict[str, int]:
    """The folder as ``roles.sizes.FileSizes`` reports it: every regular file by its path in the
    folder, with its size."""
    return {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def left_over(host: SplitHost, quant: str = "Q4_K_M") -> dict[str, int]:
    """What the core names as left over for the unsplit plan at ``quant``."""
    out = f"tiny-{quant}.gguf"
    return leftovers(listing(host.gguf), "tiny", QUANT_BITS_PER_WEIGHT, out, f"{out}.lock")


def unsplit_args(host: SplitHost, names: dict[str, int]) -> list[str]:
    base = host.args[: host.args.index("--gguf-split")]
    return [*base, *(a for name in names for a in ("--leftover", str(host.gguf / name)))]


def split_then_unrelated(tmp_path: Path) -> SplitHost:
    """A host whose conversion was split into parts, with files of others beside them."""
    host = SplitHost(tmp_path)
    first = host.run()
    assert first.returncode == 0, first.stderr
    for name, content in UNRELATED.items():
        (host.gguf / name).write_bytes(content)
    return host


def test_split_to_one_file_removes_the_parts_only_once_the_file_is_stamped(
    tmp_path: Path,
) -> None:
    host = split_then_unrelated(tmp_path)
    before = listing(host.gguf)
    stale = left_over(host)
    assert set(stale) == {"tiny-Q4_K_M-parts", "tiny-Q4_K_M-parts.stamp.json"}
    parts_bytes = sum(v for k, v in before.items() if k.startswith("tiny-Q4_K_M-parts/"))

    failed = run_host_script(CONVERT_QUANTIZE, unsplit_args(host, stale), host.env("full-disk"))
    assert failed.returncode == 2, failed.stderr
    assert listing(host.gguf) == before  # the parts the service runs on, untouched

    done = run_host_script(CONVERT_QUANTIZE, unsplit_args(host, stale), host.env())
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["changed"] is True
    assert result["removed"] == sorted(stale)
    assert result["freed_bytes"] == parts_bytes + before["tiny-Q4_K_M-parts.stamp.json"]
    assert sorted(listing(host.gguf)) == sorted(
        ["tiny-Q4_K_M.gguf", "tiny-Q4_K_M.gguf.stamp.json", *UNRELATED]
    )
    for name, content in UNRELATED.items():
        assert (host.gguf / name).read_bytes() == content
    assert left_over(host) == {}  # the next deploy passes nothing: it removes nothing


def test_a_killed_conversion_removes_nothing_and_its_partial_is_left_over(tmp_path: Path) -> None:
    host = split_then_unrelated(tmp_path)
    stale = left_over(host)
    proc = subprocess.Popen(
        host_script_argv(CONVERT_QUANTIZE, unsplit_args(host, stale)),
        env=host.env("hang"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not any(n.endswith(".partial") for n in host.leftovers()):
        assert time.monotonic() < deadline and proc.poll() is None, "the converter never started"
        time.sleep(0.1)
    assert set(stale) <= set(host.leftovers())  # while it converts, the parts stay
    os.killpg(proc.pid, signal.SIGKILL)  # as a killed deploy leaves it
    proc.wait()
    assert set(stale) <= set(host.leftovers())
    (partial,) = [n for n in host.leftovers() if n.endswith(".partial")]
    assert partial in left_over(host)  # the name the script gave it is one the core knows


def test_a_temporary_output_whose_run_is_alive_stays(tmp_path: Path) -> None:
    host = SplitHost(tmp_path)
    assert host.run_unsplit().returncode == 0
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        for pid in (alive.pid, gone.pid):
            (host.gguf / f".tiny-Q8_0.gguf.{pid}.partial").write_bytes(bytes(1000))
        stale = left_over(host)
        assert sorted(stale) == sorted(
            f".tiny-Q8_0.gguf.{p}.partial" for p in (alive.pid, gone.pid)
        )
        run = run_host_script(CONVERT_QUANTIZE, unsplit_args(host, stale), host.env())
    finally:
        alive.kill()
        alive.wait()
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["changed"] is False  # current: only the removal ran
    assert result["removed"] == [f".tiny-Q8_0.gguf.{gone.pid}.partial"]
    assert result["kept_in_use"] == [f".tiny-Q8_0.gguf.{alive.pid}.partial"]
    assert result["freed_bytes"] == 1000


def test_a_leftover_outside_the_folder_or_the_served_output_is_refused(tmp_path: Path) -> None:
    host = SplitHost(tmp_path)
    assert host.run_unsplit().returncode == 0
    outside = tmp_path / "elsewhere.gguf"
    outside.write_bytes(b"x")
    base = unsplit_args(host, {})
    for path in (outside, host.out, host.gguf / "tiny-Q4_K_M.gguf.stamp.json"):
        run = run_host_script(CONVERT_QUANTIZE, [*base, "--leftover", str(path)], host.env())
        assert run.returncode == 2
        assert f"--leftover {path}: expected a name in {host.gguf}" in run.stderr
        assert path.exists()
