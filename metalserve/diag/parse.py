"""Read nccl-tests output (text of any version, or ``-J`` JSON) and the transport lines of an NCCL log.

Pure: text in, frozen models out. The formats follow NVIDIA/nccl-tests ``src/util.cu`` (≥2.13 table
with ``root`` and ``#wrong``, auto-width numbers, JSON ``version`` 1-3) and ``src/common.cu`` of
v2.11 (no ``root``, ``error`` = max relative error). One stream usually holds both the nccl-tests
table and ``NCCL_DEBUG=INFO`` lines, interleaved, possibly behind ``mpirun --tag-output``,
``srun -l`` or ``[N]`` launcher prefixes; :func:`parse_output` reads both.

Example::

    >>> out = parse_output(open("all_reduce.log").read())
    >>> out.run.avg_busbw_text, out.transport.net_socket
    ('68.4048', False)

Nothing here invents a number: every bandwidth in a result was a token of the input.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from metalserve.errors import ParseError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutputFormat(StrEnum):
    """Which nccl-tests layout the result came from."""

    PRE_2_13 = "pre-2.13"  # no root column; `error` is the max relative error
    CURRENT = "2.13+"  # root column; `#wrong` counts wrong elements
    JSON = "json"  # `-J file.json`
    UNKNOWN = "unknown"  # rows without a header to tell


class Placement(_Frozen):
    """One measurement of a row: out-of-place or in-place."""

    time_us: float | None
    algbw: float | None
    busbw: float | None
    wrong: float | None = None
    """Elements found wrong (≥2.13 ``#wrong``, JSON ``nwrong``); ``None`` when not checked (``N/A``)."""
    max_error: float | None = None
    """Pre-2.13 ``error`` column: largest relative error seen (not a count)."""


class ResultRow(_Frozen):
    """One message size of the table."""

    size: int
    count: int
    type: str
    redop: str | None = None
    root: int | None = None
    out_of_place: Placement | None = None
    in_place: Placement | None = None

    @property
    def placements(self) -> tuple[Placement, ...]:
        return tuple(p for p in (self.out_of_place, self.in_place) if p is not None)

    @property
    def best_busbw(self) -> float | None:
        """The higher bus bandwidth of the two placements, as printed."""
        values = [p.busbw for p in self.placements if p.busbw is not None]
        return max(values) if values else None

    @property
    def wrong(self) -> float:
        """Wrong elements summed over both placements (0 when unchecked)."""
        return sum(p.wrong or 0.0 for p in self.placements)


class RankDevice(_Frozen):
    """One ``#  Rank  N Group G Pid P on HOST device D [BUS] NAME`` line."""

    rank: int
    host: str
    device: int
    bus_id: str
    name: str
    pid: int | None = None
    group: int | None = None


class AbortKind(StrEnum):
    NCCL = "nccl"  # `Test NCCL failure`
    CUDA = "cuda"  # `Test CUDA failure`
    TIMEOUT = "timeout"  # `Test timeout`
    USAGE = "usage"  # `Invalid number of GPUs`, bad options
    LAUNCHER = "launcher"  # mpirun/srun gave up


class Abort(_Frozen):
    """A reason the run stopped early, as nccl-tests or its launcher printed it."""

    kind: AbortKind
    message: str
    host: str | None = None
    location: str | None = None
    line: str


class NcclTestsRun(_Frozen):
    """Everything nccl-tests printed about one collective run."""

    format: OutputFormat
    collective: str | None = None
    tests_version: str | None = None
    nccl_version: str | None = None
    n_threads: int | None = None
    n_gpus_per_thread: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    reduced_max_bytes: int | None = None
    validation: bool | None = None
    devices: tuple[RankDevice, ...] = ()
    rows: tuple[ResultRow, ...] = ()
    skipped_row_lines: int = 0
    """Lines that looked like table rows but could not be read (kept out of ``rows``)."""
    out_of_bounds: int | None = None
    avg_busbw: float | None = None
    avg_busbw_text: str | None = None
    """The average exactly as nccl-tests printed it (``%g``), e.g. ``68.4048``."""
    min_bw_check: str | None = None
    """``OK``/``FAILED`` after the average when ``NCCL_TESTS_MIN_BW`` was set."""
    aborts: tuple[Abort, ...] = ()
    error_line: str | None = None
    concluded: bool = False

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.host for d in self.devices))

    @property
    def peak_busbw(self) -> float | None:
        values = [b for r in self.rows if (b := r.best_busbw) is not None]
        return max(values) if values else None


class TransportSummary(_Frozen):
    """What an ``NCCL_DEBUG=INFO`` log says NCCL really used."""

    nccl_version: str | None = None
    channels: dict[str, int] = {}
    """Connections seen per transport kind (see :func:`transport_kind`), e.g. ``{"P2P/IPC": 24}``."""
    gdrdma: bool = False
    gpu_dmabuf: bool = False
    """NCCL logged 'DMA-BUF is available on GPU device N' (NVIDIA/nccl src/init.cc): the GPU and
    its driver can export memory as dma-buf (open kernel modules), and NCCL_DMABUF_ENABLE is on."""
    init_logged: bool = False
    """NCCL's '… Init START' line is in the log: it comes after the DMA-BUF check, so a log with it
    and without the DMA-BUF line is one where that check failed."""
    gdr_hcas: tuple[str, ...] = ()
    """HCAs NCCL reports 'NET/IB : GPU Direct RDMA Enabled for HCA n 'name'' (src/graph/topo.cc)."""
    no_gdr_hcas: tuple[str, ...] = ()
    """HCAs it reports 'GPU Direct RDMA Disabled for': neither nvidia-peermem nor DMA-BUF."""
    nvls_available: bool | None = None
    nvls_channels: int | None = None
    network: str | None = None
    """``IB`` or ``Socket`` (NCCL's ``Using network X``) or the NET/... seen on channels."""
    p2p_disabled: bool = False
    ib_disabled: bool = False
    n_ranks: int | None = None
    n_nodes: int | None = None
    local_ranks: int | None = None
    env_set: dict[str, str] = {}
    """``NCCL_X set by environment to V`` lines."""
    warnings: tuple[str, ...] = ()

    def uses(self, kind: str) -> bool:
        return self.channels.get(kind, 0) > 0

    @property
    def net_socket(self) -> bool:
        return self.uses("NET/Socket") or self.network == "Socket"

    @property
    def net_ib(self) -> bool:
        return self.uses("NET/IB") or self.network == "IB"

    @property
    def gpudirect_path(self) -> str | None:
        """The GPUDirect RDMA path NCCL really used; ``None`` where no network channel ran GDRDMA.

        NCCL logs no mechanism per channel, but it uses DMA-BUF whenever the GPU offers it and the
        HCA's kernel takes it (src/transport/net.cc ``useDmaBuf``), else nvidia-peermem
        (src/transport/net_ib.cc). So: GDRDMA with the GPU's DMA-BUF line is DMA-BUF; GDRDMA in a
        log whose init is there but without that line is nvidia-peermem; a log cut before init
        cannot tell.

        >>> TransportSummary(gdrdma=True, gpu_dmabuf=True).gpudirect_path
        'DMA-BUF'
        >>> TransportSummary(gdrdma=True, init_logged=True).gpudirect_path
        'nvidia-peermem'
        """
        if not self.gdrdma:
            return None
        if self.gpu_dmabuf:
            return "DMA-BUF"
        if self.init_logged:
            return "nvidia-peermem"
        return "mechanism not logged"


class ParsedOutput(_Frozen):
    """One saved stream: the nccl-tests result and the NCCL transport lines inside it."""

    run: NcclTestsRun
    transport: TransportSummary


# --------------------------------------------------------------------------- line clean-up

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MPIRUN_TAG = re.compile(r"^\[\d+,\d+\]<(?:stdout|stderr)>:\s?")
_SRUN_LABEL = re.compile(r"^\s*\d+: ")
_BRACKET_RANK = re.compile(r"^\[\d+\]\s?")
_BRACKET_ANYWHERE = re.compile(r"\[\d+\]")


def strip_launcher_prefix(line: str) -> str:
    """Remove what mpirun/srun put in front of a rank's line.

    >>> strip_launcher_prefix("[1,0]<stdout>:# Avg bus bandwidth    : 12.5")
    '# Avg bus bandwidth    : 12.5'
    >>> strip_launcher_prefix("  0: # Out of bounds values : 0 OK")
    '# Out of bounds values : 0 OK'
    """
    line = _ANSI.sub("", line).rstrip("\r\n")
    for prefix in (_MPIRUN_TAG, _SRUN_LABEL, _BRACKET_RANK):
        line = prefix.sub("", line, count=1)
    return line


# --------------------------------------------------------------------------- numbers


def _number(token: str) -> float | None:
    """A printed number, or ``None`` for ``N/A``/``nan``/garbage (``%g`` may print ``1e+06``)."""
    token = token.strip().rstrip("*")
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_N = r"(\d{1,18})(?!\d)"
"""A count or size as nccl-tests and NCCL print them: a number of more digits is no such line
(and past 4300 digits Python would refuse to read it)."""


def _integer(token: str) -> int | None:
    return int(token) if re.fullmatch(r"-?\d{1,18}", token.strip()) else None


# --------------------------------------------------------------------------- the table

_HEADER_NAMES = {"size", "count", "type", "redop", "root", "op", "bytes", "N"}
_MEASURE_START = {"time", "cputime"}
_ROW_START = re.compile(r"^\s*\d+\s+\d+\s+\S")


class _Layout(_Frozen):
    """Column names of a header line, split into the row's descriptors and its measurements."""

    descriptors: tuple[str, ...]
    measurements: tuple[str, ...]

    @property
    def format(self) -> OutputFormat:
        return OutputFormat.CURRENT if "root" in self.descriptors else OutputFormat.PRE_2_13


def _read_header(line: str) -> _Layout | None:
    names = line.lstrip("# ").split()
    if len(names) < 6 or names[0] != "size" or "busbw" not in names:
        return None
    first = next((i for i, n in enumerate(names) if n in _MEASURE_START), None)
    if first is None:
        return None
    measurements = tuple(n for n in names[first:] if n != "timestamp")
    return _Layout(descriptors=tuple(names[:first]), measurements=measurements)


def _placements(names: tuple[str, ...], values: list[str]) -> list[Placement | None]:
    """Split measurement tokens into placements; a blank out-of-place body leaves fewer tokens."""
    groups: list[list[tuple[str, str]]] = []
    for name, value in zip(names, values, strict=False):
        if name in _MEASURE_START or not groups:
            groups.append([])
        groups[-1].append((name, value))
    out: list[Placement | None] = []
    for group in groups:
        fields = dict(group)
        time_token = fields.get("time", fields.get("cputime", ""))
        out.append(
            Placement(
                time_us=_number(time_token),
                algbw=_number(fields.get("algbw", "")),
                busbw=_number(fields.get("busbw", "")),
                wrong=_number(fields["#wrong"]) if "#wrong" in fields else None,
                max_error=_number(fields["error"]) if "error" in fields else None,
            )
        )
    return out


def _guess_layout(tokens: list[str]) -> _Layout | None:
    """For rows seen without a header: 4 numbers per placement, an optional integer root."""
    descriptors = ["size", "count", "type"]
    rest = tokens[3:]
    while rest and _number(rest[0]) is None and rest[0] != "N/A":
        descriptors.append("redop")
        rest = rest[1:]
    if len(rest) % 4 == 1:
        descriptors.append("root")
        rest = rest[1:]
    if not rest or len(rest) % 4 or len(rest) > 8:
        return None
    wrong_name = "#wrong" if "root" in descriptors else "error"
    one = ("time", "algbw", "busbw", wrong_name)
    return _Layout(descriptors=tuple(descriptors), measurements=one * (len(rest) // 4))


def _read_row(line: str, layout: _Layout | None) -> ResultRow | None:
    tokens = _BRACKET_ANYWHERE.sub(" ", line).split()
    chosen = layout if layout is not None else _guess_layout(tokens)
    if chosen is None or len(tokens) <= len(chosen.descriptors):
        return None
    size, count = _integer(tokens[0]), _integer(tokens[1])
    if size is None or count is None or size < 0 or count < 0:
        return None
    described = dict(zip(chosen.descriptors, tokens, strict=False))
    values = tokens[len(chosen.descriptors) :][: len(chosen.measurements)]
    names = chosen.measurements
    if len(values) < len(names):  # out-of-place body printed blank (trace replay): align right
        names = names[len(names) - len(values) :]
    if not values or any(_number(v) is None and v.rstrip("*") != "N/A" for v in values):
        return None
    placements = _placements(names, values)
    if not any(p is not None and p.busbw is not None for p in placements):
        return None
    root = _integer(described.get("root", ""))
    redop = described.get("redop", described.get("op"))
    if len(placements) == 1 and len(chosen.measurements) > len(names):
        out_of_place, in_place = None, placements[0]
    else:
        out_of_place = placements[0]
        in_place = placements[1] if len(placements) > 1 else None
    return ResultRow(
        size=size,
        count=count,
        type=tokens[2],
        redop=redop,
        root=root,
        out_of_place=out_of_place,
        in_place=in_place,
    )


# --------------------------------------------------------------------------- other lines

_VERSION = re.compile(
    r"nccl-tests version (\S+)(?: \(\w+\))? nccl-headers=(\d+) nccl-library=(\d+)"
)
_NCCL_VERSION = re.compile(r"NCCL version (\d+\.\d+\.\d+)")
_STARTING = re.compile(r"Collective test (starting|concluded): (\S+)")
_PARAMS = re.compile(
    rf"nThread {_N} nGpus {_N} minBytes {_N} maxBytes {_N}"
    r"(?:.*?validation: (\d+))?"
)
_REDUCING = re.compile(rf"Reducing maxBytes to {_N}")
_RANK = re.compile(
    rf"^Rank\s+{_N}\s+(?:Group\s+{_N}\s+)?(?:Pid\s+{_N}\s+)?on\s+(\S+)\s+"
    rf"device\s+{_N}\s+\[([^\]]*)\]\s*(.*)$"
)
_OOB = re.compile(rf"Out of bounds values\s*:\s*{_N}")
_AVG = re.compile(r"Avg bus bandwidth\s*:\s*(\S+)\s*(OK|FAILED)?")
_TEST_FAILURE = re.compile(r"^(?:(\S+): )?Test (CUDA|NCCL) failure (\S+:\d+) '?(.*?)'?\s*$")
_OLD_NCCL_FAILURE = re.compile(r"^NCCL failure (\S+:\d+) '(.*)'")
_TIMEOUT = re.compile(r"^(\S+): Test timeout \((\d+)s\) (\S+:\d+)")
_USAGE = re.compile(r"^(Invalid number of GPUs: .*|invalid option .*|invalid size.*)$")
_LAUNCHER = re.compile(
    r"(mpirun noticed that .*|There are not enough slots available.*|"
    r"srun: error: .*|ORTE was unable to .*|mpirun was unable to .*)"
)
_ERROR_LINE = re.compile(r"^# error: (.+)$")


def _table_line(line: str) -> bool:
    return bool(_ROW_START.match(line)) and "NCCL" not in line


def _abort(line: str) -> Abort | None:
    if m := _TEST_FAILURE.match(line):
        kind = AbortKind.CUDA if m.group(2) == "CUDA" else AbortKind.NCCL
        return Abort(kind=kind, host=m.group(1), location=m.group(3), message=m.group(4), line=line)
    if m := _OLD_NCCL_FAILURE.match(line):
        return Abort(kind=AbortKind.NCCL, location=m.group(1), message=m.group(2), line=line)
    if m := _TIMEOUT.match(line):
        message = f"no progress for {m.group(2)} s"
        return Abort(
            kind=AbortKind.TIMEOUT, host=m.group(1), location=m.group(3), message=message, line=line
        )
    if m := _USAGE.match(line.strip()):
        return Abort(kind=AbortKind.USAGE, message=m.group(1), line=line)
    if m := _LAUNCHER.search(line):
        return Abort(kind=AbortKind.LAUNCHER, message=m.group(1).strip(), line=line)
    return None


def parse_nccl_tests(text: str) -> NcclTestsRun:
    """Read the nccl-tests part of a saved stream (text output of any version).

    >>> run = parse_nccl_tests("# Avg bus bandwidth    : 84.8558\\n")
    >>> run.avg_busbw, run.rows
    (84.8558, ())
    """
    found: dict[str, Any] = {}
    layout: _Layout | None = None
    rows: list[ResultRow] = []
    devices: dict[tuple[str, int], RankDevice] = {}
    aborts: list[Abort] = []
    skipped = 0
    for line in map(strip_launcher_prefix, text.splitlines()):
        body = line.lstrip("# ").rstrip()
        if (header := _read_header(line)) is not None:
            layout = header
            continue
        if _table_line(line) and not line.lstrip().startswith("#"):
            row = _read_row(line, layout)
            if row is None:
                skipped += 1
            else:
                rows.append(row)
            continue
        if m := _VERSION.search(line):
            found["tests_version"] = m.group(1)
        elif m := _STARTING.search(line):
            found["collective"] = m.group(2)
            found["concluded"] = found.get("concluded", False) or m.group(1) == "concluded"
        elif m := _PARAMS.search(line):
            found.update(
                n_threads=int(m.group(1)),
                n_gpus_per_thread=int(m.group(2)),
                min_bytes=int(m.group(3)),
                max_bytes=int(m.group(4)),
            )
            if m.group(5) is not None:
                found["validation"] = m.group(5) != "0"
        elif m := _REDUCING.search(line):
            found["reduced_max_bytes"] = int(m.group(1))
        elif m := _RANK.match(body):
            device = RankDevice(
                rank=int(m.group(1)),
                group=int(m.group(2)) if m.group(2) else None,
                pid=int(m.group(3)) if m.group(3) else None,
                host=m.group(4),
                device=int(m.group(5)),
                bus_id=m.group(6),
                name=m.group(7).strip(),
            )
            devices[(device.host, device.rank)] = device
        elif m := _OOB.search(line):
            found["out_of_bounds"] = int(m.group(1))
        elif m := _AVG.search(line):
            found["avg_busbw_text"] = m.group(1)
            found["avg_busbw"] = _number(m.group(1))
            found["min_bw_check"] = m.group(2)
        elif m := _ERROR_LINE.match(line.strip()):
            found["error_line"] = m.group(1).strip()
        elif (abort := _abort(line)) is not None:
            aborts.append(abort)
        elif "NCCL INFO" not in line and (m := _NCCL_VERSION.search(line)):
            found.setdefault("nccl_version", m.group(1))
    fmt = layout.format if layout is not None else _format_without_header(rows)
    return NcclTestsRun(
        format=fmt,
        devices=tuple(sorted(devices.values(), key=lambda d: d.rank)),
        rows=tuple(rows),
        skipped_row_lines=skipped,
        aborts=tuple(aborts),
        **found,
    )


def _format_without_header(rows: list[ResultRow]) -> OutputFormat:
    if not rows:
        return OutputFormat.UNKNOWN
    return OutputFormat.CURRENT if rows[0].root is not None else OutputFormat.PRE_2_13


# --------------------------------------------------------------------------- JSON (-J)


def _json_placement(value: Any) -> Placement | None:
    if not isinstance(value, dict):
        return None
    time_value = value.get("time", value.get("cpu_time"))
    return Placement(
        time_us=_json_number(time_value),
        algbw=_json_number(value.get("alg_bw")),
        busbw=_json_number(value.get("bus_bw")),
        wrong=_json_number(value.get("nwrong")),
    )


def _json_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    return _number(str(value))


def _json_version(nccl_code: Any) -> str | None:
    """NCCL's version code: 22304 → 2.23.4 (≥2.9 encoding: major*10000 + minor*100 + patch)."""
    if _json_int(nccl_code) is None or nccl_code < 10000:
        return None
    return f"{nccl_code // 10000}.{nccl_code // 100 % 100}.{nccl_code % 100}"


def _json_object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _json_list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _json_int(value: Any) -> int | None:
    """A JSON integer that fits 64 bits; anything else (a string, a float, true) is not one."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def _json_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_json(text: str) -> NcclTestsRun:
    """Read an nccl-tests ``-J`` JSON report (versions 1-3). Raises ParseError if it is not one.

    Floats are kept as their printed text so the average is reported exactly as written.
    """
    try:
        data = json.loads(text, parse_float=str)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"expected an nccl-tests JSON report, found invalid JSON ({exc.msg} at line {exc.lineno})"
            " — fix: pass the file written by -J, or the text output"
        ) from None
    except (ValueError, RecursionError):  # a number past 4300 digits, nesting too deep
        raise ParseError(
            "expected an nccl-tests JSON report, found JSON Python cannot read (a number of "
            "thousands of digits or nesting too deep) — fix: pass the file written by -J"
        ) from None
    if not isinstance(data, dict) or "results" not in data:
        raise ParseError(
            "expected an nccl-tests JSON report with a 'results' list, found other JSON"
            " — fix: pass the file written by all_reduce_perf -J"
        )
    rows: list[ResultRow] = []
    skipped = 0
    for item in _json_list(data, "results"):
        if not isinstance(item, dict):
            skipped += 1
            continue
        size, count = _json_int(item.get("size")), _json_int(item.get("count"))
        if size is None or count is None or size < 0 or count < 0:
            skipped += 1
            continue
        oop, ip = _json_placement(item.get("out_of_place")), _json_placement(item.get("in_place"))
        if oop is None and ip is None:
            skipped += 1
            continue
        rows.append(
            ResultRow(
                size=size,
                count=count,
                type=str(item.get("type", "")),
                redop=_json_str(item.get("redop")),
                root=_integer(str(item.get("root", ""))),
                out_of_place=oop,
                in_place=ip,
            )
        )
    config = _json_object(data, "config")
    devices = tuple(
        RankDevice(
            rank=rank,
            group=_json_int(d.get("group")),
            pid=_json_int(d.get("pid")),
            host=str(d.get("hostname", "")),
            device=_json_int(d.get("device")) or 0,
            bus_id=str(d.get("device_hex", "")),
            name=str(d.get("device_info", "")),
        )
        for d in _json_list(config, "devices")
        if isinstance(d, dict) and (rank := _json_int(d.get("rank"))) is not None
    )
    average = _json_object(data, "average_bus_bandwidth")
    oob = _json_object(data, "out_of_bounds")
    okay = average.get("okay")
    args = _json_list(data, "args")
    errors = [e for e in _json_list(data, "errors") if isinstance(e, str) and e.strip()]
    return NcclTestsRun(
        format=OutputFormat.JSON,
        collective=str(args[0]).rsplit("/", 1)[-1] if args else None,
        nccl_version=_json_version(data.get("nccl_version")),
        n_threads=_json_int(config.get("nthreads")),
        n_gpus_per_thread=_json_int(config.get("ngpus")),
        min_bytes=_json_int(config.get("minimum_bytes")),
        max_bytes=_json_int(config.get("maximum_bytes")),
        validation=bool(config["validation"]) if "validation" in config else None,
        devices=devices,
        rows=tuple(rows),
        skipped_row_lines=skipped,
        out_of_bounds=_json_int(oob.get("count")),
        avg_busbw=_json_number(average.get("bandwidth")),
        avg_busbw_text=str(average["bandwidth"]) if "bandwidth" in average else None,
        min_bw_check={"true": "OK", "false": "FAILED"}.get(str(okay)),
        error_line=errors[0] if errors else None,
        concluded="end_time" in data,
    )


# --------------------------------------------------------------------------- NCCL_DEBUG=INFO

_CHANNEL = re.compile(r"NCCL INFO Channel \d+(?:/\d+)? ?: .*? via (\S+(?: pointer)?)")
_USING_NETWORK = re.compile(r"NCCL INFO Using network (\w+)")
_NET_INIT = re.compile(r"NCCL INFO NET/(IB|Socket) ?: Using")
_COMM = re.compile(rf"nRanks {_N} nNodes {_N} localRanks {_N}")
_NRANKS = re.compile(rf"\bnranks {_N}\b")
_NVLS_SUPPORT = re.compile(r"NVLS multicast support is (not )?available")
_NVLS_CHANNELS = re.compile(rf"(?<!\d){_N} nvls channels")
_SET_BY_ENV = re.compile(r"NCCL INFO (NCCL_\w+) set by environment to (\S+?)\.?$")
_WARN = re.compile(r"NCCL WARN (.+)$")
_HCA_GDR = re.compile(r"NET/\w+ ?: GPU Direct RDMA (Enabled|Disabled) for HCA \d+ '([^']*)'?")
_GPU_DMABUF = re.compile(r"NCCL INFO DMA-BUF is available on GPU device \d+")


def transport_kind(via: str) -> str:
    """Group a channel's ``via`` text into a transport kind.

    >>> transport_kind("NET/IBext_v8/7/GDRDMA"), transport_kind("P2P/CUMEM/read")
    ('NET/IB', 'P2P/CUMEM')
    >>> transport_kind("SHM/direct/direct"), transport_kind("P2P/direct")
    ('SHM', 'P2P/direct')
    """
    parts = via.split("/")
    head = parts[0]
    if head == "NET" and len(parts) > 1:
        name = parts[1]
        if name.startswith("IB"):
            return "NET/IB"
        if name.startswith("Socket"):
            return "NET/Socket"
        return f"NET/{name}"
    if head == "P2P" and len(parts) > 1:
        return f"P2P/{parts[1].split()[0]}"
    return head


def _from_first(
    pattern: re.Pattern[str], line: str, marker: str, search: bool = False
) -> re.Match[str] | None:
    """``pattern`` at (or, ``search``, after) the first ``marker`` of ``line``: one scan of the
    line, where a search for a lazy ``.*?`` pattern would rescan it from every occurrence of the
    marker (a line repeating it thousands of times took minutes)."""
    start = line.find(marker)
    if start < 0:
        return None
    return pattern.search(line, start) if search else pattern.match(line, start)


def parse_nccl_log(lines: Iterable[str]) -> TransportSummary:
    """Read the transport facts out of ``NCCL_DEBUG=INFO`` lines (other lines are ignored)."""
    channels: dict[str, int] = {}
    env: dict[str, str] = {}
    warnings: list[str] = []
    found: dict[str, Any] = {"gdrdma": False}
    hcas: dict[str, dict[str, None]] = {"Enabled": {}, "Disabled": {}}
    for line in map(strip_launcher_prefix, lines):
        if "NCCL" not in line:
            continue
        if m := _HCA_GDR.search(line):
            hcas[m.group(1)][m.group(2)] = None
        elif _GPU_DMABUF.search(line):
            found["gpu_dmabuf"] = True
        elif "NCCL INFO " in line and "Init START" in line:
            found["init_logged"] = True
        if m := _from_first(_CHANNEL, line, "NCCL INFO Channel "):
            via = m.group(1)
            kind = transport_kind(via)
            channels[kind] = channels.get(kind, 0) + 1
            found["gdrdma"] = found["gdrdma"] or via.endswith("/GDRDMA")
        elif m := _USING_NETWORK.search(line):
            found["network"] = m.group(1)
        elif m := _NET_INIT.search(line):
            found.setdefault("network", m.group(1))
        elif m := _COMM.search(line):
            found.update(
                n_ranks=int(m.group(1)), n_nodes=int(m.group(2)), local_ranks=int(m.group(3))
            )
        elif m := _NVLS_SUPPORT.search(line):
            available = m.group(1) is None
            found["nvls_available"] = found.get("nvls_available", False) or available
        elif m := _NVLS_CHANNELS.search(line):
            found["nvls_channels"] = max(found.get("nvls_channels", 0), int(m.group(1)))
        elif m := _SET_BY_ENV.search(line):
            env[m.group(1)] = m.group(2)
        elif m := _WARN.search(line):
            warnings.append(m.group(1).strip())
        elif "n_ranks" not in found and (m := _from_first(_NRANKS, line, "NCCL INFO ", True)):
            found["n_ranks"] = int(m.group(1))
        if "nccl_version" not in found and (m := _NCCL_VERSION.search(line)):
            found["nccl_version"] = m.group(1)
    if "network" not in found:
        for kind in ("NET/IB", "NET/Socket"):
            if channels.get(kind):
                found["network"] = kind.split("/")[1]
    return TransportSummary(
        channels=channels,
        env_set=env,
        warnings=tuple(dict.fromkeys(warnings)),
        p2p_disabled=env.get("NCCL_P2P_DISABLE") == "1",
        ib_disabled=env.get("NCCL_IB_DISABLE") == "1",
        gdr_hcas=tuple(hcas["Enabled"]),
        no_gdr_hcas=tuple(h for h in hcas["Disabled"] if h not in hcas["Enabled"]),
        **found,
    )


def looks_like_json(text: str) -> bool:
    """JSON (an nccl-tests ``-J`` report, a saved diag report) rather than text output."""
    return text.lstrip().startswith("{")


def parse_output(text: str) -> ParsedOutput:
    """Read one saved stream: nccl-tests text or JSON, plus any NCCL INFO/WARN lines in it."""
    if looks_like_json(text):
        return ParsedOutput(run=parse_json(text), transport=TransportSummary())
    run = parse_nccl_tests(text)
    transport = parse_nccl_log(text.splitlines())
    if run.nccl_version is None and transport.nccl_version is not None:
        run = run.model_copy(update={"nccl_version": transport.nccl_version})
    return ParsedOutput(run=run, transport=transport)


def merge_outputs(text_output: str, json_report: str | None) -> ParsedOutput:
    """Prefer the JSON numbers when a run wrote both; keep the text stream's log and aborts."""
    parsed = parse_output(text_output)
    if json_report is None:
        return parsed
    from_json = parse_json(json_report)
    run = from_json.model_copy(
        update={
            "aborts": parsed.run.aborts,
            "tests_version": parsed.run.tests_version,
            "nccl_version": from_json.nccl_version or parsed.run.nccl_version,
            "collective": parsed.run.collective or from_json.collective,
        }
    )
    return ParsedOutput(run=run, transport=parsed.transport)


def iter_busbw(run: NcclTestsRun) -> Iterator[float]:
    """Every bus bandwidth value in the result, in table order."""
    for row in run.rows:
        for placement in row.placements:
            if placement.busbw is not None:
                yield placement.busbw
