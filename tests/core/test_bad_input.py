"""Properties: an inventory with any value in any field is planned or refused in one line naming
the field; what is planned renders units and env files with no line the templates do not have,
and env values that read back unchanged. Any file given to check, plan or render gives a result or
one line — never a traceback, never a hang."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalserve.cli import main
from metalserve.errors import MetalserveError
from metalserve.hardening import DIRECTIVES as HARDENING_DIRECTIVES
from metalserve.io.inventory import plan_inventory
from metalserve.io.templating import TEMPLATES, render
from metalserve.plan import HostPlan
from metalserve.types import first_control_char
from tests.bounded import within

VLLM: dict[str, Any] = {
    "profile": "h200-sxm-8",
    "model": {"repo_id": "zai-org/GLM-5.2-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 8},
    "service": {"keep_warm_minutes": 14},
}
LLAMACPP: dict[str, Any] = {
    "profile": "rtx4090-4",
    "model": {"repo_id": "org/model"},
    "engine": {"name": "llamacpp"},
    "secrets": {"api_key_file": "~/api_key"},
}
PATHS = [
    "model.repo_id", "model.revision", "model.served_name", "model.checkpoint", "model.local_dir",
    "service.name", "service.user", "service.keep_warm_minutes", "engine.host", "engine.port",
    "engine.kv_cache_dtype", "engine.served_model_name", "engine.alias", "engine.version",
    "engine.override_tensor", "engine.speculative_config", "env", "nccl", "secrets.hf_token_file",
    "sources.weights.endpoint", "sources.python.index_url", "sources.llamacpp.url",
    "sources.llamacpp.sha256", "cluster.address", "cluster.port", "diag.cuda_home",
    "diag.hosts", "diag.source.ref", "diag.reports_dir", "nvidia.pins.nccl_version",
]  # fmt: skip
PAYLOADS = [
    "a/b; rm -rf /", "x\nExecStartPre=/bin/sh -c id", "$(id)", "`id`", "'", '"', "\\", "%n",
    "a b", "s" * 300, "..", "../../x", "\x1b[2J", "main\r", "\u2028", "\ud800", "", "-x",
    "http://h/x\nA=1", "/x/../y", "x\\", "NCCL_X", "1\nLD_PRELOAD=/tmp/x.so",
]  # fmt: skip
printable_values = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=16
)
"""Text the one-line types accept: blanks, quotes, ``$``, ``%``, ``;`` — what quoting must carry."""
text = st.one_of(st.text(max_size=24), st.sampled_from(PAYLOADS), printable_values)
values = st.one_of(
    text,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(text, max_size=3),
    st.dictionaries(text, text, max_size=2),
)


def _with(base: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        node[key] = child = child if isinstance(child, dict) else {}
        node = child
    node[leaf] = value
    return data


def _inventory(folder: Path, host: str, data: object) -> Path:
    path = folder / "inventory.py"
    path.write_text(f"hosts = [({host!r}, {{'metalserve': {data!r}}})]\n", encoding="utf-8")
    return path


def _template_keys(name: str) -> set[str]:
    """The keys a template writes itself, and the hardening directives it includes (decided in
    metalserve.hardening, written through templates/hardening.j2)."""
    lines = (TEMPLATES / name).read_text().splitlines()
    own = {m.group(1) for line in lines if (m := re.match(r"([A-Za-z]+)=", line))}
    return own | set(HARDENING_DIRECTIVES)


def _assert_renders_only_template_lines(plan: HostPlan) -> None:
    for rendered in render(plan):
        lines = rendered.content.splitlines()
        assert all(first_control_char(line) is None for line in lines), rendered.path
        body = [line for line in lines if line.strip() and not line.startswith("#")]
        if rendered.path.endswith(".env"):
            names = [line.split("=", 1)[0] for line in body]
            assert names == [name for name, _ in plan.environment], rendered.path
        elif rendered.path.endswith((".service", ".timer")):
            template = next(n for n in TEMPLATES.glob("*.j2") if rendered.content.count(n.name))
            keys = _template_keys(template.name)
            for line in body:
                assert re.fullmatch(r"\[(Unit|Service|Install|Timer)\]", line) or (
                    line.split("=", 1)[0] in keys
                ), line


def _one_line_naming_a_field(error: MetalserveError) -> None:
    message = str(error)
    assert "\n" not in message and first_control_char(message) is None, message
    assert "metalserve" in message or "inventory" in message, message


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    base=st.sampled_from([VLLM, LLAMACPP]),
    edits=st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=2),
)
def test_any_value_in_any_field_is_planned_or_refused_in_one_line(
    tmp_path: Path, base: dict[str, Any], edits: list[tuple[str, object]]
) -> None:
    data = base
    for path, value in edits:
        data = _with(data, path, value)
    inventory = _inventory(tmp_path, "gpu1", data)
    with within(20):
        try:
            plans = plan_inventory(inventory)
        except MetalserveError as error:
            _one_line_naming_a_field(error)
            return
        for plan in plans:
            _assert_renders_only_template_lines(plan)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=st.one_of(st.text(max_size=20), st.sampled_from(PAYLOADS)))
def test_any_host_name_is_planned_or_refused_in_one_line(tmp_path: Path, host: str) -> None:
    inventory = _inventory(tmp_path, host, VLLM)
    try:
        plans = plan_inventory(inventory)
    except MetalserveError as error:
        _one_line_naming_a_field(error)
        return
    for plan in plans:
        _assert_renders_only_template_lines(plan)


def _exec_start_words(line: str) -> list[str]:
    """ExecStart= split as systemd.service(5) 'Command lines' describes it: words on blanks,
    quoted words with backslash escapes, then ``$$`` and ``%%`` as a literal ``$`` and ``%``."""
    words, i = [], 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        word = ""
        if line[i] in "'\"":
            quote, i = line[i], i + 1
            while line[i] != quote:
                i += line[i] == "\\"
                word, i = word + line[i], i + 1
            i += 1
        else:
            while i < len(line) and line[i] != " ":
                word, i = word + line[i], i + 1
        words.append(word.replace("$$", "$").replace("%%", "%"))
    return words


NAMES = r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,20}"
ACCEPTED: dict[str, st.SearchStrategy[Any]] = {
    "model.served_name": st.from_regex(NAMES, fullmatch=True),
    "service.name": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    "service.user": st.from_regex(r"[a-z_][a-z0-9_-]{0,10}", fullmatch=True),
    "engine.override_tensor": printable_values.filter(bool),
    "engine.alias": st.from_regex(NAMES, fullmatch=True),
    "env": st.dictionaries(st.from_regex(r"X_[A-Z0-9_]{0,6}", fullmatch=True), printable_values),
    "nccl": st.dictionaries(st.sampled_from(["NCCL_DEBUG", "NCCL_ALGO"]), printable_values),
    "secrets.api_key_file": printable_values.filter(bool),
}
"""Values the types accept, with every character quoting must carry."""
accepted_edits = st.sampled_from(sorted(ACCEPTED)).flatmap(
    lambda path: st.tuples(st.just(path), ACCEPTED[path])
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=st.lists(accepted_edits, min_size=1, max_size=4))
def test_accepted_values_render_as_written(tmp_path: Path, edits: list[tuple[str, Any]]) -> None:
    data = LLAMACPP
    for path, value in edits:
        data = _with(data, path, value)
    try:
        (plan,) = plan_inventory(_inventory(tmp_path, "gpu1", data))
    except MetalserveError as error:  # e.g. a served name that is also the API key's path
        _one_line_naming_a_field(error)
        return
    _assert_renders_only_template_lines(plan)
    unit = next(f.content for f in render(plan) if f.path == plan.service.unit_path)
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = _exec_start_words(exec_start.removeprefix("ExecStart="))
    assert words[-len(plan.service.exec_argv) :] == list(plan.service.exec_argv)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(printable_values, st.sampled_from(["x\\", '"', "$HOME", "`id`", " a ", "'"]))
)
def test_env_values_read_back_unchanged_from_the_env_file(tmp_path: Path, value: str) -> None:
    """The env file as a POSIX shell reads it: inside double quotes systemd unescapes the same
    four characters (systemd src/basic/env-file.c)."""
    (plan,) = plan_inventory(_inventory(tmp_path, "gpu1", _with(VLLM, "env", {"X_VALUE": value})))
    env_file = tmp_path / "engine.env"
    env_file.write_text(next(f.content for f in render(plan) if f.path.endswith(".env")))
    read = subprocess.run(
        ["sh", "-c", '. "$1" && printf %s "$X_VALUE"', "sh", str(env_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout == value


file_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=120).map(lambda t: t.encode()),
    st.text(max_size=60).map(lambda t: t.encode("utf-16")),
    st.sampled_from(
        [b"1" * 5000, b"x = " + b"9" * 5000, b"\xff\xfe", b"", b"import sys\nsys.exit(0)"]
    ),
    st.builds(
        lambda data: f"hosts = [('gpu1', {{'metalserve': {data!r}}})]\n".encode(),
        st.builds(_with, st.just(VLLM), st.sampled_from(PATHS), values),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=file_bytes)
def test_check_plan_and_render_take_any_file(tmp_path: Path, content: bytes) -> None:
    inventory = tmp_path / "inventory.py"
    inventory.write_bytes(content)
    out = tmp_path / "out"
    for args in (
        ["check", str(inventory)],
        ["plan", str(inventory), "--json"],
        ["render", str(inventory), "--host", "gpu1", "--out", str(out)],
    ):
        with within(20):
            result = CliRunner().invoke(main, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            args,
            result.exception,
        )
        assert result.exit_code in (0, 1, 2), args
        if result.exit_code == 2:
            assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), args
        assert content != b"import sys\nsys.exit(0)" or result.exit_code == 2
