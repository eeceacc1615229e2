"""Which files a host fetches (matched as huggingface_hub matches them), the GGUF a repository
serves, and the shared folder a cluster downloads into once."""

from __future__ import annotations

from typing import Any

import pytest
from huggingface_hub.utils import filter_repo_objects

from metalserve.checkpoint import WeightFormat
from metalserve.errors import MetalserveError
from metalserve.plan import HostPlan, plan_alone, plan_hosts
from metalserve.spec import host_spec
from metalserve.weights import allow_patterns, gguf_patterns, ignore_patterns, unit_name

LLAMA_REPO = [
    # meta-llama/Llama-3.1-8B-Instruct's files as the Hub lists them
    ".gitattributes", "LICENSE", "README.md", "USE_POLICY.md", "config.json",
    "generation_config.json", "model-00001-of-00004.safetensors",
    "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
    "model-00004-of-00004.safetensors", "model.safetensors.index.json",
    "original/consolidated.00.pth", "original/params.json", "original/tokenizer.model",
    "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
]  # fmt: skip
GLM_REPO = [
    # a remote-code checkpoint: its modelling code and chat template come with the shards
    "config.json", "configuration_glm.py", "modeling_glm.py", "chat_template.jinja",
    "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
    "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
    "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
]  # fmt: skip
GGUF_REPO = [
    # the layout of the GGUF repositories: one folder per quant for the split ones
    "README.md", "GLM-5.2-Q2_K.gguf", "GLM-5.2-UD-IQ1_S.gguf",
    *(f"Q4_K_M/GLM-5.2-Q4_K_M-0000{i}-of-00005.gguf" for i in range(1, 6)),
    *(f"Q8_0/GLM-5.2-Q8_0-0000{i}-of-00009.gguf" for i in range(1, 10)),
    "Q4_K_M/GLM-5.2-Q4_K_M-00001-of-00003.gguf",  # another split of the same prefix, not ours
]  # fmt: skip


def fetched(repo: list[str], allow: tuple[str, ...], ignore: tuple[str, ...] = ()) -> list[str]:
    """What ``snapshot_download(allow_patterns=, ignore_patterns=)`` keeps of ``repo``."""
    return sorted(filter_repo_objects(repo, allow_patterns=list(allow),
                                      ignore_patterns=list(ignore) or None))  # fmt: skip


def test_a_safetensors_checkpoint_fetches_shards_index_config_and_tokenizer_only() -> None:
    fmt = WeightFormat.SAFETENSORS
    assert fetched(LLAMA_REPO, allow_patterns(fmt), ignore_patterns(fmt)) == [
        "config.json",
        "generation_config.json",
        *(f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)),
        "model.safetensors.index.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_remote_code_and_the_chat_template_come_but_not_the_pytorch_twins() -> None:
    fmt = WeightFormat.SAFETENSORS
    got = fetched(GLM_REPO, allow_patterns(fmt), ignore_patterns(fmt))
    assert not [name for name in got if name.endswith(".bin")]
    assert {"configuration_glm.py", "modeling_glm.py", "chat_template.jinja"} <= set(got)
    assert len(got) == len(GLM_REPO) - 2


def test_a_split_gguf_fetches_every_part_of_the_chosen_quant_and_nothing_else() -> None:
    first = "Q4_K_M/GLM-5.2-Q4_K_M-00001-of-00005.gguf"
    assert fetched(GGUF_REPO, allow_patterns(WeightFormat.GGUF, first)) == [
        f"Q4_K_M/GLM-5.2-Q4_K_M-0000{i}-of-00005.gguf" for i in range(1, 6)
    ]
    assert ignore_patterns(WeightFormat.GGUF) == ()


def test_a_single_gguf_fetches_that_file() -> None:
    assert fetched(GGUF_REPO, gguf_patterns("GLM-5.2-Q2_K.gguf")) == ["GLM-5.2-Q2_K.gguf"]


def test_a_later_part_of_a_split_is_refused_naming_the_first() -> None:
    with pytest.raises(ValueError, match="GLM-5.2-Q4_K_M-00001-of-00005.gguf"):
        gguf_patterns("GLM-5.2-Q4_K_M-00003-of-00005.gguf")


def test_one_download_unit_per_repo_revision_and_folder() -> None:
    a = unit_name("org/m", "main", "/var/lib/metalserve/models/org--m")
    assert a == unit_name("org/m", "main", "/var/lib/metalserve/models/org--m")
    assert a.startswith("metalserve-weights-") and len(a) == len("metalserve-weights-") + 12
    assert a != unit_name("org/m", "v2", "/var/lib/metalserve/models/org--m")
    assert a != unit_name("org/m", "main", "/srv/nfs/org--m")


# --------------------------------------------------------------------------- the plan

RTX4090_GGUF = {
    "profile": "rtx4090-4",
    "model": {
        "checkpoint": "glm52-Q4_K_M.gguf",
        "repo_id": "acme/GLM-5.2-GGUF",
        "gguf_file": "Q4_K_M/GLM-5.2-Q4_K_M-00001-of-00005.gguf",
    },
    "engine": {"name": "llamacpp", "n_gpu_layers": 48},
}


def plan(data: dict[str, Any]) -> HostPlan:
    return plan_alone(host_spec("h1", data))


def refusal(data: dict[str, Any]) -> str:
    """The one line a plan of ``data`` is refused with."""
    with pytest.raises(MetalserveError) as caught:
        plan(data)
    return str(caught.value)


def test_seed_000s_gguf_from_a_repository_is_fetched_and_served_from_its_first_part() -> None:
    p = plan(RTX4090_GGUF)
    assert p.weights is not None and p.gguf is None  # served as fetched, nothing converted
    model = p.service.exec_argv[p.service.exec_argv.index("-m") + 1]
    assert model == f"{p.weights.local_dir}/Q4_K_M/GLM-5.2-Q4_K_M-00001-of-00005.gguf"
    assert fetched(GGUF_REPO, p.weights.allow_patterns) == [
        f"Q4_K_M/GLM-5.2-Q4_K_M-0000{i}-of-00005.gguf" for i in range(1, 6)
    ]
    assert p.service.unsourced == ()
    assert not [w for w in p.warnings if "no deploy step fetches it" in w]


@pytest.mark.parametrize(
    ("gguf_file", "said"),
    [
        ("Q8_0/GLM-5.2-Q8_0-00001-of-00009.gguf", "expected a Q4_K_M file"),
        ("Q4_K_M/GLM-5.2-Q4_K_M-00002-of-00005.gguf", "the first part of a split GGUF"),
    ],
)
def test_a_gguf_file_that_is_not_the_checkpoints_first_part_is_one_line(
    gguf_file: str, said: str
) -> None:
    data = {**RTX4090_GGUF, "model": {**RTX4090_GGUF["model"], "gguf_file": gguf_file}}
    with pytest.raises(MetalserveError, match=said) as caught:
        plan(data)
    assert str(caught.value).startswith("host h1: metalserve.model.gguf_file: ")
    assert "\n" not in str(caught.value)


def test_a_repo_id_beside_a_checkpoint_needs_the_gguf_it_holds() -> None:
    data = {**RTX4090_GGUF, "model": {"checkpoint": "glm52-Q4_K_M.gguf", "repo_id": "acme/x"}}
    with pytest.raises(MetalserveError, match="then give gguf_file"):
        plan(data)


def test_a_safetensors_checkpoint_fetches_by_its_format() -> None:
    p = plan({"profile": "h200-sxm-8", "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
              "engine": {"name": "vllm", "tensor_parallel_size": 8}})  # fmt: skip
    assert p.weights is not None
    assert p.weights.allow_patterns == allow_patterns(WeightFormat.SAFETENSORS)
    assert p.weights.ignore_patterns == ("original/*",)
    assert p.weights.fetches and p.weights.unit == unit_name(
        "zai-org/GLM-5.2-FP8", "main", "/var/lib/metalserve/models/zai-org--GLM-5.2-FP8"
    )


def test_a_shared_folder_is_downloaded_by_rank_0_and_read_by_every_node() -> None:
    node = {
        "profile": "h200-sxm-8x2-ib",
        "model": {"checkpoint": "zai-org/GLM-5.2-FP8", "shared_dir": "/srv/nfs/models"},
        "engine": {"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        "fabric": {"socket_ifname": "ib0", "ib_hca": ["mlx5_0"]},
    }
    specs = [
        host_spec(f"node{rank}", {**node, "cluster": {"node_rank": rank,
                                                      "address": f"10.0.0.{rank + 1}"}})
        for rank in range(2)
    ]  # fmt: skip
    head, worker = (p.weights for p in plan_hosts(specs))
    assert head is not None and worker is not None
    assert head.local_dir == worker.local_dir == "/srv/nfs/models/zai-org--GLM-5.2-FP8"
    assert (head.fetches, worker.fetches) == (True, False)


def test_a_gguf_repository_outside_the_catalogue_fetches_the_named_file_only() -> None:
    p = plan({"profile": "sandbox-cpu", "engine": {"name": "llamacpp"},
              "model": {"repo_id": "acme/Tiny-GGUF", "gguf_file": "Tiny-Q8_0.gguf"}})  # fmt: skip
    assert p.weights is not None
    assert p.weights.allow_patterns == ("Tiny-Q8_0.gguf",)
    assert p.weights.ignore_patterns == ()


def test_a_gguf_of_another_quantization_is_one_line_naming_both() -> None:
    data = {**RTX4090_GGUF, "model": {**RTX4090_GGUF["model"],
                                      "gguf_file": "Q8_0/GLM-5.2-Q8_0-00001-of-00009.gguf"}}  # fmt: skip
    assert refusal(data) == (
        "host h1: metalserve.model.gguf_file: expected a Q4_K_M file (the checkpoint's "
        "quantization) for glm52-Q4_K_M.gguf, found Q8_0/GLM-5.2-Q8_0-00001-of-00009.gguf — fix: "
        "name the Q4_K_M file of the repository"
    )


def test_a_gguf_file_beside_a_safetensors_checkpoint_is_one_line() -> None:
    data = {"profile": "h100-sxm-4", "engine": {"name": "llamacpp"},
            "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8", "repo_id": "acme/Air-GGUF",
                      "gguf_file": "Air-Q4_K_M.gguf"}}  # fmt: skip
    assert refusal(data) == (
        "host h1: metalserve.model.gguf_file: zai-org/GLM-4.5-Air-FP8 is a safetensors "
        "checkpoint, not a GGUF — fix: leave gguf_file out, or name a GGUF checkpoint"
    )


def test_a_catalogue_gguf_with_a_repository_still_needs_the_file_to_fetch() -> None:
    from metalserve.catalog.checkpoints import GLM52_Q4_K_M

    spec = host_spec("h1", {"profile": "rtx4090-4", "engine": {"name": "llamacpp"},
                            "model": {"checkpoint": "glm52-Q4_K_M.gguf"}})  # fmt: skip
    held = GLM52_Q4_K_M.model_copy(update={"repo_id": "acme/GLM-5.2-GGUF"})
    with pytest.raises(MetalserveError) as caught:
        plan_alone(spec, held)
    assert str(caught.value) == (
        "host h1: metalserve.model.gguf_file: a GGUF repository needs the file to fetch "
        "(model.gguf_file)"
    )
