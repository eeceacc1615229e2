"""The push of bundle folders (``roles.push``): rsync's change list parsed from real output, the big
files shared among streams, the ssh line, and real pushes to this machine standing in for a host
(``tests/fixtures/rsync/local_rsh.sh`` as the remote shell): what arrives, with which owner, modes
and times, a second push that moves nothing and yields no command, a file cut short sent again
alone, a file that differs from the manifest removed and named, and the files.sync fallback left
so that rsync finds it in place."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any
from unittest import mock

import pyinfra.api.host as pyinfra_host
import pytest
from pyinfra.api import FileUploadCommand, StringCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.server import Which

import roles.push as push_module
from metalserve.bundle.manifest import file_records, write_manifest
from metalserve.offline import BUNDLE_FORMAT, BundleManifest
from roles.push import (
    DIR_MODE,
    FILE_MODE,
    STREAM_MIN_BYTES,
    Itemized,
    PushCommand,
    _rsh_word,
    itemize,
    parse_itemized,
    push,
    rsync_argv,
    ssh_command,
    stream_lists,
    touch_command,
    verify_command,
    why_not_rsync,
)
from tests.fixtures.rsync.capture import FILES
from tests.opcases import make_state, render_command

RSYNC_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rsync"
RSH = RSYNC_FIXTURES / "local_rsh.sh"
needs_rsync = pytest.mark.skipif(shutil.which("rsync") is None, reason="no rsync on this machine")


def fixture_lines(name: str) -> list[str]:
    return (RSYNC_FIXTURES / f"{name}.txt").read_text().splitlines()


def test_the_first_push_lists_every_file_of_the_folder_as_sent_with_its_size() -> None:
    changes = parse_itemized(fixture_lines("first"))
    assert {c.path: c.length for c in changes if c.sends} == FILES
    dirs = {c.path for c in changes if not c.sends}
    assert dirs == {"./", "tokenizer/"}  # created, nothing sent


def test_a_folder_in_place_lists_no_change() -> None:
    assert parse_itemized(fixture_lines("rerun")) == []


def test_changes_on_the_host_are_named_each_as_rsync_will_mend_it() -> None:
    """``capture.alter``: shard 2 cut short, config.json touched, tokenizer removed (sent again);
    the index made world-writable (its mode mended, nothing sent); a stray file (deleted)."""
    changes = {c.path: c for c in parse_itemized(fixture_lines("changed"))}
    sent = {path for path, c in changes.items() if c.sends}
    assert sent == {"model-00002-of-00002.safetensors", "config.json", "tokenizer/tokenizer.json"}
    assert (
        changes["model-00002-of-00002.safetensors"].length
        == FILES["model-00002-of-00002.safetensors"]
    )
    assert not changes["model.safetensors.index.json"].sends
    assert changes["stray.bin"].item.startswith("*deleting")
    assert len(changes) == 5


def test_messages_that_are_not_changes_are_left_out() -> None:
    lines = fixture_lines("first")
    assert any(line.startswith("created directory") for line in lines)
    assert len(parse_itemized(lines)) == len(FILES) + 2  # the files and the two directories


def _sent(path: str, length: int) -> Itemized:
    return Itemized(item="<f+++++++++", length=length, path=path)


def test_big_files_are_shared_among_the_streams_by_bytes() -> None:
    sizes = [9, 7, 5, 4, 3, 3, 2]  # in units of STREAM_MIN_BYTES
    changes = [_sent(f"shard{i}", s * STREAM_MIN_BYTES) for i, s in enumerate(sizes)]
    changes += [_sent("config.json", 100), Itemized(item=".f...p.....", length=10**12, path="x")]
    lists = stream_lists(changes, streams=3)
    assert len(lists) == 3
    assert sorted(p for names in lists for p in names) == sorted(f"shard{i}" for i in range(7))
    length = {c.path: c.length for c in changes}
    loads = [sum(length[p] for p in names) for names in lists]
    assert max(loads) - min(loads) <= max(sizes) * STREAM_MIN_BYTES
    assert max(loads) <= sum(sizes) * STREAM_MIN_BYTES / 3 + max(sizes) * STREAM_MIN_BYTES


def test_one_big_file_or_none_takes_no_stream() -> None:
    assert stream_lists([_sent("a", STREAM_MIN_BYTES), _sent("b", STREAM_MIN_BYTES - 1)]) == []
    assert stream_lists([_sent("a", 10), _sent("b", 20)]) == []


def test_the_ssh_line_carries_the_hosts_connection_settings_and_no_password() -> None:
    data = {
        "ssh_user": "root",
        "ssh_port": 2201,
        "ssh_key": "/keys/id_ed25519",
        "ssh_config_file": "/run/sandbox/ssh_config",
        "ssh_known_hosts_file": "/run/sandbox/known_hosts",
        "ssh_strict_host_key_checking": "yes",
        "ssh_password": "hunter2",
    }
    words = ssh_command(data).split(" ")
    assert words[:3] == ["ssh", "-o", "BatchMode=yes"]
    pairs = set(zip(words, words[1:], strict=False))
    assert ("-o", "UserKnownHostsFile=/run/sandbox/known_hosts") in pairs
    assert ("-o", "StrictHostKeyChecking=yes") in pairs
    assert ("-F", "/run/sandbox/ssh_config") in pairs
    assert ("-p", "2201") in pairs
    assert ("-i", "/keys/id_ed25519") in pairs
    assert "hunter2" not in ssh_command(data)


@needs_rsync
def test_a_path_with_a_space_stays_one_word_for_rsync(tmp_path: Path) -> None:
    """rsync splits --rsh itself: a remote shell and a key path with spaces must survive it."""
    shell = tmp_path / "my tools" / "rsh.sh"
    shell.parent.mkdir()
    shutil.copy(RSH, shell)
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (src / "a").write_text("a\n")
    rsh = " ".join(_rsh_word(w) for w in [str(shell), "-i", str(tmp_path / "my keys" / "id")])
    done = subprocess.run(rsync_argv(str(src), f"h:{dest}/", rsh, delete=False),
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (dest / "a").read_text() == "a\n"


def test_a_word_with_both_quotes_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="expected a path without both kinds of quote"):
        _rsh_word('/keys/it\'s "odd"')


def _host_state(data: dict[str, Any]) -> Iterator[Any]:
    state, host = make_state(data)
    with ctx_state.use(state), ctx_host.use(host):
        yield host


def _which(found: str | None) -> Any:
    def get_fact(state, host, cls, args=None, kwargs=None, **_):  # noqa: ANN001
        assert cls is Which and kwargs == {"command": "rsync"}, cls
        return found

    return get_fact


@pytest.mark.parametrize(
    ("data", "control", "remote", "why"),
    [
        ({}, None, "/usr/bin/rsync", "the control host has no rsync (fix: apt install rsync"),
        ({"ssh_password": "s3cret"}, "/usr/bin/rsync", "/usr/bin/rsync", "an SSH password"),
        ({"ssh_key_password": "s3cret"}, "/usr/bin/rsync", "/usr/bin/rsync", "an SSH password"),
        ({}, "/usr/bin/rsync", None, "the host has no rsync yet"),
        ({}, "/usr/bin/rsync", "/usr/bin/rsync", None),
    ],
)
def test_why_a_host_is_not_pushed_with_rsync(
    data: dict, control: str | None, remote: str | None, why: str | None
) -> None:
    with (
        mock.patch("roles.push.control_rsync", return_value=control),
        mock.patch.object(pyinfra_host, "get_fact", _which(remote)),
    ):
        for _ in _host_state(data):
            found = why_not_rsync()
    assert (found is None) if why is None else (why in str(found) and "s3cret" not in str(found))


class CommandFailed(AssertionError):
    pass


class Pushed:
    """What one push did on this machine standing in for the host."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.listings: list[str] = []


def _run_here(command: Any, pushed: Pushed) -> None:
    """Carry out a command of the push here, as the host would."""
    if isinstance(command, PushCommand):
        log = mock.Mock()
        if not command.execute(None, log, {}):
            raise CommandFailed(str(log.log_styled.call_args))
    elif isinstance(command, FileUploadCommand):
        assert isinstance(command.src, StringIO)
        pushed.listings.append(command.src.getvalue())
        Path(command.dest).write_text(command.src.getvalue())
    elif isinstance(command, StringCommand):
        done = subprocess.run(["sh", "-c", str(command.get_raw_value())],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode:
            raise CommandFailed(done.stderr)
    else:
        raise AssertionError(f"unexpected command {command!r}")


def local_push(src: Path, dest: Path, delete: bool = False) -> Pushed:
    """``push(src, dest)`` on a host that is this machine (the remote shell runs rsync here), its
    commands carried out one by one as pyinfra would."""
    pushed = Pushed()
    with (
        mock.patch.object(pyinfra_host, "get_fact", _which("/usr/bin/rsync")),
        mock.patch("roles.push.ssh_command", return_value=str(RSH)),
    ):
        for host in _host_state({}):
            push(src=str(src), dest=str(dest), delete=delete)
            for op_hash in host.state.get_op_order():
                for command in host.state.ops[host][op_hash].command_generator():
                    pushed.commands.append(render_command(command))
                    _run_here(command, pushed)
    return pushed


def make_bundle(root: Path, files: dict[str, bytes]) -> Path:
    """A bundle holding ``files`` under models/m, with its manifest; the folder pushed."""
    folder = root / "models" / "m"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    names = [f"models/m/{name}" for name in files]
    write_manifest(root, BundleManifest(format=BUNDLE_FORMAT, hosts=(), pins={},
                   key_fingerprint=None, inputs=(), files=file_records(root, names, {})))  # fmt: skip
    return folder


CHECKPOINT = {name: os.urandom(size) for name, size in FILES.items()}


@needs_rsync
def test_a_folder_arrives_root_owned_with_sane_modes_and_its_times(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "bundle", CHECKPOINT)
    (folder / "config.json").chmod(0o600)  # the operator's umask: not what the host gets
    (folder / "tokenizer").chmod(0o777)
    dest = tmp_path / "host" / "var" / "lib" / "models" / "m"
    local_push(folder, dest)
    for name, data in CHECKPOINT.items():
        arrived = dest / name
        assert arrived.read_bytes() == data
        stat = arrived.stat()
        assert (stat.st_uid, stat.st_gid) == (0, 0)
        assert oct(stat.st_mode & 0o777) == oct(int(FILE_MODE, 8))
        assert stat.st_mtime_ns == (folder / name).stat().st_mtime_ns
    assert oct((dest / "tokenizer").stat().st_mode & 0o777) == oct(int(DIR_MODE, 8))
    os.chown(dest / "config.json", 1000, 1000)  # someone's hand on the host
    (dest / "config.json").chmod(0o666)
    mended = local_push(folder, dest)
    assert mended.commands and mended.listings == []  # attributes mended, nothing sent
    stat = (dest / "config.json").stat()
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (0, 0, int(FILE_MODE, 8))


@needs_rsync
def test_what_is_sent_is_checked_against_the_manifest(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "bundle", CHECKPOINT)
    pushed = local_push(folder, tmp_path / "host" / "m")
    expected = {f"{hashlib.sha256(data).hexdigest()}  {name}" for name, data in CHECKPOINT.items()}
    assert len(pushed.listings) == 1
    assert set(pushed.listings[0].splitlines()) == expected
    assert not (tmp_path / "host" / "m.metalserve-sha256").exists()  # cleaned up on the host


@needs_rsync
def test_a_second_push_moves_nothing_and_yields_no_command(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "bundle", CHECKPOINT)
    dest = tmp_path / "host" / "m"
    assert local_push(folder, dest, delete=True).commands
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    assert local_push(folder, dest, delete=True).commands == []
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before


@needs_rsync
def test_a_file_cut_short_on_the_host_is_sent_again_alone(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "bundle", CHECKPOINT)
    dest = tmp_path / "host" / "m"
    local_push(folder, dest)
    shard = "model-00002-of-00002.safetensors"
    with (dest / shard).open("r+b") as cut:
        cut.truncate(10)
    again = local_push(folder, dest)
    assert (dest / shard).read_bytes() == CHECKPOINT[shard]
    assert [line.split("  ")[1] for line in again.listings[0].splitlines()] == [shard]


@needs_rsync
def test_a_file_that_differs_from_the_manifest_is_removed_and_named(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "bundle", CHECKPOINT)
    altered = bytes(b ^ 1 for b in CHECKPOINT["config.json"])  # same size: only a hash tells
    (folder / "config.json").write_bytes(altered)
    dest = tmp_path / "host" / "m"
    with pytest.raises(CommandFailed) as failed:
        local_push(folder, dest)
    message = str(failed.value).strip()
    assert "\n" not in message
    assert "1 file(s) differ from the bundle manifest's sha256" in message
    assert "(config.json)" in message
    assert not (dest / "config.json").exists()  # so the next deploy sends it again
    assert (dest / "tokenizer/tokenizer.json").read_bytes() == CHECKPOINT[
        "tokenizer/tokenizer.json"
    ]


@needs_rsync
def test_big_files_go_in_parallel_streams_and_arrive_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push_module, "STREAM_MIN_BYTES", 100_000)
    folder = make_bundle(tmp_path / "bundle", CHECKPOINT)
    dest = tmp_path / "host" / "m"
    pushed = local_push(folder, dest)
    big = [n for n, s in FILES.items() if s >= 100_000]
    assert len(big) >= 2
    directories, streams = pushed.commands[0].split(" ; ")
    assert "'--include=*/' '--exclude=*'" in directories and "--delete" not in directories
    assert streams.count("--files-from=") == len(big)
    assert all((dest / n).read_bytes() == data for n, data in CHECKPOINT.items())
    assert local_push(folder, dest).commands == []


@needs_rsync
def test_files_left_by_the_files_sync_fallback_are_found_in_place(tmp_path: Path) -> None:
    """files.sync writes the content anew (today's time, directories too) as root with the push's
    modes; the push then gives the files the bundle's times, and directory times are not
    compared, so the first rsync push after it moves nothing."""
    folder = make_bundle(tmp_path / "bundle", CHECKPOINT)
    for path in folder.rglob("*"):  # built well before (rsync compares whole seconds)
        os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    dest = tmp_path / "host" / "m"
    for name in CHECKPOINT:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).parent.chmod(int(DIR_MODE, 8))
        shutil.copyfile(folder / name, dest / name)
        (dest / name).chmod(int(FILE_MODE, 8))
    argv = rsync_argv(str(folder), f"h:{dest}/", str(RSH), delete=True)
    assert {c.path for c in itemize(argv) or [] if c.sends} == set(CHECKPOINT)
    subprocess.run(["sh", "-c", touch_command(str(dest), folder, list(CHECKPOINT))], check=True)
    assert itemize(argv) == []


def test_a_password_host_is_pushed_with_files_sync_and_no_secret_in_any_command(
    tmp_path: Path,
) -> None:
    folder = make_bundle(tmp_path / "bundle", {"a.json": b"{}\n"})
    facts = {
        "files.Link": None,
        "files.Directory": None,
        "files.File": None,
        "server.TmpDir": "/tmp",
    }

    def get_fact(state, host, cls, args=None, kwargs=None, **_):  # noqa: ANN001
        return facts[f"{cls.__module__.removeprefix('pyinfra.facts.')}.{cls.__name__}"]

    with (
        mock.patch.object(pyinfra_host, "get_fact", get_fact),
        mock.patch("roles.push.control_rsync", return_value="/usr/bin/rsync"),
    ):
        for host in _host_state({"ssh_password": "s3cret-pw"}):
            push(src=str(folder), dest="/srv/m")
            op_hash = host.state.get_op_order()[0]
            commands = [
                render_command(c) for c in host.state.ops[host][op_hash].command_generator()
            ]
    assert f"upload {folder}/a.json -> /srv/m/a.json" in commands
    assert not any("rsync" in c or "s3cret-pw" in c for c in commands)
    assert any(c.startswith("touch -m -d @") and c.endswith("-- /srv/m/a.json") for c in commands)
    assert any("differ from the bundle manifest's sha256" in c for c in commands)


@pytest.mark.parametrize("hasher", ["openssl", "sha256sum"])
def test_the_host_check_names_a_file_of_another_sum_with_either_hasher(
    tmp_path: Path, hasher: str
) -> None:
    """A host without the openssl command checks with coreutils' sha256sum."""
    dest = tmp_path / "host dir"
    (dest / "sub").mkdir(parents=True)
    good, bad = b"as in the bundle\n", b"as in the bundle, or so it says\n"
    (dest / "sub" / "a b.json").write_bytes(good)
    (dest / "shard").write_bytes(bad)
    listing = tmp_path / "listing"
    listing.write_text(
        f"{hashlib.sha256(good).hexdigest()}  sub/a b.json\n"
        f"{hashlib.sha256(good).hexdigest()}  shard\n"
    )
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in {"split", "nproc", "cat", "rm", "wc", "head", "paste", "sha256sum", hasher}:
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    done = subprocess.run(["/bin/sh", "-c", verify_command(str(dest), str(listing))],
                          env={"PATH": str(tools)}, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1
    assert "1 file(s) differ" in done.stderr and "(shard)" in done.stderr
    assert not (dest / "shard").exists()
    assert (dest / "sub" / "a b.json").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "host dir"]  # listing removed
