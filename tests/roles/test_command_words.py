"""The weights, GGUF and llama.cpp commands keep every value from the plan one shell word.

The commands are built from real plans, then from the same plans with their values replaced by
arbitrary text (blanks, quotes, ``;``, ``$(…)``, line breaks — what the inventory types refuse,
in case a value ever reaches a role untyped): ``shlex.split`` must give each value back whole.
"""

from __future__ import annotations

import shlex

from hypothesis import given, settings
from hypothesis import strategies as st

from metalserve.plan import HostPlan, plan_alone
from metalserve.spec import host_spec
from roles.gguf import convert_command
from roles.llamacpp import build_command, fetch_command
from roles.weights import fetch_command as weights_command

SCRIPT = "/opt/metalserve/bin/script.py"
values = st.text(st.characters(exclude_characters="\0"), min_size=1, max_size=24)
"""Anything a shell string can hold: a NUL cannot be in an argument at all."""


def _plan(engine: str, profile: str) -> HostPlan:
    data = {"profile": profile, "model": {"repo_id": "org/model"}, "engine": {"name": engine}}
    if engine == "vllm":
        data["engine"]["tensor_parallel_size"] = 8
    return plan_alone(host_spec("gpu1", data))


VLLM = _plan("vllm", "h200-sxm-8")
LLAMACPP = _plan("llamacpp", "rtx4090-4")
SPLIT = plan_alone(
    host_spec(
        "gpu1",
        {
            "profile": "rtx4090-4",
            "model": {"checkpoint": "zai-org/GLM-4.7-FP8"},  # a GGUF of 2 parts
            "engine": {"name": "llamacpp"},
        },
    )
)


def _weights_argv(plan: HostPlan) -> list[str]:
    w = plan.weights
    assert w is not None
    return [f"{w.hub_venv}/bin/python", SCRIPT, "--repo",
            w.repo_id, "--revision", w.revision, "--local-dir", w.local_dir,
            *(a for p in w.allow_patterns for a in ("--allow", p)),
            *(a for p in w.ignore_patterns for a in ("--ignore", p)),
            "--max-workers", str(w.max_workers), "--progress-every", str(w.progress_every_s)]  # fmt: skip


def test_the_weights_command_splits_into_the_plans_values() -> None:
    assert VLLM.weights is not None
    assert shlex.split(weights_command(VLLM.weights, SCRIPT)) == _weights_argv(VLLM)


@settings(max_examples=40, deadline=None)
@given(repo=values, revision=values, local_dir=values, venv=values)
def test_any_weights_value_stays_one_word(
    repo: str, revision: str, local_dir: str, venv: str
) -> None:
    assert VLLM.weights is not None
    weights = VLLM.weights.model_copy(
        update={"repo_id": repo, "revision": revision, "local_dir": local_dir, "hub_venv": venv}
    )
    plan = VLLM.model_copy(update={"weights": weights})
    assert shlex.split(weights_command(weights, SCRIPT)) == _weights_argv(plan)


def _gguf_argv(plan: HostPlan) -> list[str]:
    g, b = plan.gguf, plan.llamacpp
    assert g is not None and b is not None
    return ["flock", f"{g.out_path}.lock", f"{g.converter_venv}/bin/python", SCRIPT,
            "--llamacpp-src", f"{b.current}/src", "--llamacpp-commit", b.version,
            "--quantize", f"{b.bin}/llama-quantize", "--model-dir", g.model_dir,
            "--f16", g.f16_path, "--out", g.out_path, "--type", g.quant,
            "--converter-handles", ",".join(g.converter_methods),
            "--bf16-first", ",".join(g.bf16_methods), "--bf16-dir", g.bf16_dir,
            "--drop-f16", *_split_argv(plan)]  # fmt: skip


def _split_argv(plan: HostPlan) -> list[str]:
    g, b = plan.gguf, plan.llamacpp
    assert g is not None and b is not None
    if g.split is None:
        return []
    return ["--gguf-split", f"{b.bin}/llama-gguf-split", "--split-prefix", g.split.prefix,
            "--split-parts", str(g.split.parts), "--split-first", g.split.first,
            "--split-max-bytes", str(g.split.part_max_bytes),
            "--split-estimate", str(g.split.estimate_bytes)]  # fmt: skip


def test_the_gguf_command_splits_into_the_plans_values() -> None:
    for plan in (LLAMACPP, SPLIT):
        assert plan.gguf is not None and plan.llamacpp is not None
        command = convert_command(plan, plan.gguf, plan.llamacpp, SCRIPT)
        assert shlex.split(command) == _gguf_argv(plan)
    assert SPLIT.gguf is not None and SPLIT.gguf.split is not None
    assert "--split-first" in _gguf_argv(SPLIT) and "--split-first" not in _gguf_argv(LLAMACPP)


@settings(max_examples=40, deadline=None)
@given(v=st.lists(values, min_size=2, max_size=2))
def test_any_split_value_stays_one_word(v: list[str]) -> None:
    """The split's paths are typed (absolute host paths); the check holds whatever they are."""
    assert SPLIT.gguf is not None and SPLIT.gguf.split is not None and SPLIT.llamacpp is not None
    split = SPLIT.gguf.split.model_copy(update={"prefix": v[0], "folder": v[1]})
    gguf = SPLIT.gguf.model_copy(update={"split": split})
    plan = SPLIT.model_copy(update={"gguf": gguf})
    assert shlex.split(convert_command(plan, gguf, SPLIT.llamacpp, SCRIPT)) == _gguf_argv(plan)


@settings(max_examples=40, deadline=None)
@given(st.lists(values, min_size=8, max_size=8))
def test_any_gguf_value_stays_one_word(v: list[str]) -> None:
    assert LLAMACPP.gguf is not None and LLAMACPP.llamacpp is not None
    gguf = LLAMACPP.gguf.model_copy(
        update={
            "out_path": v[0],
            "converter_venv": v[1],
            "model_dir": v[2],
            "f16_path": v[3],
            "quant": v[4],
            "bf16_dir": v[7],
        }  # fmt: skip
    )
    build = LLAMACPP.llamacpp.model_copy(update={"current": v[5], "version": v[6]})
    plan = LLAMACPP.model_copy(update={"gguf": gguf, "llamacpp": build})
    assert shlex.split(convert_command(plan, gguf, build, SCRIPT)) == _gguf_argv(plan)


def _build_values_are_words(plan: HostPlan) -> None:
    build = plan.llamacpp
    assert build is not None
    outer = shlex.split(build_command(build))
    assert outer[:2] == ["mkdir", "-p"] and outer[-2] == "-c"
    # the guard reads the stamp inside "$(…)", which shlex does not parse: its path must be there
    # shell-quoted; the build steps after it are plain words
    guard, steps = outer[-1].split(" || {", 1)
    assert f"cat {shlex.quote(f'{build.prefix}/.metalserve-build')} 2>/dev/null" in guard
    script = shlex.split(steps.removesuffix("; }"))
    partial = f"{build.prefix}.partial"
    for value in (build.source_tarball, build.prefix, partial, *build.cmake_flags, *build.targets):
        assert value in script, value


def _fetch_values_are_words(plan: HostPlan) -> None:
    build = plan.llamacpp
    assert build is not None
    words = shlex.split(fetch_command(build))
    assert str(build.source.url) in words
    assert build.source_tarball in words
    if build.source.kind == "git":
        assert build.version in words
    if build.source.sha256:
        assert f"{build.source.sha256}  {build.source_tarball}.partial" in words


def test_the_llamacpp_commands_keep_the_plans_values_whole() -> None:
    _build_values_are_words(LLAMACPP)
    _fetch_values_are_words(LLAMACPP)


@settings(max_examples=40, deadline=None)
@given(
    paths=st.lists(values, min_size=3, max_size=3),
    flags=st.lists(values, min_size=1, max_size=3),
    targets=st.lists(values, min_size=1, max_size=3),
    url=values,
    version=values,
    kind=st.sampled_from(["tarball", "git"]),
)
def test_any_llamacpp_value_stays_one_word(
    paths: list[str], flags: list[str], targets: list[str], url: str, version: str, kind: str
) -> None:
    build = LLAMACPP.llamacpp
    assert build is not None
    source = build.source.model_copy(update={"kind": kind, "url": url, "sha256": "ab" * 32})
    build = build.model_copy(
        update={
            "prefix": paths[0],
            "current": paths[1],
            "source_tarball": paths[2],
            "cmake_flags": tuple(flags),
            "targets": tuple(targets),
            "version": version,
            "source": source,
        }  # fmt: skip
    )
    plan = LLAMACPP.model_copy(update={"llamacpp": build})
    _build_values_are_words(plan)
    _fetch_values_are_words(plan)
