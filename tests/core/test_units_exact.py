"""The fields of the rendered units, decided by metalserve.units, one by one.

Sources:
- systemd.service(5) "Command lines": ``%`` starts a specifier (``%%`` is a literal ``%``), ``$``
  expands a variable (``$$`` is a literal ``$``); words are quoted with single or double quotes and
  C-style backslash escapes. ``%d`` is the credentials directory (systemd.exec(5) LoadCredential=).
- systemd src/basic/env-file.c: inside double quotes ``\\ " ` $`` are unescaped, as in POSIX sh.
- NVIDIA Fabric Manager user guide: on NVSwitch systems CUDA jobs need nvidia-fabricmanager running
  (Requires=), and persistence mode keeps the driver loaded (nvidia-persistenced).
"""

from __future__ import annotations

from typing import Any

import pytest

from metalserve.plan import HostPlan, plan_alone
from metalserve.spec import host_spec
from metalserve.units import env_file_value, env_variables, exec_start, systemd_quote, unit_files

CLIENTS = {"clients": ["198.51.100.0/24"]}


def plan(host: str, **metalserve: Any) -> HostPlan:
    return plan_alone(host_spec(host, {"access": CLIENTS, **metalserve}))


def h200(**extra: Any) -> HostPlan:
    return plan(
        "gpu-a",
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8, "served_model_name": "glm"},
        **extra,
    )


def h100x4() -> HostPlan:
    return plan(
        "gpu-b",
        profile="h100-sxm-4",
        model={"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
        engine={"name": "sglang", "tp_size": 4},
    )


def by_template(p: HostPlan) -> dict[str, Any]:
    return {f.template: f for f in unit_files(p)}


def test_nvswitch_engine_requires_the_fabric_manager_and_follows_persistenced() -> None:
    unit = by_template(h200())["engine.service.j2"]
    assert unit.context["after"] == ["nvidia-persistenced.service", "nvidia-fabricmanager.service"]
    assert unit.context["requires"] == ["nvidia-fabricmanager.service"]


def test_nvlink_without_nvswitch_has_no_fabric_manager_to_require() -> None:
    unit = by_template(h100x4())["engine.service.j2"]
    assert unit.context["after"] == ["nvidia-persistenced.service"]
    assert unit.context["requires"] == []


def test_a_cpu_host_waits_for_no_nvidia_service() -> None:
    p = plan(
        "cpu-a",
        profile="sandbox-cpu",
        model={"checkpoint": "glm52-Q4_K_M.gguf"},
        engine={"name": "llamacpp"},
    )
    files = by_template(p)
    assert files["engine.service.j2"].context["after"] == []
    assert files["engine.service.j2"].context["requires"] == []
    assert set(files) == {"engine.env.j2", "engine.service.j2"}  # llama.cpp reads its key file


def test_the_engine_unit_fields() -> None:
    p = h200()
    env, unit, wrapper = unit_files(p)
    assert (env.path, env.template, env.mode, env.owner) == (
        "/etc/metalserve/metalserve-vllm.env",
        "engine.env.j2",
        "0644",
        "root",
    )
    assert (unit.path, unit.template, unit.mode) == (
        "/etc/systemd/system/metalserve-vllm.service",
        "engine.service.j2",
        "0644",
    )
    ctx = unit.context
    assert (ctx["engine"], ctx["served_model"], ctx["user"]) == ("vllm", "glm", p.service.user)
    assert ctx["env_file"] == "/etc/metalserve/metalserve-vllm.env"
    assert ctx["credentials"] == [("api_key", "/etc/metalserve/credentials/api_key")]
    assert ctx["drain_seconds"] == 120
    assert ctx["restart"] == "on-failure"
    assert ctx["hardening"] == p.service.hardening.engine
    assert ctx["exec_start"] == exec_start(p)
    # vLLM reads its key from VLLM_API_KEY: a wrapper exports it from the credential
    assert (wrapper.path, wrapper.template, wrapper.mode, wrapper.context["header"]) == (
        "/opt/metalserve/bin/credential-env",
        "credential-env.sh.j2",
        "0755",
        "Rendered by metalserve for host gpu-a from templates/credential-env.sh.j2; do not edit "
        "by hand.",
    )


def test_every_file_says_which_host_and_template_made_it() -> None:
    for f in unit_files(h200(service={"keep_warm_minutes": 14})):
        assert f.context["header"] == (
            f"Rendered by metalserve for host gpu-a from templates/{f.template}; do not edit by "
            "hand."
        )


def test_keep_warm_adds_a_service_and_its_timer() -> None:
    p = h200(service={"keep_warm_minutes": 14})
    files = unit_files(p)
    assert [f.template for f in files] == [
        "engine.env.j2",
        "engine.service.j2",
        "credential-env.sh.j2",
        "keepwarm.service.j2",
        "keepwarm.timer.j2",
    ]
    service, timer = files[3], files[4]
    assert service.path == "/etc/systemd/system/metalserve-vllm-keepwarm.service"
    assert timer.path == "/etc/systemd/system/metalserve-vllm-keepwarm.timer"
    assert service.context["service"] == timer.context["service"] == "metalserve-vllm"
    assert service.context["minutes"] == timer.context["minutes"] == 14
    assert service.context["health_url"] == "http://127.0.0.1:8000/health"
    assert service.context["hardening"] == p.service.hardening.keepwarm
    assert "health_url" not in timer.context and "hardening" not in timer.context
    assert service.mode == timer.mode == "0644"


def test_exec_start_wraps_vllm_in_the_credential_exporter() -> None:
    p = h200()
    words = exec_start(p).split(" ")
    assert words[:3] == ["/opt/metalserve/bin/credential-env", "VLLM_API_KEY=api_key", "--"]
    assert words[3:] == [systemd_quote(a, allow_specifiers=True) for a in p.service.exec_argv]


def test_exec_start_of_sglang_is_its_argv_with_the_key_config_from_the_credentials() -> None:
    p = h100x4()
    assert p.service.secret_env == ()
    text = exec_start(p)
    assert text == " ".join(systemd_quote(a, allow_specifiers=True) for a in p.service.exec_argv)
    assert text.endswith("--config %d/sglang-api-key.yaml")
    assert "credential-env" not in text
    assert "credential-env.sh.j2" not in by_template(p)


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("vllm", "vllm"),
        ("--max-model-len=131072", "--max-model-len=131072"),
        ("/opt/a_b@c%+d:e,f.g", "/opt/a_b@c%%+d:e,f.g"),
        ("50%", "50%%"),
        ("$HOME", "'$$HOME'"),
        ("a b", "'a b'"),
        ("it's", "'it\\'s'"),
        ("back\\slash", "'back\\\\slash'"),
        ('{"method": "mtp"}', '\'{"method": "mtp"}\''),
        ("%d/api_key", "%%d/api_key"),  # a specifier only where allowed
        ("", "''"),
    ],
)
def test_systemd_quote(word: str, quoted: str) -> None:
    assert systemd_quote(word) == quoted


def test_only_the_credentials_directory_specifier_survives_where_allowed() -> None:
    assert systemd_quote("%d/api_key", allow_specifiers=True) == "%d/api_key"
    assert systemd_quote("%h/api_key", allow_specifiers=True) == "%%h/api_key"
    assert systemd_quote("x%d/y", allow_specifiers=True) == "x%d/y"
    assert systemd_quote("%d", allow_specifiers=True) == "%%d"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("1", "1"),
        ("", ""),
        ("=ib0", "=ib0"),
        ("^docker,lo", "^docker,lo"),
        ("/opt/x_y@z%+a:b,c.d-e", "/opt/x_y@z%+a:b,c.d-e"),
        ("a b", '"a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("$PATH", '"\\$PATH"'),
        ("`id`", '"\\`id\\`"'),
        ("back\\", '"back\\\\"'),
        ("it's", '"it\'s"'),
    ],
)
def test_env_file_values(value: str, line: str) -> None:
    assert env_file_value(value) == line


def test_env_variables_carry_the_nccl_reason_and_source() -> None:
    p = h200(env={"HF_XET_HIGH_PERFORMANCE": "1", "X_SPACE": "a b"})
    rows = {r["name"]: r for r in env_variables(p)}
    nccl = {s.name: s for s in p.nccl.settings}
    assert [r["name"] for r in env_variables(p)] == [name for name, _ in p.environment]
    lo = rows["NCCL_SOCKET_IFNAME"]
    assert (lo["value"], lo["reason"], lo["source"]) == (
        "lo",
        nccl["NCCL_SOCKET_IFNAME"].reason,
        nccl["NCCL_SOCKET_IFNAME"].source,
    )
    assert rows["HF_HUB_OFFLINE"] == {
        "name": "HF_HUB_OFFLINE",
        "value": "1",
        "reason": "",
        "source": "",
    }
    assert rows["X_SPACE"]["value"] == '"a b"'
    assert by_template(p)["engine.env.j2"].context["variables"] == env_variables(p)
