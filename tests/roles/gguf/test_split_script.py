"""roles/gguf/files/convert_quantize.py cutting the quantized GGUF into the plan's parts, run for
real with a stand-in ``llama-gguf-split`` (``tests.faultkit.FAKE_GGUF_SPLIT``, which plans parts
by gguf-split.cpp's rule and prints its dry run in its words; ``tests/fixtures/gguf_split``
holds what the real one printed): exactly the planned parts under the planned names, one stamp
for the folder, the single file removed, a re-run that cuts nothing, a missing part made again,
and a plan the file cannot meet or a disk without room refused in one line before anything is
cut."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.faultkit import CONVERT_QUANTIZE, TRACEBACK, run_host_script
from tests.roles.gguf.test_convert_script import Host, _load_script

MB = 1000 * 1000  # llama-gguf-split's M (split_str_to_n_bytes)
TENSOR = MB  # the stand-in's tensors: 1 MB blocks of the file
HEADER = 100_000  # the stand-in's header: the first bytes, kept in part 1
F16 = 40 * MB  # the stand-in quantize keeps a quarter: a 10 MB quantized file
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gguf_split"


class SplitHost(Host):
    def __init__(self, root: Path, parts: int = 3, max_bytes: int = 6 * MB) -> None:
        super().__init__(root)
        self.parts, self.max_bytes = parts, max_bytes
        self.folder = self.gguf / "tiny-Q4_K_M-parts"
        self.prefix = self.folder / "tiny-Q4_K_M"
        self.names = [f"tiny-Q4_K_M-{k:05d}-of-{parts:05d}.gguf" for k in range(1, parts + 1)]
        self.runs = root / "split-runs"

    @property
    def args(self) -> list[str]:
        return [
            *super().args,
            *("--gguf-split", str(self.quantize.with_name("llama-gguf-split"))),
            *("--split-prefix", str(self.prefix), "--split-parts", str(self.parts)),
            *("--split-first", str(self.folder / self.names[0])),
            *("--split-max-bytes", str(self.max_bytes), "--split-estimate", str(F16 // 4)),
        ]  # fmt: skip

    def env(self, converter: str = "ok") -> dict[str, str]:
        return {**super().env(converter), "FAKE_F16_BYTES": str(F16),
                "FAKE_TENSOR_BYTES": str(TENSOR), "FAKE_HEADER_BYTES": str(HEADER),
                "FAKE_SPLIT_RUNS": str(self.runs)}  # fmt: skip

    def run_unsplit(self) -> subprocess.CompletedProcess[str]:
        """The same conversion with no split asked for."""
        return run_host_script(CONVERT_QUANTIZE, super().args, self.env())

    def split_runs(self) -> int:
        return len(self.runs.read_text().splitlines()) if self.runs.exists() else 0


def test_the_quantized_file_is_cut_into_the_planned_parts_once(tmp_path: Path) -> None:
    host = SplitHost(tmp_path)
    first = host.run()
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert (result["changed"], result["parts"]) == (True, 3)
    assert result["out"] == str(host.folder / host.names[0])  # what the service is given
    assert sorted(p.name for p in host.folder.iterdir()) == host.names
    # 10 MB: 100 kB of header, then 9.9 tensors of 1 MB. Shares of 3 MB make 4 parts (3+3+3+0.9),
    # 4 MB is the smallest size that makes 3: 4 tensors, 4 tensors, the 1.9 MB left.
    quantized = F16 // 4
    sizes = [(host.folder / n).stat().st_size for n in host.names]
    assert sizes == [HEADER + 4 * TENSOR, 4 * TENSOR, quantized - HEADER - 8 * TENSOR]
    stamp = json.loads((host.gguf / "tiny-Q4_K_M-parts.stamp.json").read_text())
    assert (stamp["parts"], stamp["bytes"], stamp["type"]) == (3, quantized, "Q4_K_M")
    assert host.leftovers() == ["tiny-Q4_K_M-parts", "tiny-Q4_K_M-parts.stamp.json"]
    assert host.split_runs() == 1

    again = host.run()
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] is False
    assert host.split_runs() == 1


def test_a_missing_part_is_made_again(tmp_path: Path) -> None:
    host = SplitHost(tmp_path)
    assert host.run().returncode == 0
    (host.folder / host.names[1]).unlink()
    again = host.run()
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] is True
    assert sorted(p.name for p in host.folder.iterdir()) == host.names
    assert host.split_runs() == 2


def test_a_file_the_planned_parts_cannot_hold_is_refused_before_cutting(tmp_path: Path) -> None:
    """2 parts of at most 3 MB for a 10 MB file: the estimate was far off. The unit will name
    part 1 of 2, so no other count will do."""
    host = SplitHost(tmp_path, parts=2, max_bytes=3 * MB)
    refused = host.run()
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and TRACEBACK not in refused.stderr, refused.stderr
    assert refused.stderr.startswith(
        "error: llama-gguf-split: expected 2 parts of at most 0.1 GB each, named as the service "
        "is given them (the plan's estimate: 0.1 GB), found tiny-Q4_K_M.gguf weighs 0.1 GB and "
        "needs more than 2 parts of 0.1 GB — fix: "
    )
    assert host.split_runs() == 0
    assert host.leftovers() == ["tiny-Q4_K_M.gguf", "tiny-Q4_K_M.gguf.stamp.json"]  # kept


def test_too_little_room_for_the_parts_is_refused_before_cutting(tmp_path: Path) -> None:
    host = SplitHost(tmp_path)
    unsplit = host.run_unsplit()
    assert unsplit.returncode == 0, unsplit.stderr  # quantized and stamped, not cut
    inject = (
        "import shutil\n"
        "_usage = shutil.disk_usage\n"
        "def _nearly_full(path):\n"
        "    return _usage(path)._replace(free=1_000_000)\n"
        "shutil.disk_usage = _nearly_full\n"
    )
    refused = host.run(inject=inject)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and TRACEBACK not in refused.stderr, refused.stderr
    needed = sum(
        (mb + 1) * MB + tensors * 32  # each part's MB rounded down, one more, and its padding
        for tensors, mb in [(4, (HEADER + 4 * TENSOR) // MB), (4, 4), (2, 1)]
    )
    assert refused.stderr.startswith(
        "error: llama-gguf-split: expected room for tiny-Q4_K_M-parts (the 3 parts its dry run "
        "plans: the quantized file's size again), found 0.0 GB free — fix: free space at "
        f"{host.gguf} until {(needed + 10**8 - 1) // 10**8 / 10:.1f} GB are free"
    )
    assert host.split_runs() == 0
    assert host.leftovers() == ["tiny-Q4_K_M.gguf", "tiny-Q4_K_M.gguf.stamp.json"]


def test_the_dry_run_llama_gguf_split_printed_is_read_as_its_parts() -> None:
    """What the real llama-gguf-split (llama.cpp 0c1e57098, built from the pinned source) printed
    for the tiny MoE's GGUF at --split-max-size 2M, and the parts it then wrote."""
    script = _load_script()
    printed = (FIXTURES / "dry-run-2M.txt").read_text()
    written = json.loads((FIXTURES / "written-2M.json").read_text())
    (count,) = script.DRY_RUN_COUNT.findall(printed)
    parts = script.DRY_RUN_PART.findall(printed)
    assert int(count) == len(parts) == len(written["parts"]) > 1
    for (tensors, mb), part in zip(parts, written["parts"], strict=True):
        # each part as written is within what the script counts for it
        assert int(mb) * MB <= part["bytes"] <= (int(mb) + 1) * MB + int(tensors) * 32
    names = [part["name"] for part in written["parts"]]
    assert names == [
        f"{written['prefix']}-{k:05d}-of-{len(names):05d}.gguf" for k in range(1, len(names) + 1)
    ]


def test_split_options_come_all_together(tmp_path: Path) -> None:
    host = SplitHost(tmp_path)
    partial = [a for a in host.args if a not in ("--split-estimate", str(F16 // 4))]
    run = run_host_script(CONVERT_QUANTIZE, partial, host.env())
    assert run.returncode == 2
    assert "--gguf-split and every --split-* option together" in run.stderr


def test_the_real_tools_made_the_planned_parts_and_llama_server_loaded_part_1() -> None:
    """The script run with the real converter, llama-quantize and llama-gguf-split built from the
    pinned source (fixture ``real-run-3-parts.json``): the names the core plans
    (``metalserve.gguf.split_path``) are the ones the tool wrote, and llama-server given part 1
    found the other two; given a link to part 1 under another name it refused."""
    from metalserve.gguf import split_path

    run = json.loads((FIXTURES / "real-run-3-parts.json").read_text())
    args = {flag: run["args"][i + 1] for i, flag in enumerate(run["args"][:-1])
            if flag.startswith("--split-")}  # fmt: skip
    prefix, parts = args["--split-prefix"], int(args["--split-parts"])
    planned = [split_path(prefix, k, parts) for k in range(1, parts + 1)]
    assert args["--split-first"] == planned[0] == run["first_run"]["out"]
    assert sorted(run["parts"]) == [Path(p).name for p in planned]
    assert max(run["parts"].values()) <= int(args["--split-max-bytes"])
    assert run["stamp"]["bytes"] == sum(run["parts"].values()) == run["first_run"]["bytes"]
    assert run["second_run"]["changed"] is False
    log = run["llama_server_part_1"]["log"]
    assert f"I llama_model_loader: additional {parts - 1} GGUFs metadata loaded." in log
    assert any(line.endswith(f"split.count u16              = {parts}") for line in log)
    assert run["llama_server_part_1"]["health"] == 200
    assert "invalid split file name" in run["llama_server_renamed_link"][0]
