"""Typed inventory values: each kind of value that would reach a shell, a unit, an env file, a path
or a URL is refused in one line naming its field, by ``metalserve check`` (exit 2) as a user runs it.

The refused and accepted examples come from the rules the types follow: huggingface_hub's
``validate_repo_id`` docstring, git-check-ref-format(1), systemd.unit(5), useradd(8), Debian Policy
5.6.12 and RFC 3986 — not from this program's output.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
from click.testing import CliRunner
from pydantic import AfterValidator, BaseModel, BeforeValidator, TypeAdapter, ValidationError

from metalserve.cli import main
from metalserve.spec import HostSpec
from metalserve.types import (
    CatalogueId,
    DebianVersion,
    EnvName,
    HostPath,
    RepoId,
    Revision,
    ServiceName,
    UserName,
)

BASE: dict[str, Any] = {
    "profile": "h200-sxm-8",
    "model": {"repo_id": "zai-org/GLM-5.2-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 8},
}


def _with(path: str, value: object, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` with the dotted ``path`` set to ``value``."""
    data = copy.deepcopy(base or BASE)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


def _check(tmp_path: Path, data: dict[str, Any], host: str = "gpu1") -> tuple[int, str]:
    inventory = tmp_path / "inventory.py"
    source = repr(data).replace(repr(HUGE), "10**5000")  # repr() refuses 5000 digits
    inventory.write_text(f"hosts = [({host!r}, {{'metalserve': {source}}})]\n")
    result = CliRunner().invoke(main, ["check", str(inventory)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


MIRROR = {"kind": "mirror", "endpoint": "http://10.0.0.1:8090"}
HUGE = "<an integer of 5000 digits>"

# (what is refused, inventory path, bad value, field the message must name, base data)
REFUSED: list[tuple[str, str, object, str, dict[str, Any] | None]] = [
    ("repo id with shell syntax", "model.repo_id", "a/b; rm -rf /", "metalserve.model.repo_id", None),
    ("revision with a unit line", "model.revision", "main\nExecStartPre=/bin/sh -c id",
     "metalserve.model.revision", None),
    ("catalogue id with a blank", "model.checkpoint", "x y", "metalserve.model.checkpoint",
     {**BASE, "model": {}}),
    ("served name with a unit line", "model.served_name", "m\nExecStartPre=/bin/true",
     "metalserve.model.served_name", None),
    ("local checkpoint dir with a line break", "model.local_dir", "/data/m\nx",
     "metalserve.model.local_dir", {**BASE, "model": {}}),
    ("300-character service name", "service.name", "s" * 300, "metalserve.service.name", None),
    ("service name with a template '@'", "service.name", "engine@1", "metalserve.service.name",
     None),
    ("user name with shell syntax", "service.user", "root;id", "metalserve.service.user", None),
    ("cluster address with a line break", "cluster.address", "10.0.0.1\nx",
     "metalserve.cluster.address", {**BASE, "cluster": {"node_rank": 0}}),
    ("cluster name with a slash", "cluster.name", "../x", "metalserve.cluster.name",
     {**BASE, "cluster": {"node_rank": 0}}),
    ("port of 5000 digits", "cluster.port", HUGE, "metalserve.cluster.port",
     {**BASE, "cluster": {"node_rank": 0}}),
    ("engine port out of range", "engine.port", 70000, "metalserve.engine.port", None),
    ("engine host with a second flag", "engine.host", "0.0.0.0 --x", "metalserve.engine.host",
     None),
    ("engine flag with a line break", "engine.kv_cache_dtype", "fp8\nExecStartPre=/bin/true",
     "metalserve.engine.kv_cache_dtype", None),
    ("engine version with shell syntax", "engine.version", "0.33.0;id",
     "metalserve.engine.version", None),
    ("download dir that is not absolute", "engine.download_dir", "models",
     "metalserve.engine.download_dir", None),
    ("env value with a new variable", "env", {"FOO": "1\nLD_PRELOAD=/tmp/x.so"},
     "metalserve.env.FOO", None),
    ("env name in lower case", "env", {"lower": "1"}, "metalserve.env.lower", None),
    ("NCCL value with a new variable", "nccl", {"NCCL_DEBUG": "INFO\nLD_PRELOAD=/tmp/x.so"},
     "metalserve.nccl.NCCL_DEBUG", None),
    ("NCCL name with a line break", "nccl", {"NCCL_X\nY": "1"}, "metalserve.nccl.'NCCL_X\\nY'",
     None),
    ("secrets file with a line break", "secrets.hf_token_file", "~/t\nx",
     "metalserve.secrets.hf_token_file", None),
    ("hub mirror that is not http(s)", "sources.weights.endpoint", "file:///etc/passwd",
     "metalserve.sources.weights.endpoint", {**BASE, "sources": {"weights": MIRROR}}),
    ("index URL with a blank", "sources.python.index_url", "http://10.0.0.1/simple --x",
     "metalserve.sources.python.index_url", None),
    ("sha256 with shell syntax", "sources.llamacpp.sha256", "abc' ; id #",
     "metalserve.sources.llamacpp.sha256", None),
    ("CUDA home that is relative", "diag.cuda_home", "usr/local/cuda",
     "metalserve.diag.cuda_home", None),
    ("MPI home with '..'", "diag.mpi_home", "/usr/lib/../../etc", "metalserve.diag.mpi_home",
     None),
    ("diag host with a blank", "diag.hosts", ["gpu1 gpu2"], "metalserve.diag.hosts.0", None),
    ("nccl-tests tag with shell syntax", "diag.source.ref", "v2.17.6;id",
     "metalserve.diag.source.ref", None),
    ("reports folder with a line break", "diag.reports_dir", "r\nx", "metalserve.diag.reports_dir",
     None),
    ("NCCL package version with an apt line", "nvidia.pins.nccl_version",
     "2.28.9-1\nPin-Priority: 1001+cuda13.0", "metalserve.nvidia.pins.nccl_version", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "field", "base"),
    [pytest.param(p, v, f, b, id=what) for what, p, v, f, b in REFUSED],
)
def test_check_refuses_the_value_in_one_line_naming_the_field(
    tmp_path: Path, path: str, value: object, field: str, base: dict[str, Any] | None
) -> None:
    code, stderr = _check(tmp_path, _with(path, value, base))
    assert code == 2
    assert stderr.count("\n") == 1, stderr
    assert f"host gpu1: {field}: expected " in stderr
    assert " — fix: " in stderr


def test_a_host_name_with_a_line_break_is_refused_and_shown_escaped(tmp_path: Path) -> None:
    code, stderr = _check(tmp_path, BASE, host="gpu1\n[Service]")
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith("error: host 'gpu1\\n[Service]': inventory host name: expected ")


def test_the_base_inventory_of_these_tests_is_valid(tmp_path: Path) -> None:
    """Each refusal above comes from its one changed value."""
    assert _check(tmp_path, BASE)[0] == 0


def _accepts(kind: object, value: str) -> bool:
    try:
        TypeAdapter(kind).validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("value", ["foo", "foo/bar", "123", "Foo-BAR_foo.bar123"])
def test_repo_ids_valid_for_huggingface_hub_are_accepted(value: str) -> None:
    assert _accepts(RepoId, value)
    assert _accepts(CatalogueId, value)


@pytest.mark.parametrize(
    "value", ["datasets/foo/bar", ".repo_id", "foo--bar", "foo.git", "other..repo..id", "x" * 97]
)
def test_repo_ids_huggingface_hub_refuses_are_refused(value: str) -> None:
    assert not _accepts(RepoId, value)


@pytest.mark.parametrize(
    "value", ["main", "v2.17.6", "refs/pr/1", "0c1e57098", "a" * 40, "release-1.0+cu130"]
)
def test_branches_tags_and_commits_are_accepted(value: str) -> None:
    assert _accepts(Revision, value)


@pytest.mark.parametrize(
    "value",
    ["a..b", "main.lock", "-main", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "x/.y",
     "x/", "@{-1}", "$(id)", "`id`", "main\n"],
)  # fmt: skip
def test_refs_git_check_ref_format_refuses_are_refused(value: str) -> None:
    assert not _accepts(Revision, value)


def test_service_names_fit_systemd_and_every_derived_file_name() -> None:
    assert _accepts(ServiceName, "metalserve-vllm")
    assert _accepts(ServiceName, "s" * 64)
    assert not _accepts(ServiceName, "s" * 65)
    for bad in ("a b", "a/b", "a\\x2db", "a@b", "-a", ".a", ""):
        assert not _accepts(ServiceName, bad), bad


def test_user_names_follow_useradd() -> None:
    assert _accepts(UserName, "metalserve") and _accepts(UserName, "_svc-1")
    for bad in ("Root", "1user", "a" * 33, "a b", "a:b"):
        assert not _accepts(UserName, bad), bad


def test_host_paths_are_absolute_and_normalized() -> None:
    assert _accepts(HostPath, "/usr/local/cuda")
    for bad in (
        "usr/local",
        "/usr/local/",
        "/usr//local",
        "/usr/./local",
        "/a/../b",
        "//x",
        "/a\0",
    ):
        assert not _accepts(HostPath, bad), bad


def test_env_names_are_posix_portable_names() -> None:
    assert _accepts(EnvName, "HF_XET_HIGH_PERFORMANCE") and _accepts(EnvName, "_X1")
    for bad in ("1X", "lower", "A-B", "A B", "A=B", ""):
        assert not _accepts(EnvName, bad), bad


def test_debian_versions_follow_policy() -> None:
    for good in ("2.28.9-1+cuda13.0", "1:2.3~rc1-4", "580.105.08-0ubuntu1"):
        assert _accepts(DebianVersion, good), good
    for bad in ("v2.28", "2.28 9", "2.28\n", "2.28;id"):
        assert not _accepts(DebianVersion, bad), bad


def test_check_of_an_inventory_that_calls_sys_exit_0_does_not_exit_0(tmp_path: Path) -> None:
    inventory = tmp_path / "exits.py"
    inventory.write_text("import sys\nsys.exit(0)\n")
    result = CliRunner().invoke(main, ["check", str(inventory)])
    assert result.exit_code == 2
    assert "the inventory exited (sys.exit(0)) while loading" in result.stderr


def test_render_of_a_300_character_service_name_is_one_line_not_a_crash(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        f"hosts = [('gpu1', {{'metalserve': {_with('service.name', 's' * 300)!r}}})]\n"
    )
    result = CliRunner().invoke(
        main, ["render", str(inventory), "--host", "gpu1", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "metalserve.service.name" in result.stderr
    assert not (tmp_path / "out").exists()


CHECKED_ELSEWHERE = {
    "HostSpec.profile": "must name a catalogue preset (HostSpec._profile_known)",
    "HardwareSpec.gpu": "must name a catalogue GPU (composition._first_problem)",
    "LlamaCppSettings.quant": "must be a quant type of QUANT_BITS_PER_WEIGHT",
    "NvidiaStackPins.driver_version": "must match 580.105.08's shape (_driver_shape)",
    "NvidiaStackPins.cuda_version": "must be a CUDA_MIN_DRIVER key (_driver_runs_the_toolkit)",
    "VllmSettings.speculative_config": "JSON-encoded into one argv word (engines.base)",
    "IfnameSelection.names": "interface names in NCCL's characters (ncclsyntax._check_ifname)",
    "HcaDevice.name": "HCA names in NCCL's characters (ncclsyntax._check_hca_name)",
    "PreflightSpec.skip": "keys must name a check of metalserve.preflight.CHECKS (PreflightSpec._known_with_reason)",
    "ServiceSpec.relax": "keys must name a directive of metalserve.hardening (ServiceSpec._relax_known_with_reason)",
}
"""Plain ``str`` fields whose value is checked against a closed list or encoded whole."""


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _holds_bare_str(annotation: object) -> bool:
    if annotation is str:
        return True
    if get_origin(annotation) is Annotated:
        return False  # a metalserve.types type (or another validated one)
    return any(_holds_bare_str(arg) for arg in get_args(annotation))


def _untyped_str_fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[str]:
    found: list[str] = []
    if model in seen:
        return found
    seen.add(model)
    for name, field in model.model_fields.items():
        validated = any(
            isinstance(m, AfterValidator | BeforeValidator) or getattr(m, "pattern", None)
            for m in field.metadata
        )
        if _holds_bare_str(field.annotation) and not validated:
            found.append(f"{model.__name__}.{name}")
        for inner in _models(field.annotation):
            found += _untyped_str_fields(inner, seen)
    return found


def test_every_text_field_of_the_inventory_is_a_type_or_checked_against_a_list() -> None:
    """A new field of the inventory that takes raw text fails here until it is given a type of
    metalserve.types (or a closed list, named above with where it is checked)."""
    untyped = _untyped_str_fields(HostSpec, set())
    assert sorted(set(untyped) - set(CHECKED_ELSEWHERE)) == []
    assert set(CHECKED_ELSEWHERE) <= set(untyped)  # the list above names no field twice over
