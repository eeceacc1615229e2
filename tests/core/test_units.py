"""Rendered units: valid for systemd, no secret inlined, engine-specific credential handling."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from metalserve.io.templating import render
from metalserve.plan import plan_alone
from metalserve.spec import host_spec
from metalserve.units import systemd_quote
from tests.core.shipped import shipped_plans

SECRET = "sk-this-must-never-appear"


def _plans():  # noqa: ANN202
    yield from shipped_plans()
    yield plan_alone(
        host_spec(
            "keyed",
            {
                "profile": "h200-sxm-8",
                "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
                "engine": {"name": "vllm", "tensor_parallel_size": 8},
                "secrets": {"api_key_file": "/root/api_key", "hf_token_file": "/root/hf"},
                "service": {"keep_warm_minutes": 14},
            },
        )
    )


PLANS = list(_plans())


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.host)
def test_systemd_analyze_verify_accepts_every_rendered_unit(plan, tmp_path: Path) -> None:  # noqa: ANN001
    units = []
    for f in render(plan):
        if f.path.endswith((".service", ".timer")):
            target = tmp_path / Path(f.path).name
            target.write_text(f.content)
            units.append(str(target))
    # units the driver packages install on a GPU host, so verify can resolve the dependencies
    for dependency in ("nvidia-fabricmanager.service", "nvidia-persistenced.service"):
        (tmp_path / dependency).write_text("[Service]\nExecStart=/bin/true\n")
    # the ExecStart binaries live on the target host, not here: "not executable" lines are expected
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"},
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        if "is not executable" not in line
        and "No such file or directory" not in line
        and "Failed to prepare filename" not in line
        and "Command " not in line
        and "Unit configuration has fatal error" not in line
        and "System has not been booted with systemd" not in line
        and line.strip()
    ]
    assert not problems, "\n".join(problems)


def test_units_reference_secrets_by_file_only(tmp_path: Path) -> None:
    keyed = PLANS[-1]
    text = "\n".join(f.content for f in render(keyed))
    assert "LoadCredential=api_key:/etc/metalserve/credentials/api_key" in text
    assert "--api-key" not in text and SECRET not in text
    assert "credential-env VLLM_API_KEY=api_key --" in text


def test_exec_start_words_survive_systemd_quoting() -> None:
    assert systemd_quote('{"method": "mtp"}') == '\'{"method": "mtp"}\''
    assert systemd_quote("50%") == "50%%"
    assert systemd_quote("$HOME") == "'$$HOME'"
    assert systemd_quote("%d/api_key", allow_specifiers=True) == "%d/api_key"
