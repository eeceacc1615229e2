"""``metalserve bundle verify``: one line per problem, exit 1; a bundle as built passes."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from metalserve.catalog import pins
from metalserve.cli import main
from tests.bundle.conftest import CPU_HOST, fake_bundle, needs_of, write_inventory

HOSTS = {"node-1": CPU_HOST}


def _verify(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["bundle", "verify", *args])
    return result.exit_code, result.output.splitlines()


def _bundle(tmp_path: Path, **kw: object) -> Path:
    root = tmp_path / "bundle"
    fake_bundle(root, needs_of(HOSTS), marker=False, **kw)  # type: ignore[arg-type]
    return root


def test_a_bundle_as_written_verifies(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    inventory = write_inventory(tmp_path / "inv.py", HOSTS)
    code, lines = _verify(str(root), "--inventory", str(inventory))
    assert code == 0, lines
    assert lines[-1].startswith(f"{root}: ok")


def test_missing_truncated_and_altered_files_are_each_named_once(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    weights = sorted((root / "models").rglob("*.bin"))[0]
    wheels = sorted((root / "wheels").glob("*.bin"))
    truncated, altered = wheels[0], wheels[1]
    weights.unlink()
    truncated.write_bytes(truncated.read_bytes()[:-3])
    data = bytearray(altered.read_bytes())
    data[0] ^= 0x20  # same size, one bit flipped
    altered.write_bytes(bytes(data))
    code, lines = _verify(str(root))
    assert code == 1
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    assert lines == sorted(
        [
            f"{root}: {rel(weights)}: missing",
            f"{root}: {rel(truncated)}: truncated or grown: {len(truncated.read_bytes())} bytes, "
            f"the manifest says {len(truncated.read_bytes()) + 3}",
            f"{root}: {rel(altered)}: altered: its sha256 differs from the manifest's",
        ],
        key=lambda line: line.split(": ")[1],
    )


def test_a_file_put_into_the_bundle_is_named(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    (root / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"x")
    code, lines = _verify(str(root))
    assert code == 1
    assert lines == [f"{root}: wheels/evil-1.0-py3-none-any.whl: not in the manifest"]


def test_a_bundle_for_other_pins_or_hosts_is_named(tmp_path: Path) -> None:
    needs = needs_of(HOSTS)
    root = _bundle(tmp_path, pins={**needs.pins, "llama.cpp": "0000000"})
    inventory = write_inventory(tmp_path / "inv.py", {"node-2": CPU_HOST})
    code, lines = _verify(str(root), "--inventory", str(inventory))
    assert code == 1
    assert lines == [
        f"{root}: pin llama.cpp: the inventory needs {pins.LLAMA_CPP.version}, the bundle was "
        "built for 0000000",
        f"{root}: hosts: the bundle was built for node-1, the inventory has node-2",
    ]


def test_a_folder_that_is_no_bundle_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "bundle.json" in result.output
    assert "Traceback" not in result.output
