"""Edge: write a diag report as JSON + summary + PNG plot, and read reports back.

Every file is written atomically (temp name in the same folder, then rename), so a report folder
never holds half a report.

Example::

    >>> paths = write_report(report, Path("reports/2026-11-23/gpu01"), stem="all_reduce")
    >>> sorted(p.suffix for p in paths)
    ['.json', '.png', '.txt']
"""

from __future__ import annotations

import os
import tempfile
from io import BytesIO
from pathlib import Path

import matplotlib
from pydantic import TypeAdapter, ValidationError

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from metalserve.catalog.busbw import THRESHOLDS  # noqa: E402
from metalserve.diag.judge import human_bytes  # noqa: E402
from metalserve.diag.parse import looks_like_json  # noqa: E402
from metalserve.diag.report import DiagReport, load_report, report_json, summary_text  # noqa: E402
from metalserve.errors import MetalserveError  # noqa: E402
from metalserve.io.textfiles import (  # noqa: E402
    JSON_LIMIT,
    LOG_LIMIT,
    decode_text,
    is_text,
    read_bytes_file,
    read_text_file,
    within_limit,
)
from metalserve.types import FileStem, printable  # noqa: E402

_FILE_STEM: TypeAdapter[str] = TypeAdapter(FileStem)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_png(report: DiagReport) -> bytes:
    """Bus bandwidth against message size (log x), both placements, with the expected line."""
    rows = [r for r in report.run.rows if r.size > 0]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        for label, pick in (
            ("out-of-place", lambda r: r.out_of_place),
            ("in-place", lambda r: r.in_place),
        ):
            points = [(r.size, p.busbw) for r in rows if (p := pick(r)) and p.busbw is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=f"busbw {label}")
        expected = report.judgement.expected_busbw
        if expected is not None:
            ax.axhline(expected, color="green", linestyle="--", label=f"expected {expected:g} GB/s")
            ax.axhline(
                expected * THRESHOLDS.fail_ratio,
                color="red",
                linestyle=":",
                label=f"fail below {expected * THRESHOLDS.fail_ratio:.4g} GB/s",
            )
        ax.axvline(
            THRESHOLDS.large_message_bytes, color="grey", linestyle=":", label="judged from here"
        )
        ax.set_xscale("log", base=2)
        sizes = sorted({r.size for r in rows})
        ticks = [s for i, s in enumerate(sizes) if i % max(1, len(sizes) // 8) == 0]
        ax.set_xticks(ticks, [human_bytes(s) for s in ticks], rotation=30, fontsize=8)
        ax.set_xlabel("message size")
        ax.set_ylabel("bus bandwidth (GB/s)")
        ax.set_title(
            f"{report.title}\nverdict {report.verdict.value}"
            + (f", avg {report.run.avg_busbw_text} GB/s" if report.run.avg_busbw_text else ""),
            fontsize=9,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        top = max(expected or 0.0, report.run.peak_busbw or 0.0, 1.0)
        ax.set_ylim(0, top * 1.12)  # room above the expected line
        fig.tight_layout()
        buffer = BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def write_report(report: DiagReport, folder: Path, stem: str) -> tuple[Path, Path, Path]:
    """Write ``stem.json``, ``stem.txt`` and ``stem.png`` into ``folder``."""
    json_path, text_path, png_path = report_paths(folder, stem)
    _atomic_write(json_path, report_json(report).encode())
    _atomic_write(text_path, summary_text(report).encode())
    _atomic_write(png_path, plot_png(report))
    return json_path, text_path, png_path


def read_report(path: Path) -> DiagReport:
    text = read_text_file(
        path,
        "a readable diag report (.json)",
        JSON_LIMIT,
        "pass the .json path printed by diag parse or fetched by deploy/diagnose.py",
    )
    return load_report(text, name=printable(str(path)))


def read_text(path: Path) -> str:
    """A saved nccl-tests output, tolerating stray bytes from interleaved ranks."""
    return read_text_file(
        path, "a saved nccl-tests output", LOG_LIMIT, "pass the log file written by the run", True
    )


_SHOWN = "a readable diag report (.json) or a saved nccl-tests output"
_SHOWN_FIX = "pass the .json written by diag parse, or the run's log or -J file"


def read_report_or_output(path: Path) -> str:
    """What ``diag show`` is given, as text: nccl-tests text output (up to 256 MiB, stray bytes
    from interleaved ranks tolerated), or JSON, a report or a ``-J`` file (up to 64 MiB, decoded
    strictly). Data that is not text is refused as a report would be: binary, or too large."""
    data = read_bytes_file(path, _SHOWN, LOG_LIMIT, _SHOWN_FIX)
    if is_text(data):
        text = decode_text(data, path, _SHOWN, _SHOWN_FIX, lenient=True)
        if not looks_like_json(text):
            return text
    within_limit(data, path, _SHOWN, JSON_LIMIT, _SHOWN_FIX)
    return decode_text(data, path, _SHOWN, _SHOWN_FIX, lenient=False)


def report_paths(folder: Path, stem: str) -> tuple[Path, Path, Path]:
    """``stem.json``, ``stem.txt`` and ``stem.png`` inside ``folder``: ``stem`` is a file name
    (:data:`metalserve.types.FileStem`), so nothing lands outside the folder."""
    try:
        _FILE_STEM.validate_python(stem)
    except ValidationError as exc:
        message = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise MetalserveError(f"--stem: {message}") from None
    return (folder / f"{stem}.json", folder / f"{stem}.txt", folder / f"{stem}.png")
