"""Typed values for everything an inventory hands to a shell, a unit file, an env file, a path or
a URL: each type refuses what its destination would read as syntax, in one line that says what
was expected, what was found and how to fix it.

Example::

    class Model(Frozen):
        repo_id: RepoId
        revision: Revision = "main"

    Model(repo_id="a/b; rm -rf /")  # ValidationError: expected a Hugging Face repo id ... found
                                    # 'a/b; rm -rf /' — fix: ...
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

SHOWN_CHARS = 60
"""How much of a refused value an error message repeats (one line, however long the value)."""

_REFUSED_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}
"""Unicode control characters (NUL, newline, escape, DEL, C1), lone surrogates (not encodable as
UTF-8) and the line/paragraph separators ``str.splitlines`` splits on."""


def shown(value: object) -> str:
    """``value`` as an error message may quote it: ``repr`` (control characters escaped), cut
    to :data:`SHOWN_CHARS`; an integer too long to print is described by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    try:
        text = repr(value)
    except ValueError:  # e.g. a float subclass or container holding a huge int
        return f"a {type(value).__name__} too large to print"
    if len(text) > SHOWN_CHARS:
        text = f"{text[: SHOWN_CHARS - 1]}… ({len(text)} chars)"
    return text


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``…), for a terminal: what
    came from a file is shown, never executed by the terminal."""
    return "".join(
        c if unicodedata.category(c) not in _REFUSED_CATEGORIES else repr(c)[1:-1] for c in text
    )


def first_control_char(text: str) -> str | None:
    """The first character that would end a line, hide text or fail to encode; None if none."""
    return next((c for c in text if unicodedata.category(c) in _REFUSED_CATEGORIES), None)


def _refuse(expected: str, value: object, fix: str) -> ValueError:
    return ValueError(f"expected {expected}, found {shown(value)} — fix: {fix}")


def _checked(check: Callable[[str], str | None], expected: str, fix: str) -> AfterValidator:
    """A validator that refuses a string for which ``check`` names a problem."""

    def validate(value: str) -> str:
        problem = check(value)
        if problem is not None:
            raise _refuse(f"{expected} ({problem})" if problem else expected, value, fix)
        return value

    return AfterValidator(validate)


def _pattern(regex: str, expected: str, fix: str) -> AfterValidator:
    compiled = re.compile(regex)
    return _checked(lambda v: None if compiled.fullmatch(v) else "", expected, fix)


def _one_line(limit: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not value:
            return "empty"
        if len(value) > limit:
            return f"at most {limit} characters"
        bad = first_control_char(value)
        return None if bad is None else f"no control characters or line breaks; {bad!r} is one"

    return check


# --------------------------------------------------------------------------- model names


def repo_id_problem(value: str) -> str | None:
    """huggingface_hub ``validate_repo_id`` (huggingface_hub/utils/_validators.py): ``name`` or
    ``namespace/name``, ASCII letters, digits, ``-``, ``_``, ``.``, at most 96 per part, no part
    starting or ending with ``-`` or ``.``, no ``--`` or ``..``, not ending in ``.git``."""
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", value):
        return "only A-Z a-z 0-9 . _ - and one /"
    parts = value.split("/")
    if len(parts) > 2:
        return "at most one '/'"
    for part in parts:
        if not 1 <= len(part) <= 96:
            return "each part 1-96 characters"
        if part[0] in "-." or part[-1] in "-.":
            return "no part starting or ending with '-' or '.'"
    if "--" in value or ".." in value:
        return "no '--' or '..'"
    if value.endswith(".git"):
        return "not ending in .git"
    return None


RepoId = Annotated[
    str,
    _checked(
        repo_id_problem,
        "a Hugging Face repo id, namespace/name",
        "write the id as the Hub shows it, e.g. zai-org/GLM-5.2-FP8",
    ),
]
"""A Hub repo id: reaches the weights command, the model folder name and the stamp."""

CatalogueId = Annotated[
    str,
    _checked(
        repo_id_problem,
        "a catalogue checkpoint id (a repo id or a GGUF file name)",
        "name a checkpoint of metalserve.catalog.checkpoints, or give model.repo_id",
    ),
]


def _revision_problem(value: str) -> str | None:
    """A branch, tag or commit as git-check-ref-format(1) allows them, narrowed to characters no
    shell, unit or URL reads as syntax: letters, digits, ``. _ - + /``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+/-]{0,254}", value):
        return "1-255 of A-Z a-z 0-9 . _ - + /, starting with a letter or digit"
    if ".." in value or "//" in value or "@{" in value:
        return "no '..' or '//'"
    if value.endswith(("/", ".", ".lock")) or "/." in value:
        return "no component starting with '.', not ending in '/', '.' or '.lock'"
    return None


Revision = Annotated[
    str,
    _checked(
        _revision_problem,
        "a git branch, tag or 40-hex commit",
        "use the branch, tag or commit as the Hub shows it, e.g. main",
    ),
]

ServedName = Annotated[
    str,
    _pattern(
        r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,254}",
        "a model name of 1-255 A-Z a-z 0-9 . _ : / @ + -, starting with a letter or digit",
        "name the model as clients will ask for it, e.g. glm-5.2-fp8",
    ),
]
"""The name clients ask for: reaches argv, the unit's Description= and the smoke request."""

# --------------------------------------------------------------------------- systemd, users, hosts

SERVICE_NAME_MAX = 64

ServiceName = Annotated[
    str,
    _pattern(
        rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{SERVICE_NAME_MAX - 1}}}",
        f"a systemd unit name of 1-{SERVICE_NAME_MAX} A-Z a-z 0-9 _ . -, starting with a letter "
        "or digit",
        "a short name such as metalserve-vllm (systemd.unit(5): unit name characters)",
    ),
]
"""Becomes ``NAME.service``, ``NAME-keepwarm.timer`` and ``/etc/metalserve/NAME.env``; systemd
allows 255 characters (systemd.unit(5)), 64 leaves room for every suffix and a file name."""

UserName = Annotated[
    str,
    _pattern(
        r"[a-z_][a-z0-9_-]{0,31}",
        "a user name of 1-32 a-z 0-9 _ -, starting with a letter or _",
        "a name useradd(8) accepts, e.g. metalserve",
    ),
]

ClusterName = Annotated[
    str,
    _pattern(
        r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}",
        "a name of 1-63 A-Z a-z 0-9 _ . -, starting with a letter or digit",
        "a short name such as h200-pair",
    ),
]

Address = Annotated[
    str,
    _pattern(
        r"[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}",
        "a host name, IPv4 or IPv6 address (A-Z a-z 0-9 . : -)",
        "write the address as ping would take it, e.g. 10.0.0.2",
    ),
]
"""Nothing a shell, a unit or a URL would read as syntax."""


def _host_name_problem(value: str) -> str | None:
    if not re.fullmatch(r"@?[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,252}", value):
        return "1-253 of A-Z a-z 0-9 . _ : @ / + -"
    if ".." in value:
        return "no '..'"
    return None


HostName = Annotated[
    str,
    _checked(
        _host_name_problem,
        "an inventory host name",
        "name the host as SSH reaches it, e.g. gpu01.example.internal",
    ),
]
"""pyinfra's inventory name (``gpu01``, ``@local``, ``@docker/ubuntu:24.04``): it names the report
folder on the control host and is written into every unit's header."""


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise _refuse("a TCP port 1-65535", value, "pick a free port, e.g. 8000")
    return value


Port = Annotated[int, AfterValidator(_port)]

# --------------------------------------------------------------------------- paths


def _host_path_problem(value: str) -> str | None:
    if (problem := _one_line(4095)(value)) is not None:
        return problem
    if not value.startswith("/") or value.startswith("//"):
        return "absolute"
    if posixpath.normpath(value) != value:
        return f"normalized, i.e. {posixpath.normpath(value)}"
    return None


HostPath = Annotated[
    str,
    _checked(
        _host_path_problem,
        "an absolute path on the host",
        "write it as /usr/local/cuda is written: absolute, no '..', '.', '//' or trailing '/'",
    ),
]

LocalPath = Annotated[
    str,
    _checked(
        _one_line(4095),
        "a path on the control host",
        "give the file's path on one line; ~ is expanded",
    ),
]
"""A file or folder on the control host (secrets, bundles, report folders); relative or ``~/``."""

FileStem = Annotated[
    str,
    _pattern(
        r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}",
        "a file name (1-128 A-Z a-z 0-9 . _ + -), not a path",
        "give a plain name such as all_reduce; the folder is --out",
    ),
]

GgufFile = Annotated[
    str,
    _pattern(
        r"(?:[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}/){0,3}[A-Za-z0-9_][A-Za-z0-9._+-]{0,122}\.gguf",
        "a .gguf file's path in the repo (A-Z a-z 0-9 . _ + -, folders with /)",
        "write it as the Hub lists it, e.g. Q4_K_M/GLM-5.2-Q4_K_M-00001-of-00005.gguf",
    ),
]
"""A GGUF inside a Hub repository: reaches the fetch's file patterns and llama-server's ``-m``."""

# --------------------------------------------------------------------------- environment, flags

EnvName = Annotated[
    str,
    _pattern(
        r"[A-Z_][A-Z0-9_]{0,127}",
        "an environment variable name [A-Z_][A-Z0-9_]*",
        "use capitals, digits and _, e.g. HF_XET_HIGH_PERFORMANCE",
    ),
]

NcclName = Annotated[
    str,
    _pattern(
        r"NCCL_[A-Z0-9_]{1,123}",
        "an NCCL variable name NCCL_[A-Z0-9_]*",
        "spell it as NCCL's env.html does, e.g. NCCL_IB_TIMEOUT; other variables go in "
        "metalserve.env",
    ),
]

EnvValue = Annotated[
    str,
    _checked(
        lambda v: None if v == "" else _one_line(4096)(v),
        "one line of text",
        "remove the line break or control character",
    ),
]
"""One env-file line's value: a line break would start a new variable."""

NcclValue = EnvValue

FlagText = Annotated[
    str,
    _checked(
        _one_line(1024),
        "one line of text",
        "remove the line break or control character",
    ),
]
"""An engine flag's string value: one argv word of the unit's ExecStart= line."""

PackageVersion = Annotated[
    str,
    _pattern(
        r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}",
        "a release version (A-Z a-z 0-9 . _ + -)",
        "use the release as its project tags it, e.g. 0.33.0",
    ),
]

DebianVersion = Annotated[
    str,
    _pattern(
        r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]{0,127}",
        "a Debian package version ([epoch:]upstream[-revision], A-Z a-z 0-9 . + ~ -)",
        "write it as apt-cache policy shows it, e.g. 2.28.9-1+cuda13.0",
    ),
]
"""Debian Policy 5.6.12 (Version): what the apt preferences file and apt-get receive."""

Sha256 = Annotated[
    str,
    _pattern(
        r"[0-9a-fA-F]{64}",
        "a sha256 digest (64 hex digits)",
        "paste the output of sha256sum FILE",
    ),
]

# --------------------------------------------------------------------------- URLs

_URL_CHARS = r"[A-Za-z0-9._~%!$&'()*+,;=:@/?#\[\]-]"
"""RFC 3986 §2: unreserved, reserved and %-escapes; no blank, quote, backslash or control."""


def _url(schemes: str, expected: str, fix: str) -> AfterValidator:
    return _pattern(rf"(?:{schemes})://{_URL_CHARS}{{1,2040}}", expected, fix)


Url = Annotated[
    str,
    _url(
        "https?",
        "an http:// or https:// URL (RFC 3986 characters, no spaces)",
        "write it as a browser would, e.g. http://10.0.0.1:8080/simple",
    ),
]

SourceUrl = Annotated[
    str,
    _url(
        "https?|ssh|git|file",
        "an http(s)://, ssh://, git:// or file:// URL (RFC 3986 characters, no spaces)",
        "write the git remote or tarball URL in full, e.g. https://github.com/ggml-org/llama.cpp",
    ),
]
"""A git remote or a source tarball: what git clone and curl fetch from (git-clone(1), GIT URLS)."""
