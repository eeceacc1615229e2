"""Engine locks: kept files match their index, the plan offers the node the right ones, a driver
too old for the locked CUDA runtime is refused, and the engines run quiet and offline."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from metalserve import plan as plan_module
from metalserve.catalog import pins
from metalserve.catalog.engine_locks import (
    LOCKED,
    LOCKS,
    TARGETS,
    EngineLock,
    cuda_major_of,
    lock_for,
    lock_name,
)
from metalserve.catalog.nvidia_stack import cuda_runtime_problem
from metalserve.errors import PlanError
from metalserve.plan import plan_alone, plan_hosts
from metalserve.spec import host_spec

REPO = Path(__file__).resolve().parents[2]


def plan(**data: object):  # noqa: ANN201
    return plan_alone(host_spec("h1", data))


VLLM_H200 = {
    "profile": "h200-sxm-8",
    "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 8},
}
SGLANG_H100 = {
    "profile": "h100-sxm-8",
    "model": {"checkpoint": "zai-org/GLM-4.7-FP8"},
    "engine": {"name": "sglang", "tp_size": 8},
}


def spark_cluster(engine: dict[str, object]) -> list[dict[str, object]]:
    return [
        {
            "profile": "dgx-spark-3",
            "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
            "engine": engine,
            "fabric": {
                "socket_ifname": "enp1s0f0np0",
                "ib_hca": ["rocep1s0f0"],
                "gid_index": 3,
                "traffic_class": 106,
            },
            "cluster": {"name": "spark", "node_rank": rank, "address": f"192.0.2.1{rank + 1}"},
        }
        for rank in range(3)
    ]


@pytest.mark.parametrize("lock", [k for k in LOCKS if k.sha256], ids=lambda k: k.path)
def test_every_kept_lock_is_the_file_its_index_names(lock: EngineLock) -> None:
    text = (REPO / lock.path).read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == lock.sha256
    assert f"{lock.engine}=={lock.version} \\" in text.splitlines()
    assert lock.cuda_major == cuda_major_of(text)
    # every requirement is pinned and hashed: nothing unpinned below the engine
    requirements = [line for line in text.splitlines() if line and line[0].isalnum()]
    assert requirements and all(
        re.match(r"^[\w.-]+(\[[\w,-]+\])?==\S+ \\$", r) for r in requirements
    )


def test_every_engine_release_is_locked_or_refused_for_every_target() -> None:
    """A pin bumped without running scripts/lock_engines.py fails here, not on a host."""
    for pin in LOCKED:
        for target in TARGETS:
            lock = lock_for(pin.name, pin.version, target.python, target.arch)
            assert lock is not None, f"{pin.requirement} not locked for {target.distro}"
            assert (
                lock.path == f"locks/{lock_name(pin.name, pin.version, target.python, target.arch)}"
            )
            assert (lock.sha256 is None) == (lock.unavailable is not None)


def test_python_310_has_no_lock_and_says_why() -> None:
    """vLLM 0.33.0 requires Python >= 3.11 and SGLang 0.5.23 ships cp311+ wheels only (PyPI)."""
    for pin in (pins.VLLM, pins.SGLANG):
        lock = lock_for(pin.name, pin.version, "3.10", "x86_64")
        assert lock is not None and lock.sha256 is None
        assert pin.name in str(lock.unavailable)


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ("nvidia-cuda-runtime==13.0.96 \\\n", 13),
        ("nvidia-cuda-runtime-cu12==12.8.90 \\\n", 12),
        ("numpy==2.2.6 \\\n", None),
    ],
)
def test_cuda_major_read_from_the_runtime_wheel(text: str, major: int | None) -> None:
    assert cuda_major_of(text) == major


@pytest.mark.parametrize(
    ("driver", "major", "runs"),
    [
        ("580.65.06", 13, True),  # CUDA 13.0 GA's own driver
        ("580.65.05", 13, False),
        ("570.133.20", 13, False),
        ("525.60.13", 12, True),  # CUDA 12.x minor version compatibility floor
        ("525.60.12", 12, False),
        ("580.105.08", 12, True),
        ("999.1.1", 14, False),  # no floor known: refused rather than guessed
    ],
)
def test_driver_floor_per_cuda_major(driver: str, major: int, runs: bool) -> None:
    problem = cuda_runtime_problem(driver, major)
    assert (problem is None) == runs
    if problem and major != 14:
        assert driver in problem and f"CUDA {major}" in problem


def test_a_discrete_gpu_node_is_offered_every_target_and_a_spark_only_arm64() -> None:
    h200 = plan(**VLLM_H200)
    assert {(k.python, k.arch) for k in h200.engine.locks} == {(t.python, t.arch) for t in TARGETS}
    spark = plan_hosts(
        [
            host_spec(f"s{i}", d)
            for i, d in enumerate(
                spark_cluster(
                    {
                        "name": "vllm",
                        "pipeline_parallel_size": 3,
                        "tensor_parallel_size": 1,
                    }
                )
            )
        ]
    )
    for node in spark:
        assert [(k.python, k.arch) for k in node.engine.locks] == [("3.12", "aarch64")]


def test_llamacpp_has_no_engine_lock() -> None:
    p = plan(
        profile="sandbox-cpu",
        model={"repo_id": "metalserve/tiny-moe"},
        engine={"name": "llamacpp"},
    )
    assert p.engine.locks == () and p.engine.parser_args == ()


def test_a_release_without_an_arm64_wheel_is_refused_for_a_spark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x86_only = tuple(
        k
        if k.arch == "x86_64"
        else k.model_copy(
            update={"sha256": None, "unavailable": "no wheels for manylinux_2_39_aarch64"}
        )
        for k in LOCKS
    )
    monkeypatch.setattr(
        plan_module,
        "locks_for",
        lambda engine, version: tuple(
            k for k in x86_only if (k.engine, k.version) == (engine, version)
        ),
    )
    specs = [
        host_spec(f"s{i}", d)
        for i, d in enumerate(spark_cluster({"name": "vllm", "pipeline_parallel_size": 3}))
    ]
    with pytest.raises(PlanError) as refused:
        plan_hosts(specs)
    message = str(refused.value)
    assert "\n" not in message
    assert "metalserve.engine.version" in message and "aarch64" in message
    assert "no wheels for manylinux_2_39_aarch64" in message


def test_a_driver_pin_older_than_the_locked_cuda_runtime_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The NVIDIA pins keep the driver at CUDA 13's floor, so a lock is made to want CUDA 14."""
    cuda14 = tuple(k.model_copy(update={"cuda_major": 14}) if k.sha256 else k for k in LOCKS)
    monkeypatch.setattr(
        plan_module,
        "locks_for",
        lambda engine, version: tuple(
            k for k in cuda14 if (k.engine, k.version) == (engine, version)
        ),
    )
    with pytest.raises(PlanError) as refused:
        plan(**VLLM_H200)
    message = str(refused.value)
    assert message.startswith("host h1: metalserve.nvidia.pins.driver_version: vllm ")
    assert "CUDA 14" in message and "fix:" in message and "\n" not in message


def test_the_parser_check_gets_the_units_engine_arguments_without_secrets() -> None:
    vllm = plan(**VLLM_H200)
    argv = vllm.service.exec_argv
    assert vllm.engine.parser_args == argv[argv.index("serve") + 1 :]
    sglang = plan(**SGLANG_H100)
    argv = sglang.service.exec_argv
    # the key's --config (a credential only the unit can read) stays out of the check
    assert argv[-2] == "--config"
    assert sglang.engine.parser_args == argv[argv.index("--model-path") : -2]
    assert not any("%d" in a or "api" in a.lower() for a in sglang.engine.parser_args)


def test_engines_serve_offline_and_report_no_usage() -> None:
    vllm = plan(**VLLM_H200).environment_dict()
    assert vllm["VLLM_NO_USAGE_STATS"] == "1" and vllm["DO_NOT_TRACK"] == "1"
    sglang = plan(**SGLANG_H100).environment_dict()
    for env in (vllm, sglang):
        assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert "VLLM_NO_USAGE_STATS" not in sglang


def test_a_gguf_without_a_repository_is_named_as_provided_by_hand() -> None:
    """Seed 000's 4090 setup serves glm52-Q4_K_M.gguf, which no repository holds: the plan says
    nothing fetches it, and the service role refuses to write the unit until the file is there."""
    p = plan(
        profile="rtx4090-4",
        model={"checkpoint": "glm52-Q4_K_M.gguf"},
        engine={"name": "llamacpp", "n_gpu_layers": 48},
    )
    model = p.service.exec_argv[p.service.exec_argv.index("-m") + 1]
    assert p.weights is None and p.gguf is None
    assert [path for path, _ in p.service.unsourced] == [model]
    assert any(w.startswith("metalserve.model.checkpoint: glm52-Q4_K_M.gguf") for w in p.warnings)
    converted = plan(
        profile="rtx4090-4", model={"repo_id": "org/model"}, engine={"name": "llamacpp"}
    )
    assert converted.service.unsourced == ()
