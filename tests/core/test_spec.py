"""Bad inventory data gets one line naming the host, the field and the fix."""

from __future__ import annotations

import pytest

from metalserve.errors import SpecError
from metalserve.spec import host_spec

GOOD = {
    "profile": "h200-sxm-8",
    "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 8},
}


def bad(**change: object) -> str:
    data = {**GOOD, **change}
    with pytest.raises(SpecError) as info:
        host_spec("gpu07", data)
    message = str(info.value)
    assert "\n" not in message and message.startswith("host gpu07: ")
    return message


def test_a_good_host_validates() -> None:
    assert host_spec("gpu07", GOOD).engine.name == "vllm"


def test_out_of_range_value() -> None:
    msg = bad(engine={"name": "vllm", "gpu_memory_utilization": 1.3})
    assert "metalserve.engine.gpu_memory_utilization" in msg and "1.3" in msg


def test_misspelled_key() -> None:
    msg = bad(engine={"name": "vllm", "tensor_paralel_size": 8})
    assert "metalserve.engine.tensor_paralel_size: unknown key" in msg and "fix:" in msg


def test_unknown_profile_lists_the_known_ones() -> None:
    assert "h200-sxm-8" in bad(profile="h300") and "metalserve.profile" in bad(profile="h300")


def test_unknown_engine() -> None:
    assert "set engine.name to vllm, sglang or llamacpp" in bad(engine={"name": "tgi"})


def test_model_must_be_named() -> None:
    assert "metalserve.model" in bad(model={})


def test_secrets_do_not_go_into_env() -> None:
    assert "metalserve.secrets" in bad(env={"HF_TOKEN": "hf_abc"})


def test_missing_host_data() -> None:
    with pytest.raises(SpecError, match="host gpu07: metalserve: missing"):
        host_spec("gpu07", None)
