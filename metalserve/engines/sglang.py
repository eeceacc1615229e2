"""SGLang server settings. Flag spellings and defaults: SGLang v0.5.23 srt/server_args.py."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from metalserve.catalog.pins import SGLANG
from metalserve.engines.base import EngineBase, NodeRole, flag
from metalserve.types import Address, FlagText, PackageVersion, Port, ServedName

ASSUMED_MEM_FRACTION_STATIC = 0.88
"""SGLang picks --mem-fraction-static from the GPU's memory at start; sizing assumes this when unset."""

ENTRYPOINTS: dict[str, tuple[str, ...]] = {
    # 0.5.23 recommends `sglang serve` as the entrypoint; the GLM 5.2 MoE guide uses this one.
    "serve": ("sglang", "serve"),
    "launch_server": ("python", "-m", "sglang.launch_server"),
}


DEFAULT_PORT = 30000
"""The port the engine binds when --port is not given (python/sglang/srt/server_args.py)."""


class SglangSettings(EngineBase):
    """Example::

    SglangSettings(tp_size=8, mem_fraction_static=0.9).argv("zai-org/GLM-5.2-FP8")
    """

    name: Literal["sglang"] = "sglang"
    version: PackageVersion = SGLANG.version
    entrypoint: Literal["serve", "launch_server"] = "serve"
    served_model_name: ServedName | None = flag("--served-model-name")
    trust_remote_code: bool | None = flag("--trust-remote-code")
    tp_size: int | None = flag("--tp-size", ge=1)
    dp_size: int | None = flag("--dp-size", ge=1)
    pp_size: int | None = flag("--pp-size", ge=1)
    ep_size: int | None = flag("--ep-size", ge=1)
    mem_fraction_static: float | None = flag("--mem-fraction-static", gt=0, le=1)
    context_length: int | None = flag("--context-length", ge=1)
    kv_cache_dtype: FlagText | None = flag("--kv-cache-dtype")
    enable_mixed_chunk: bool | None = flag("--enable-mixed-chunk")
    reasoning_parser: FlagText | None = flag("--reasoning-parser")
    tool_call_parser: FlagText | None = flag("--tool-call-parser")
    speculative_algorithm: FlagText | None = flag("--speculative-algorithm")
    speculative_num_steps: int | None = flag("--speculative-num-steps", ge=1)
    speculative_eagle_topk: int | None = flag("--speculative-eagle-topk", ge=1)
    speculative_num_draft_tokens: int | None = flag("--speculative-num-draft-tokens", ge=1)
    nnodes: int | None = flag("--nnodes", ge=1)
    node_rank: int | None = flag("--node-rank", ge=0)
    dist_init_addr: FlagText | None = flag("--dist-init-addr")
    host: Address | None = flag("--host")
    port: Port | None = flag("--port")

    @property
    def listen_port(self) -> int:
        return self.port or DEFAULT_PORT

    @property
    def memory_fraction(self) -> float:
        return self.mem_fraction_static or ASSUMED_MEM_FRACTION_STATIC

    @property
    def parallel(self) -> tuple[int, int]:
        return self.tp_size or 1, self.pp_size or 1

    @property
    def max_model_len(self) -> int | None:
        return self.context_length

    def argv(self, model: str, executable: tuple[str, ...] | None = None) -> list[str]:
        exe = executable or ENTRYPOINTS[self.entrypoint]
        return [*exe, "--model-path", model, *self.options_argv()]

    RUNNING_REQUESTS_METRIC: ClassVar[str] = "sglang:num_running_reqs"
    """SGLang docs, 'Production Metrics'."""

    # QUIET_ENVIRONMENT stays empty: the 0.5.23 wheel reports no usage anywhere (its "telemetry"
    # is OpenTelemetry tracing, off unless --enable-trace; sglang/srt/observability/trace.py).

    def requirements(self) -> tuple[str, ...]:
        return (f"sglang=={self.version}",)

    def executable(self, venv: str) -> tuple[str, ...]:
        if self.entrypoint == "serve":
            return (f"{venv}/bin/sglang", "serve")
        return (f"{venv}/bin/python", "-m", "sglang.launch_server")

    def engine_args(self, command: list[str]) -> list[str]:
        return command[command.index("--model-path") :]

    def serving(self, served_name: str) -> Self:
        return self.model_copy(update={"served_model_name": served_name})

    def on_node(self, node: NodeRole) -> Self:
        """SGLang's multi-node form (docs: 'Multi-Node Deployment'): every node gets the node count,
        its rank and the head's rendezvous address."""
        return self.model_copy(
            update={
                "nnodes": node.nnodes,
                "node_rank": node.rank,
                "dist_init_addr": f"{node.head_address}:{node.port}",
            }
        )
