"""``vllm serve`` settings. Flag spellings and defaults: vLLM v0.33.0 vllm/engine/arg_utils.py."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import model_validator

from metalserve.catalog.pins import VLLM
from metalserve.engines.base import EngineBase, NodeRole, flag
from metalserve.types import Address, FlagText, HostPath, PackageVersion, Port, ServedName

DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
"""vLLM 0.33 default for --gpu-memory-utilization (vllm/config/cache.py)."""


DEFAULT_PORT = 8000
"""The port the engine binds when --port is not given (vllm/entrypoints/common/cli_args.py)."""


class VllmSettings(EngineBase):
    """Example::

    VllmSettings(tensor_parallel_size=8, kv_cache_dtype="fp8").argv("zai-org/GLM-5.2-FP8")
    """

    name: Literal["vllm"] = "vllm"
    version: PackageVersion = VLLM.version
    served_model_name: ServedName | None = flag("--served-model-name")
    trust_remote_code: bool | None = flag("--trust-remote-code")
    tensor_parallel_size: int | None = flag("--tensor-parallel-size", ge=1)
    pipeline_parallel_size: int | None = flag("--pipeline-parallel-size", ge=1)
    data_parallel_size: int | None = flag("--data-parallel-size", ge=1)
    data_parallel_size_local: int | None = flag("--data-parallel-size-local", ge=1)
    data_parallel_start_rank: int | None = flag("--data-parallel-start-rank", ge=0)
    data_parallel_address: Address | None = flag("--data-parallel-address")
    data_parallel_rpc_port: Port | None = flag("--data-parallel-rpc-port")
    enable_expert_parallel: bool | None = flag("--enable-expert-parallel")
    gpu_memory_utilization: float | None = flag("--gpu-memory-utilization", gt=0, le=1)
    max_model_len: int | None = flag("--max-model-len", ge=1)
    max_num_seqs: int | None = flag("--max-num-seqs", ge=1)
    kv_cache_dtype: FlagText | None = flag("--kv-cache-dtype")
    enable_prefix_caching: bool | None = flag(
        "--enable-prefix-caching", negative="--no-enable-prefix-caching"
    )
    max_num_batched_tokens: int | None = flag("--max-num-batched-tokens", ge=1)
    reasoning_parser: FlagText | None = flag("--reasoning-parser")
    tool_call_parser: FlagText | None = flag("--tool-call-parser")
    enable_auto_tool_choice: bool | None = flag("--enable-auto-tool-choice")
    speculative_config: dict[str, Any] | None = flag("--speculative-config")
    safetensors_load_strategy: FlagText | None = flag("--safetensors-load-strategy")
    enforce_eager: bool | None = flag("--enforce-eager")
    download_dir: HostPath | None = flag("--download-dir")
    nnodes: int | None = flag("--nnodes", ge=1)
    node_rank: int | None = flag("--node-rank", ge=0)
    master_addr: Address | None = flag("--master-addr")
    master_port: Port | None = flag("--master-port")
    headless: bool | None = flag("--headless")
    host: Address | None = flag("--host")
    port: Port | None = flag("--port")

    @property
    def listen_port(self) -> int:
        return self.port or DEFAULT_PORT

    @model_validator(mode="after")
    def _auto_tool_choice_needs_parser(self) -> VllmSettings:
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise ValueError(
                "enable_auto_tool_choice needs tool_call_parser (vLLM raises TypeError at startup "
                "without it) — set tool_call_parser, e.g. glm47"
            )
        return self

    @property
    def memory_fraction(self) -> float:
        return self.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION

    @property
    def parallel(self) -> tuple[int, int]:
        return self.tensor_parallel_size or 1, self.pipeline_parallel_size or 1

    def argv(self, model: str, executable: tuple[str, ...] = ("vllm",)) -> list[str]:
        return [*executable, "serve", model, *self.options_argv()]

    RUNNING_REQUESTS_METRIC: ClassVar[str] = "vllm:num_requests_running"
    """vLLM docs, 'Production Metrics'."""

    QUIET_ENVIRONMENT: ClassVar[tuple[tuple[str, str], ...]] = (
        ("VLLM_NO_USAGE_STATS", "1"),
        ("DO_NOT_TRACK", "1"),
    )
    """vLLM docs, 'Usage Stats Collection' (opt out with VLLM_NO_USAGE_STATS=1 or DO_NOT_TRACK=1);
    0.33.0's vllm/usage/usage_lib.py is_usage_stats_enabled reads both."""

    def requirements(self) -> tuple[str, ...]:
        return (f"vllm=={self.version}",)

    def engine_args(self, command: list[str]) -> list[str]:
        return command[command.index("serve") + 2 :]

    def parser_args(self, command: list[str]) -> list[str]:
        # `vllm serve`'s parser (make_arg_parser) reads the model as its positional model_tag
        return command[command.index("serve") + 1 :]

    def serving(self, served_name: str) -> Self:
        return self.model_copy(update={"served_model_name": served_name})

    @property
    def data_parallel_across_nodes(self) -> bool:
        return (self.data_parallel_size or 1) > 1

    def on_node(self, node: NodeRole) -> Self:
        """vLLM 0.33's two multi-node forms (docs: 'Parallelism and Scaling', 'Data Parallel
        Deployment'): data parallelism across nodes — each node runs its share of the DP ranks,
        the head serves the API, the others are ``--headless`` with their start rank — or one
        model sharded across nodes with ``--nnodes/--node-rank/--master-addr/--master-port``."""
        headless = None if node.head else True
        if self.data_parallel_across_nodes:
            dp = self.data_parallel_size or 1
            local = max(dp // node.nnodes, 1)
            return self.model_copy(
                update={
                    "data_parallel_size_local": local,
                    "data_parallel_start_rank": None if node.head else node.rank * local,
                    "data_parallel_address": node.head_address,
                    "data_parallel_rpc_port": node.port,
                    "headless": headless,
                }
            )
        return self.model_copy(
            update={
                "nnodes": node.nnodes,
                "node_rank": node.rank,
                "master_addr": node.head_address,
                "master_port": node.port,
                "headless": headless,
            }
        )
