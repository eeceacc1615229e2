"""A model's shape, read from its Hugging Face ``config.json`` — what sizing needs and nothing more.

Example::

    arch = architecture_from_config({"model_type": "mixtral", "num_hidden_layers": 2, ...})
    arch.kv_bytes_per_token(dtype_bytes=2)
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from metalserve.errors import SpecError


class AttentionKind(StrEnum):
    GQA = "gqa"  # grouped-query (MHA/MQA are its edge cases): K and V per KV head
    MLA = "mla"  # multi-head latent attention: one compressed latent + a rope key per token


class Architecture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: str
    architectures: tuple[str, ...] = ()
    num_hidden_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    moe_intermediate_size: int | None = Field(default=None, gt=0)
    num_experts: int = Field(default=0, ge=0, description="routed experts per MoE layer")
    num_shared_experts: int = Field(default=0, ge=0)
    experts_per_token: int = Field(default=0, ge=0)
    first_k_dense_replace: int = Field(default=0, ge=0)
    kv_lora_rank: int | None = Field(default=None, gt=0)
    q_lora_rank: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int | None = Field(default=None, gt=0)
    index_head_dim: int | None = Field(default=None, gt=0, description="DSA indexer key cache")
    num_nextn_predict_layers: int = Field(default=0, ge=0)
    max_position_embeddings: int | None = Field(default=None, gt=0)
    tie_word_embeddings: bool = False
    sliding_window: int | None = Field(
        default=None, gt=0, description="tokens a sliding-window layer attends to (and caches)"
    )
    sliding_layers: tuple[int, ...] = Field(
        default=(), description="indices of the sliding-window layers; () when every layer is full"
    )

    @property
    def attention(self) -> AttentionKind:
        return AttentionKind.MLA if self.kv_lora_rank else AttentionKind.GQA

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def kv_elements_per_token_per_layer(self) -> int:
        """Cache elements one token adds to one layer, over all KV heads."""
        if self.attention is AttentionKind.MLA:
            latent = (self.kv_lora_rank or 0) + (self.qk_rope_head_dim or 0)
            return latent + (self.index_head_dim or 0)
        return 2 * self.num_key_value_heads * self.head_dim

    def kv_bytes_per_token(self, dtype_bytes: float) -> float:
        """KV-cache bytes one token of context costs across the whole model (all layers)."""
        return self.kv_elements_per_token_per_layer() * self.num_hidden_layers * dtype_bytes

    def kv_bytes_per_token_per_gpu(self, dtype_bytes: float, tp: int, pp: int) -> float:
        """What one GPU holds per token: MLA latents are replicated over TP ranks, GQA heads are
        split over them (down to one KV head per rank); pipeline stages split the layers."""
        layers = -(-self.num_hidden_layers // pp)
        per_layer = self.kv_elements_per_token_per_layer()
        if self.attention is AttentionKind.GQA:
            ranks_sharing = min(tp, self.num_key_value_heads)
            per_layer = per_layer // ranks_sharing
        return per_layer * layers * dtype_bytes

    @property
    def is_windowed(self) -> bool:
        return bool(self.sliding_layers) and self.sliding_window is not None

    def _stages(self, pp: int) -> list[tuple[int, int]]:
        """(full, sliding) layer counts of each pipeline stage, the layers cut into contiguous runs
        of ``ceil(layers / pp)`` (the stages that hold the most layers)."""
        run = -(-self.num_hidden_layers // pp)
        sliding = set(self.sliding_layers)
        stages = []
        for start in range(0, self.num_hidden_layers, run):
            layers = range(start, min(start + run, self.num_hidden_layers))
            windowed = sum(1 for i in layers if i in sliding)
            stages.append((len(layers) - windowed, windowed))
        return stages

    def _element_bytes_per_gpu(self, dtype_bytes: float, tp: int) -> float:
        per_layer = self.kv_elements_per_token_per_layer()
        if self.attention is AttentionKind.GQA:
            per_layer = per_layer // min(tp, self.num_key_value_heads)
        return per_layer * dtype_bytes

    def kv_bytes_per_gpu(self, tokens: int, dtype_bytes: float, tp: int = 1, pp: int = 1) -> float:
        """What the GPU of the fullest pipeline stage holds for ``tokens`` of context: a full
        layer caches every token, a sliding-window layer at most ``sliding_window`` of them
        (transformers' ``layer_types`` semantics; vLLM allocates such layers a window-bounded
        cache, vllm/v1/kv_cache_interface.py ``SlidingWindowSpec``)."""
        per_layer = self._element_bytes_per_gpu(dtype_bytes, tp)
        window = min(tokens, self.sliding_window or tokens)
        return max(per_layer * (full * tokens + windowed * window)
                   for full, windowed in self._stages(pp))  # fmt: skip

    def max_tokens_per_gpu(
        self, budget_bytes: float, dtype_bytes: float, tp: int = 1, pp: int = 1
    ) -> int | None:
        """The longest context whose cache fits ``budget_bytes`` on every GPU; None when the
        cache stops growing before the budget is reached (every layer of a stage windowed)."""
        per_layer = self._element_bytes_per_gpu(dtype_bytes, tp)
        window = self.sliding_window or 0
        longest: int | None = None
        for full, windowed in self._stages(pp):
            if per_layer * (full + windowed) * window > budget_bytes or not self.is_windowed:
                tokens: int | None = int(budget_bytes // (per_layer * (full + windowed)))
            elif full:
                tokens = int((budget_bytes - per_layer * windowed * window) // (per_layer * full))
            else:
                tokens = None
            if tokens is not None:
                longest = tokens if longest is None else min(longest, tokens)
        return longest


_EXPERT_KEYS = ("n_routed_experts", "num_local_experts", "num_experts")


def _int(config: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = config.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"config.json: {key} must be an integer (got {value!r})")
    return value


def _required(config: Mapping[str, Any], key: str) -> int:
    value = _int(config, key)
    if value is None:
        raise SpecError(f"config.json: {key} is missing — is this a decoder LLM config?")
    return value


def _sliding_layers(config: Mapping[str, Any], layers: int) -> tuple[int | None, tuple[int, ...]]:
    """The window and the indices of the sliding-window layers, as transformers derives them
    (huggingface/transformers, ``layer_types`` in each model's configuration_*.py):

    * ``layer_types``: each layer's ``"sliding_attention"`` or ``"full_attention"`` (gpt-oss,
      Gemma 3, Qwen3 and newer configs write it out);
    * Qwen2-style ``use_sliding_window`` + ``max_window_layers``: layer ``i`` slides when the
      window is on and ``i >= max_window_layers`` (configuration_qwen2.py); off, none slides. A
      missing ``max_window_layers`` takes the model class's default there (28 for Qwen2), which a
      config.json alone does not tell: it is refused;
    * Gemma-style ``sliding_window_pattern`` N: every N-th layer is global, the others slide
      (``bool((i + 1) % N)``, configuration_gemma3.py);
    * a bare ``sliding_window`` (Mistral, Phi-3, Starcoder2): every layer slides.
    """
    window = _int(config, "sliding_window")
    if window is None or window <= 0:
        return None, ()
    kinds = config.get("layer_types")
    if kinds is not None:
        if not isinstance(kinds, list | tuple) or len(kinds) != layers:
            raise SpecError(
                f"config.json: layer_types must list one attention kind per layer ({layers})"
            )
        return window, tuple(i for i, kind in enumerate(kinds) if kind == "sliding_attention")
    if "use_sliding_window" in config:
        if config.get("use_sliding_window") is not True:
            return None, ()
        first = _int(config, "max_window_layers")
        if first is None:  # transformers fills in its model class's own default (Qwen2: 28)
            raise SpecError(
                "config.json: use_sliding_window is true but max_window_layers is missing — fix: "
                "add it (the number of leading full-attention layers, as the model's config has it)"
            )
        return window, tuple(range(first, layers))
    pattern = _int(config, "sliding_window_pattern")
    if pattern is not None and pattern > 0:
        return window, tuple(i for i in range(layers) if (i + 1) % pattern)
    return window, tuple(range(layers))


def architecture_from_config(config: Any) -> Architecture:
    """Read the fields sizing needs from a ``config.json`` mapping; one-line error when unusable.

    Multimodal configs nest the language model under ``text_config``; that part is read.
    """
    if not isinstance(config, Mapping):
        raise SpecError("config.json: expected a JSON object")
    if isinstance(config.get("text_config"), Mapping):
        config = {
            **config["text_config"],
            **{k: v for k, v in config.items() if k == "architectures"},
        }
    hidden = _required(config, "hidden_size")
    heads = _required(config, "num_attention_heads")
    if heads <= 0 or hidden <= 0:
        raise SpecError("config.json: hidden_size and num_attention_heads must be positive")
    layers = _required(config, "num_hidden_layers")
    window, sliding = _sliding_layers(config, layers) if layers > 0 else (None, ())
    experts = next((_int(config, k) for k in _EXPERT_KEYS if config.get(k) is not None), 0) or 0
    architectures = config.get("architectures") or ()
    if not isinstance(architectures, list | tuple) or not all(
        isinstance(a, str) for a in architectures
    ):
        raise SpecError("config.json: architectures must be a list of class names")
    model_type = config.get("model_type", "unknown")
    if not isinstance(model_type, str):
        raise SpecError("config.json: model_type must be a string")
    fields: dict[str, Any] = {
        "model_type": model_type,
        "architectures": tuple(architectures),
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": _int(config, "num_key_value_heads") or heads,
        "head_dim": _int(config, "head_dim") or hidden // heads or 1,
        "vocab_size": _required(config, "vocab_size"),
        "intermediate_size": _int(config, "intermediate_size"),
        "moe_intermediate_size": _int(config, "moe_intermediate_size"),
        "num_experts": experts,
        "num_shared_experts": _int(config, "n_shared_experts", 0) or 0,
        "experts_per_token": _int(config, "num_experts_per_tok", 0) or 0,
        "first_k_dense_replace": _int(config, "first_k_dense_replace", 0) or 0,
        "kv_lora_rank": _int(config, "kv_lora_rank"),
        "q_lora_rank": _int(config, "q_lora_rank"),
        "qk_rope_head_dim": _int(config, "qk_rope_head_dim"),
        "index_head_dim": _int(config, "index_head_dim"),
        "num_nextn_predict_layers": _int(config, "num_nextn_predict_layers", 0) or 0,
        "max_position_embeddings": _int(config, "max_position_embeddings"),
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "sliding_window": window if sliding else None,
        "sliding_layers": sliding,
    }
    from pydantic import ValidationError

    try:
        return Architecture(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"config.json: {field}: {first['msg']}") from None


def weight_bytes_from_index(index: Any) -> int:
    """``metadata.total_size`` of a ``model.safetensors.index.json``."""
    if not isinstance(index, Mapping):
        raise SpecError("model.safetensors.index.json: expected a JSON object")
    metadata = index.get("metadata")
    total = metadata.get("total_size") if isinstance(metadata, Mapping) else None
    if isinstance(total, bool) or not isinstance(total, int | float) or total <= 0:
        raise SpecError(
            "model.safetensors.index.json: metadata.total_size is missing or not a positive number"
        )
    return int(total)
