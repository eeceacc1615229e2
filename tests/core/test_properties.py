"""Properties: the loader never crashes on arbitrary input; sizing is monotonic."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from metalserve.architecture import architecture_from_config, weight_bytes_from_index
from metalserve.catalog.checkpoints import CHECKPOINTS
from metalserve.catalog.profiles import PROFILES
from metalserve.errors import MetalserveError
from metalserve.sizing import SizingRequest, size

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=12,
)
config_keys = st.sampled_from(
    [
        "hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "num_key_value_heads",
        "head_dim", "kv_lora_rank", "qk_rope_head_dim", "n_routed_experts", "num_local_experts",
        "num_experts_per_tok", "model_type", "architectures", "text_config", "index_head_dim",
    ]
)  # fmt: skip
configs = st.dictionaries(config_keys, json_values | st.integers(min_value=-4, max_value=70000))


@given(st.one_of(configs, json_values))
def test_config_loader_gives_an_architecture_or_a_one_line_error(config: object) -> None:
    try:
        arch = architecture_from_config(config)
    except MetalserveError as exc:
        assert "\n" not in str(exc)
    else:
        assert arch.kv_bytes_per_token(2) > 0


@given(json_values)
def test_index_loader_gives_bytes_or_a_one_line_error(index: object) -> None:
    try:
        assert weight_bytes_from_index(index) > 0
    except MetalserveError as exc:
        assert "\n" not in str(exc)


gpu_profiles = [p for p in PROFILES.values() if p.gpu is not None and not p.multi_node]
requests = st.builds(
    SizingRequest,
    profile=st.sampled_from(gpu_profiles),
    checkpoint=st.sampled_from(list(CHECKPOINTS.values())),
    engine=st.sampled_from(["vllm", "sglang"]),
    tensor_parallel=st.sampled_from([1, 2, 4]),
    pipeline_parallel=st.just(1),
    memory_fraction=st.floats(min_value=0.5, max_value=0.95),
    kv_dtype=st.sampled_from([None, "bf16", "fp8", "nvfp4"]),
    context_tokens=st.one_of(st.none(), st.integers(min_value=1, max_value=1_000_000)),
)

SMALLER_KV = {None: "fp8", "bf16": "fp8", "fp8": "nvfp4", "nvfp4": "nvfp4"}


@settings(max_examples=300)
@given(requests)
def test_more_gpus_never_turn_fits_into_does_not_fit(req: SizingRequest) -> None:
    doubled = req.model_copy(update={"tensor_parallel": req.tensor_parallel * 2})
    if size(req).fits and doubled.tensor_parallel <= req.profile.total_gpus:
        assert size(doubled).fits


@settings(max_examples=300)
@given(requests)
def test_a_smaller_kv_dtype_never_turns_fits_into_does_not_fit(req: SizingRequest) -> None:
    smaller = req.model_copy(update={"kv_dtype": SMALLER_KV[req.kv_dtype]})
    if size(req).fits:
        assert size(smaller).fits


@settings(max_examples=200)
@given(requests, st.floats(min_value=0.1, max_value=0.9))
def test_smaller_weights_never_turn_fits_into_does_not_fit(
    req: SizingRequest, shrink: float
) -> None:
    lighter = req.checkpoint.model_copy(
        update={"weight_bytes": max(1, int(req.checkpoint.weight_bytes * shrink))}
    )
    if size(req).fits:
        assert size(req.model_copy(update={"checkpoint": lighter})).fits
