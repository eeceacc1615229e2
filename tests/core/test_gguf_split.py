"""Whether a converted GGUF is cut into parts, how many, under which names, and what llama-server
is given.

Sources:
- The Hugging Face Hub recommends files "<200GB" and refuses files over 500 GB
  (huggingface/hub-docs docs/hub/storage-limits.md, "File size").
- llama.cpp 0c1e57098 src/llama.cpp ``llama_split_path``: ``"%s-%05d-of-%05d.gguf"`` with the part
  number counted from 1; llama-server is given part 1 and finds the others by that name.
- llama.cpp 0c1e57098 tools/quantize/README.md "Memory/Disk Requirements": Llama 3.1 8B, 70B and
  405B at 32.1, 280.9 and 1,625.1 GB (F32) quantize to Q4_K_M files of 4.9, 43.1 and 249.1 GB.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from metalserve.catalog.checkpoints import CHECKPOINTS
from metalserve.checkpoint import Checkpoint, WeightFormat
from metalserve.engines.llamacpp import QUANT_BITS_PER_WEIGHT
from metalserve.errors import PlanError
from metalserve.gguf import GGUF_SPLIT, split_parts, split_path
from metalserve.io.templating import render
from metalserve.plan import HostPlan, plan_alone
from metalserve.sizing import gguf_bytes_from
from metalserve.spec import host_spec

HUB_RECOMMENDED = 200 * 10**9
HUB_HARD_LIMIT = 500 * 10**9
GGUF_DIR = "/var/lib/metalserve/gguf"


def llamacpp_plan(model: dict[str, Any], quant: str = "Q4_K_M") -> HostPlan:
    return plan_alone(
        host_spec(
            "h1",
            {
                "profile": "sandbox-cpu",
                "access": {"clients": ["198.51.100.0/24"]},
                "model": model,
                "engine": {"name": "llamacpp", "quant": quant},
            },
        )
    )


def exec_start(plan: HostPlan) -> list[str]:
    (unit,) = [f for f in render(plan) if f.path == plan.service.unit_path]
    (line,) = [x for x in unit.content.splitlines() if x.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").split()


@pytest.mark.parametrize(
    ("estimate", "parts"),
    [
        (1, 1),
        (HUB_RECOMMENDED, 1),  # exactly the recommended size: one file
        (HUB_RECOMMENDED + 1, 2),
        (3 * HUB_RECOMMENDED, 3),
        (3 * HUB_RECOMMENDED + 1, 4),
    ],
)
def test_parts_are_planned_at_the_hub_s_recommended_size(estimate: int, parts: int) -> None:
    assert split_parts(estimate) == parts == max(1, math.ceil(estimate / HUB_RECOMMENDED))


def test_parts_are_named_as_llama_cpp_names_them() -> None:
    prefix = f"{GGUF_DIR}/m-Q4_K_M-parts/m-Q4_K_M"
    for index, count in [(1, 2), (2, 2), (7, 12), (1, 99999)]:
        expected = "%s-%05d-of-%05d.gguf" % (prefix, index, count)  # noqa: UP031 - llama.cpp's own format
        assert split_path(prefix, index, count) == expected
        found = GGUF_SPLIT.fullmatch(expected)
        assert found is not None
        assert (found["prefix"], int(found["index"]), int(found["count"])) == (prefix, index, count)


@pytest.mark.parametrize(
    ("original_f32_gb", "q4_k_m_gb"), [(32.1, 4.9), (280.9, 43.1), (1625.1, 249.1)]
)
def test_the_estimate_the_count_comes_from_is_within_1_percent_of_llama_cpp_s_figures(
    original_f32_gb: float, q4_k_m_gb: float
) -> None:
    """Parts are planned at 200 GB and allowed up to 500 GB: an estimate this close never needs a
    part more than planned."""
    llama = Checkpoint(
        id="meta-llama/Llama-3.1",
        repo_id=None,
        family="llama",
        format=WeightFormat.SAFETENSORS,
        weight_dtype="f32",
        bits_per_weight=32,
        weight_bytes=int(original_f32_gb * 1e9),
        weight_bytes_source="llama.cpp tools/quantize/README.md",
    )
    estimate = gguf_bytes_from(llama, "Q4_K_M")
    assert abs(estimate - q4_k_m_gb * 1e9) <= 0.01 * q4_k_m_gb * 1e9


def test_a_large_conversion_is_split_and_llama_server_is_given_part_1() -> None:
    ckpt = CHECKPOINTS["zai-org/GLM-4.7-FP8"]
    plan = llamacpp_plan({"checkpoint": ckpt.id})
    estimate = int(ckpt.weight_bytes * QUANT_BITS_PER_WEIGHT["Q4_K_M"] / 8)  # FP8: 8 bits stored
    parts = math.ceil(estimate / HUB_RECOMMENDED)
    assert estimate > HUB_RECOMMENDED and parts == 2
    assert plan.gguf is not None and plan.gguf.split is not None
    split = plan.gguf.split
    name = "zai-org--GLM-4.7-FP8-Q4_K_M"
    folder = f"{GGUF_DIR}/{name}-parts"
    first = f"{folder}/{name}-00001-of-00002.gguf"
    assert (split.folder, split.prefix, split.parts) == (folder, f"{folder}/{name}", parts)
    assert (split.estimate_bytes, split.part_max_bytes) == (estimate, HUB_HARD_LIMIT)
    assert split.first == plan.gguf.model_path == first
    assert split.names() == (f"{name}-00001-of-00002.gguf", f"{name}-00002-of-00002.gguf")
    assert plan.gguf.out_path == f"{GGUF_DIR}/{name}.gguf"  # quantized there, then cut
    argv = exec_start(plan)
    assert argv[argv.index("-m") + 1] == first
    assert plan.llamacpp is not None
    assert plan.llamacpp.targets == ("llama-server", "llama-quantize", "llama-gguf-split")


def test_a_conversion_of_one_part_is_served_as_one_file_and_builds_no_splitter() -> None:
    ckpt = CHECKPOINTS["zai-org/GLM-4.5-Air-FP8"]
    plan = llamacpp_plan({"checkpoint": ckpt.id})
    assert int(ckpt.weight_bytes * QUANT_BITS_PER_WEIGHT["Q4_K_M"] / 8) <= HUB_RECOMMENDED
    assert plan.gguf is not None and plan.gguf.split is None
    single = f"{GGUF_DIR}/zai-org--GLM-4.5-Air-FP8-Q4_K_M.gguf"
    assert plan.gguf.model_path == plan.gguf.out_path == single
    argv = exec_start(plan)
    assert argv[argv.index("-m") + 1] == single
    assert plan.llamacpp is not None and "llama-gguf-split" not in plan.llamacpp.targets


def test_the_part_count_follows_the_quantization() -> None:
    """The same checkpoint at Q8_0 weighs more: more parts, and part 1 names the new count."""
    ckpt = CHECKPOINTS["zai-org/GLM-5.2-FP8"]
    for quant in ("Q4_K_M", "Q8_0"):
        plan = llamacpp_plan({"checkpoint": ckpt.id}, quant)
        parts = math.ceil(ckpt.weight_bytes * QUANT_BITS_PER_WEIGHT[quant] / 8 / HUB_RECOMMENDED)
        assert plan.gguf is not None and plan.gguf.split is not None
        assert plan.gguf.split.parts == parts
        assert plan.gguf.model_path.endswith(f"-{quant}-00001-of-{parts:05d}.gguf")
    assert parts == 5  # Q8_0: 755.6 GB stored at 8 bits, 8.5 bits a weight: 802.9 GB


def test_a_conversion_of_unknown_size_is_not_split_and_says_so() -> None:
    plan = llamacpp_plan({"repo_id": "org/tiny"})
    assert plan.gguf is not None and plan.gguf.split is None
    assert "GGUF conversion: the output's size is not known, so it is not split" in plan.warnings


def test_a_gguf_repository_split_already_is_served_from_its_first_part() -> None:
    first = "Q4_K_M/GLM-5.2-Q4_K_M-00001-of-00005.gguf"
    plan = llamacpp_plan({"repo_id": "acme/GLM-5.2-GGUF", "gguf_file": first})
    assert plan.gguf is None  # nothing to convert, nothing to cut
    assert not [w for w in plan.warnings if "is not split" in w]  # nor a warning about it
    assert plan.weights is not None
    assert plan.weights.allow_patterns == (
        "Q4_K_M/GLM-5.2-Q4_K_M-[0-9][0-9][0-9][0-9][0-9]-of-00005.gguf",
    )
    argv = exec_start(plan)
    assert argv[argv.index("-m") + 1] == f"/var/lib/metalserve/models/acme--GLM-5.2-GGUF/{first}"
    assert plan.llamacpp is not None and "llama-gguf-split" not in plan.llamacpp.targets


def test_a_gguf_file_named_for_a_safetensors_checkpoint_is_one_line() -> None:
    with pytest.raises(PlanError) as refused:
        llamacpp_plan(
            {
                "checkpoint": "zai-org/GLM-4.7-FP8",
                "repo_id": "zai-org/GLM-4.7-FP8",
                "gguf_file": "GLM-4.7-Q4_K_M.gguf",
            }
        )
    assert str(refused.value) == (
        "host h1: metalserve.model.gguf_file: zai-org/GLM-4.7-FP8 is a safetensors checkpoint, "
        "not a GGUF — fix: leave gguf_file out, or name a GGUF checkpoint"
    )


def test_a_checkpoint_no_route_converts_is_refused_in_one_line_naming_the_host() -> None:
    awq = CHECKPOINTS["zai-org/GLM-4.5-Air-FP8"].model_copy(update={"quant_method": "awq"})
    spec = host_spec(
        "h1",
        {
            "profile": "sandbox-cpu",
            "access": {"clients": ["198.51.100.0/24"]},
            "model": {"repo_id": "zai-org/GLM-4.5-Air-FP8"},
            "engine": {"name": "llamacpp"},
        },
    )
    with pytest.raises(PlanError) as refused:
        plan_alone(spec, awq)
    assert str(refused.value).startswith(
        "host h1: metalserve.model: expected a checkpoint llama.cpp can convert, found "
        "quant_method 'awq' — fix: use the model's BF16 checkpoint or a GGUF repository"
    )
