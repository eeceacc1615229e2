"""Bundle folders onto a host with rsync over SSH: only what is missing or changed, at link speed,
checked against the bundle's manifest, owned by root. One helper for every role that carries
bundle contents (the apt repository, the wheelhouse, a model snapshot).

What an operator can expect of ``push(src=..., dest=...)``:

* **Link speed.** rsync runs on the control host through the same ``ssh`` the operator would type
  (the host's ``ssh_hostname``, ``ssh_user``, ``ssh_port``, ``ssh_key``, ``ssh_config_file``,
  ``ssh_known_hosts_file``, ``ssh_strict_host_key_checking``, and ``BatchMode=yes``: the line
  pyinfra's own ``files.rsync`` builds, here as an argument list with no shell) and sends whole
  files (``--whole-file``: on a site's link the delta algorithm costs more CPU than it saves
  bytes). One OpenSSH connection runs on one core, so files of ``STREAM_MIN_BYTES`` or more
  (checkpoint shards) go in up to ``STREAMS`` rsyncs at once, each its own connection; then one
  rsync over the whole folder carries the small files, the deletions and the attributes, and finds
  the big files in place.
* **A second deploy is a no-op.** ``rsync --dry-run --itemize-changes`` first lists what differs by
  rsync's own quick check (size and modification time, which the push keeps; owner and mode):
  nothing listed, no command, no change reported, no byte moved. Directory times are not kept
  (``--omit-dir-times``): files.sync leaves its own, and they tell nothing about the files.
* **Checked against the manifest.** Each file sent is hashed on the host, on all its cores, and
  compared with the sha256 the bundle's ``bundle.json`` (the nearest one above ``src``) records; a
  file that differs is removed, so the next deploy sends it again, and the operation fails
  naming it. Files not sent are not hashed again: ``rsync --checksum`` would read every byte on
  both ends on every deploy (hours for 700 GB), and a file in place already passed this check when
  it was sent. The wire itself is covered by rsync's checksum of every file it transfers. A folder
  outside any bundle has that transfer checksum only.
* **Sane on the host.** Directories 0755, files 0644, owner root:root (``--chown``: the remote
  rsync runs as root, or under ``sudo -n`` with ``_sudo``), whatever the control host's umask and
  owners; links within the folder stay links, links out of it are copied as the files they point
  to; a ``.NAME.partial`` left by an interrupted ``bundle build`` is not carried; with ``delete``
  what the bundle no longer holds is removed from the host.
* **No secrets in argv.** Only options and paths reach rsync's and ssh's command lines. A host
  reached with ``ssh_password`` or ``ssh_key_password`` is pushed with ``files.sync`` instead (ssh
  takes those only from a terminal), as is one of another connector.
* **rsync on both ends, else files.sync.** The control host's rsync is the operator's to install
  (``apt install rsync``); the host's comes from the bundle (``metalserve.catalog.packages.PUSH``
  is in the bundle's apt needs). So on a fresh host the apt repository itself goes with
  ``files.sync`` (pyinfra's SFTP, in Python: far slower), rsync is installed from it, and the
  wheelhouse and the weights after it go with rsync. Each fallback is one warning line saying why;
  files it sends get the bundle's modification times, root:root and the same modes, so the next
  deploy's rsync finds them in place.

Example (in a role)::

    from roles.push import push
    push(name="Push the wheelhouse", src="/srv/bundle/wheels", dest=WHEELHOUSE_DIR, delete=True)
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.api.command import PyinfraCommand
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.facts.server import Which
from pyinfra.operations import files

from metalserve.bundle.fetch import human
from metalserve.bundle.manifest import read_manifest
from metalserve.hardware import Frozen
from metalserve.offline import BundleManifest
from metalserve.sources import BundleLayout
from roles.base import run_memo, say_once

DIR_MODE, FILE_MODE, OWNER = "755", "644", "root:root"
"""What everything pushed is made on the host (rsync ``--chmod``/``--chown``, files.sync's
``dir_mode``/``mode``/``user``/``group``)."""

BUNDLE_TEMP = ".*.partial"
"""A download ``bundle build`` did not finish (``metalserve.bundle.fetch``): never carried."""

STREAMS = 4
"""rsyncs at once for the big files. OpenSSH "is limited to using a single core for all
operations" of one connection (http://lists.mindrot.org/pipermail/openssh-unix-dev/2008-January/
026105.html): one stream's cipher bounds it near 1-2 GB/s, short of a 25-100 GbE site link."""

STREAM_MIN_BYTES = 64 * 2**20
"""Files this big go in the parallel streams (a checkpoint's shards); smaller ones in the last
pass, where one connection's per-file round trips matter more than its cipher."""

ITEM_PREFIX = "metalserve-push"
"""Starts each line rsync prints for a change (``--out-format``), apart from its other messages."""


class Itemized(Frozen):
    """One change rsync lists (``--itemize-changes``, rsync(1) "--itemize-changes"): ``item`` is
    its 11-character ``YXcstpoguax`` code (``<f+++++++++`` a new file sent, ``.f...p.....`` a mode
    fixed, ``*deleting`` a removal), ``length`` the file's size."""

    item: str
    length: int
    path: str

    @property
    def sends(self) -> bool:
        """The file's content goes over the link (``<`` or ``>`` on a regular file)."""
        return self.item[:1] in "<>" and self.item[1:2] == "f"


def parse_itemized(lines: Iterable[str]) -> list[Itemized]:
    """The changes in rsync's output with ``--out-format='metalserve-push %i %l %n'``; every other
    line (``created directory``, warnings) is not a change and is left out.

    Example::

        >>> parse_itemized(["metalserve-push <f+++++++++ 5 a.json", "created directory /x"])
        [Itemized(item='<f+++++++++', length=5, path='a.json')]
    """
    found = []
    for line in lines:
        if not line.startswith(f"{ITEM_PREFIX} "):
            continue
        item, _, rest = line[len(ITEM_PREFIX) + 1 :].partition(" ")
        length, _, path = rest.lstrip(" ").partition(" ")
        if item and length.isdigit() and path:
            found.append(Itemized(item=item, length=int(length), path=path))
    return found


def stream_lists(changes: Sequence[Itemized], streams: int = STREAMS) -> list[list[str]]:
    """The big files sent, shared among ``streams`` rsyncs with about equal bytes each (the
    biggest first, each to the least loaded); none when fewer than two are big.

    Example::

        >>> big = 2 * STREAM_MIN_BYTES
        >>> stream_lists([Itemized(item="<f+++++++++", length=big, path=p) for p in "abc"], 2)
        [['a', 'c'], ['b']]
    """
    big = [c for c in changes if c.sends and c.length >= STREAM_MIN_BYTES]
    if len(big) < 2:
        return []
    lists: list[list[str]] = [[] for _ in range(min(streams, len(big)))]
    loads = [0] * len(lists)
    for change in sorted(big, key=lambda c: (-c.length, c.path)):
        least = loads.index(min(loads))
        lists[least].append(change.path)
        loads[least] += change.length
    return lists


def _rsh_word(word: str) -> str:
    """One word of rsync's ``--rsh``, which rsync splits at spaces and unquotes itself (single or
    double quotes, no backslash escapes: rsync(1) "--rsh")."""
    if not any(c in word for c in " '\""):
        return word
    if "'" not in word:
        return f"'{word}'"
    if '"' not in word:
        return f'"{word}"'
    raise ValueError(f"{word!r}: expected a path without both kinds of quote")


def ssh_command(data: Any) -> str:
    """The ``ssh`` rsync runs to reach the host, from pyinfra's SSH connector data: the options
    pyinfra's ``files.rsync`` gives (``pyinfra/connectors/ssh.py``), with no password of any kind.

    Example::

        >>> ssh_command({"ssh_port": 2222, "ssh_key": "/k/id", "ssh_strict_host_key_checking": "yes"})
        'ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -p 2222 -i /k/id'
    """
    words = ["ssh", "-o", "BatchMode=yes"]
    if data.get("ssh_known_hosts_file"):
        words += ["-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}"]
    if data.get("ssh_strict_host_key_checking"):
        words += ["-o", f"StrictHostKeyChecking={data['ssh_strict_host_key_checking']}"]
    if data.get("ssh_config_file"):
        words += ["-F", str(data["ssh_config_file"])]
    if data.get("ssh_port"):
        words += ["-p", str(data["ssh_port"])]
    if data.get("ssh_key"):
        words += ["-i", str(data["ssh_key"])]
    return " ".join(_rsh_word(w) for w in words)


def remote_target(data: Any, name: str, dest: str) -> str:
    """``[user@]host:dest/`` (an IPv6 address in brackets)."""
    hostname = str(data.get("ssh_hostname") or name)
    if ":" in hostname:
        hostname = f"[{hostname}]"
    user = f"{data['ssh_user']}@" if data.get("ssh_user") else ""
    return f"{user}{hostname}:{dest.rstrip('/')}/"


def rsync_argv(src: str, target: str, rsh: str, delete: bool, sudo: bool = False) -> list[str]:
    """The push itself (add ``--dry-run`` to only list what it would do)."""
    return [
        "rsync",
        "--recursive",
        "--links",
        "--copy-unsafe-links",
        "--times",
        "--omit-dir-times",
        "--perms",
        f"--chmod=D{DIR_MODE},F{FILE_MODE}",
        f"--chown={OWNER}",
        "--whole-file",
        "--mkpath",
        f"--exclude={BUNDLE_TEMP}",
        *(["--delete"] if delete else []),
        f"--out-format={ITEM_PREFIX} %i %l %n",
        f"--rsh={rsh}",
        *(["--rsync-path=sudo -n rsync"] if sudo else []),
        "--",
        f"{src.rstrip('/')}/",
        target,
    ]


def _part_of(argv: Sequence[str], *selection: str) -> list[str]:
    """``argv`` for the part of the folder ``selection`` (rsync options) names, never deleting:
    the whole pass after it deletes."""
    at = argv.index("--")
    options = [a for a in argv[:at] if a != "--delete"]
    return [*options, *selection, *argv[at:]]


def stream_argv(argv: Sequence[str], names_file: str) -> list[str]:
    """One of the parallel rsyncs: ``argv`` for the files listed in ``names_file`` (one per line,
    relative to the folder), never deleting."""
    return _part_of(argv, f"--files-from={names_file}")


def directories_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` for the folder's directories alone, never deleting: run before the parallel
    streams, so that none of them makes a directory another is making too (rsync's ``--mkpath``
    fails with "File exists" when two receivers race to create the same one)."""
    return _part_of(argv, "--include=*/", "--exclude=*")


class PushCommand(PyinfraCommand):
    """rsync run on the control host: the big files' parallel streams, then the whole folder."""

    def __init__(self, argv: list[str], changes: Sequence[Itemized], dest: str) -> None:
        super().__init__()
        self.argv, self.dest = argv, dest
        self.streams = stream_lists(changes, STREAMS)
        self.sent = [c for c in changes if c.sends]

    def __repr__(self) -> str:
        parallel = [
            shlex.join(stream_argv(self.argv, "{" + ",".join(s) + "}")) for s in self.streams
        ]
        first = [shlex.join(directories_argv(self.argv))] if self.streams else []
        return " ; ".join([*first, " & ".join([*parallel, shlex.join(self.argv)])])

    def execute(self, state: Any, host: Any, connector_arguments: Any) -> bool:
        started = time.monotonic()
        failed = run_rsyncs(self.argv, self.streams)
        if failed:
            host.log_styled(f"push {self.dest}: {failed}", fg="red", log_func=logger.error)
            return False
        seconds = time.monotonic() - started
        size = sum(c.length for c in self.sent)
        host.log(
            f"push {self.dest}: {len(self.sent)} file(s), {human(size)} in {seconds:.1f} s "
            f"({human(size / max(seconds, 1e-3))}/s, {max(len(self.streams), 1)} stream(s))"
        )
        return True


def run_rsyncs(argv: list[str], streams: list[list[str]]) -> str | None:
    """The directories, then the streams at once, then ``argv``; the first failure in one line,
    or None."""
    if streams:
        done = subprocess.run(directories_argv(argv), capture_output=True, text=True, check=False)
        if done.returncode:
            return _failure(done.returncode, done.stderr)
    with tempfile.TemporaryDirectory(prefix="metalserve-push-") as scratch:
        running = []
        for index, names in enumerate(streams):
            listed = Path(scratch) / f"stream{index}"
            listed.write_text("".join(f"{n}\n" for n in names))
            running.append(
                subprocess.Popen(
                    stream_argv(argv, str(listed)),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        errors = [proc.communicate()[1] for proc in running]  # each waits; the others run on
        outcomes = [(proc.returncode, err) for proc, err in zip(running, errors, strict=True)]
    if not any(code for code, _ in outcomes):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        outcomes.append((done.returncode, done.stderr))
    for code, stderr in outcomes:
        if code:
            return _failure(code, stderr)
    return None


def _failure(code: int, stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return f"rsync exit {code}: {lines[0] if lines else 'no message'}"


def itemize(argv: list[str]) -> list[Itemized] | None:
    """What ``argv`` would change (``--dry-run``); None when the dry run itself failed (the push
    then runs, and fails with rsync's own message if it must)."""
    done = subprocess.run([argv[0], "--dry-run", *argv[1:]], capture_output=True, text=True)
    return parse_itemized(done.stdout.splitlines()) if done.returncode == 0 else None


def control_rsync() -> str | None:
    """rsync on the control host."""
    return shutil.which("rsync")


def why_not_rsync() -> str | None:
    """Why this host cannot be pushed with rsync, or None."""
    if control_rsync() is None:
        return "the control host has no rsync (fix: apt install rsync there)"
    if not isinstance(host.connector, SSHConnector):
        return f"host {host.name} is not reached over SSH"
    data = host.connector.data
    if data.get("ssh_password") or data.get("ssh_key_password"):
        return "the host is reached with an SSH password, which ssh takes only from a terminal"
    if not host.get_fact(Which, command="rsync"):
        return "the host has no rsync yet (it is installed from the bundle's packages)"
    return None


def bundle_of(src: Path) -> tuple[Path, BundleManifest] | None:
    """The bundle ``src`` lies in (the nearest folder above it with a ``bundle.json``) and its
    manifest, read once per run."""
    for root in src.parents:
        if (root / BundleLayout().manifest).is_file():
            manifests = run_memo("push-manifests", dict[Path, BundleManifest])
            if root not in manifests:
                manifests[root] = read_manifest(root)
            return root, manifests[root]
    return None


def checksum_listing(src: Path, names: Iterable[str]) -> tuple[str, list[str]]:
    """``sha256sum --check`` lines for the files ``names`` (relative to ``src``) from the bundle
    manifest, and the names it does not list."""
    found = bundle_of(src)
    names = list(names)
    if found is None:
        return "", []
    root, manifest = found
    prefix = src.relative_to(root).as_posix()
    lines, unlisted = [], []
    for name in names:
        record = manifest.files.get(f"{prefix}/{name}" if prefix != "." else name)
        if record is None:
            unlisted.append(name)
        else:
            lines.append(f"{record.sha256}  {name}\n")
    return "".join(lines), unlisted


def verify_command(dest: str, listing: str) -> str:
    """Check the files named in ``listing`` (``sha256sum`` lines, paths relative to ``dest``) on
    all the host's cores at once, with OpenSSL where the host has its command (``ca-certificates``
    depends on it; it uses the CPU's SHA instructions, about 3x coreutils 9.1's ``sha256sum`` here),
    else ``sha256sum``; remove each file that differs and fail naming them, in one line.

    Example of the failure (stderr)::

        push /var/cache/metalserve/wheels: 1 file(s) differ from the bundle manifest's sha256
        after the copy (torch-2.9.0-cp311-cp311-manylinux_2_28_x86_64.whl); removed, so the next
        deploy sends them again — fix: metalserve bundle verify the bundle, then deploy again
    """
    q = shlex.quote
    parts = q(f"{listing}.part")
    check = (  # each line "SUM  NAME"; the name printed when its file's sum is another
        'while IFS= read -r line; do f=${line#*  }; got=$($hash "./$f" 2>/dev/null); '
        '[ "${got%% *}" = "${line%%  *}" ] || printf "%s\\n" "$f"; done'
    )
    return "; ".join(
        [
            f"cd {q(dest)} && split -n r/$(nproc) {q(listing)} {parts} || exit 1",
            "hash=sha256sum; command -v openssl >/dev/null && hash='openssl dgst -sha256 -r'",
            f'for p in {parts}*; do [ -s "$p" ] && {check} < "$p" > "$p.out" & done',
            "wait",
            f"bad=$(cat {parts}*.out 2>/dev/null)",
            f"rm -f {q(listing)} {parts}*",
            '[ -z "$bad" ] && exit 0',
            'printf "%s\\n" "$bad" | while IFS= read -r f; do rm -f -- "./$f"; done',
            'n=$(printf "%s\\n" "$bad" | wc -l)',
            'names=$(printf "%s\\n" "$bad" | head -n 3 | paste -sd, -)',
            f'echo "push "{q(dest)}": $n file(s) differ from the bundle manifest\'s sha256 after the '
            "copy ($names); removed, so the next deploy sends them again — fix: metalserve bundle "
            'verify the bundle, then deploy again" >&2',
            "exit 1",
        ]
    )


def _verify(src: Path, dest: str, names: Sequence[str]) -> Iterator[Any]:
    listing, unlisted = checksum_listing(src, names)
    if unlisted:
        shown = ", ".join(unlisted[:3]) + (
            f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
        )
        say_once(f"push {dest}: not in the bundle manifest, sent unchecked: {shown}")
    if listing:
        at = f"{dest.rstrip('/')}.metalserve-sha256"
        yield FileUploadCommand(StringIO(listing), at)
        yield StringCommand(verify_command(dest.rstrip("/"), at))


def touch_command(dest: str, src: Path, names: Sequence[str]) -> str:
    """Give files sent by files.sync their modification times in the bundle (to the nanosecond;
    rsync's quick check compares them, to the second by default), so the next rsync finds them
    in place."""
    q = shlex.quote
    touches = []
    for name in names:
        ns = (src / name).stat().st_mtime_ns
        touches.append(f"touch -m -d @{ns // 10**9}.{ns % 10**9:09d} -- {q(f'{dest}/{name}')}")
    return " && ".join(touches)


def _with_files_sync(src: Path, dest: str, delete: bool) -> Iterator[Any]:
    commands = list(
        files.sync._inner(
            src=str(src),
            dest=dest,
            user=OWNER.split(":")[0],
            group=OWNER.split(":")[1],
            mode=FILE_MODE,
            dir_mode=DIR_MODE,
            delete=delete,
            exclude=[f"*/{BUNDLE_TEMP}"],
            add_deploy_dir=False,
        )
    )
    yield from commands
    sent = [
        Path(str(c.src)).relative_to(src).as_posix()
        for c in commands
        if isinstance(c, FileUploadCommand) and isinstance(c.src, str)
    ]
    if sent:
        yield StringCommand(touch_command(dest.rstrip("/"), src, sent))
        yield from _verify(src, dest, sent)


@operation()
def push(src: str, dest: str, delete: bool = False) -> Generator[Any, None, None]:
    """Make the host's ``dest`` hold the control host's folder ``src`` (see the module's
    docstring); with ``delete``, nothing else."""
    folder = Path(src).expanduser()
    why = why_not_rsync()
    if why is None:
        try:
            rsh = ssh_command(host.connector.data)
        except ValueError as error:  # a path rsync's --rsh cannot carry
            why = str(error)
    if why is not None:
        say_once(f"push {dest}: {why}: copying with files.sync (pyinfra's SFTP, far slower)")
        yield from _with_files_sync(folder, dest, delete)
        return
    arguments = host.current_op_global_arguments
    sudo = bool(arguments and arguments.get("_sudo"))
    target = remote_target(host.connector.data, host.name, dest)
    argv = rsync_argv(str(folder), target, rsh, delete, sudo)
    changes = itemize(argv)
    if changes == []:
        return
    push_command = PushCommand(argv, changes or [], dest)
    yield push_command
    yield from _verify(folder, dest, [c.path for c in push_command.sent])
