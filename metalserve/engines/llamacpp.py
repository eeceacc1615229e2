"""``llama-server`` settings. Flag spellings: llama.cpp 0c1e57098 common/arg.cpp."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import field_validator

from metalserve.catalog.pins import LLAMA_CPP
from metalserve.engines.base import EngineBase, NodeRole, flag
from metalserve.types import Address, FlagText, PackageVersion, Port, ServedName

QUANT_BITS_PER_WEIGHT: dict[str, float] = {
    "Q4_K_S": 4.58, "Q4_K_M": 4.85, "Q5_K_M": 5.69, "Q6_K": 6.56, "Q8_0": 8.5, "F16": 16.0,
}  # fmt: skip
"""``llama-quantize`` types metalserve offers, with their average bits per weight
(llama.cpp tools/quantize README, measured on 7B-8B models)."""


DEFAULT_PORT = 8080
"""The port the engine binds when --port is not given (llama.cpp tools/server/README.md)."""


class LlamaCppSettings(EngineBase):
    """Example::

    LlamaCppSettings(n_gpu_layers=48, tensor_split=[24, 24, 24, 24]).argv("glm52-Q4_K_M.gguf")
    """

    name: Literal["llamacpp"] = "llamacpp"
    version: PackageVersion = LLAMA_CPP.version
    quant: str = "Q4_K_M"
    n_gpu_layers: int | Literal["auto", "all"] | None = flag("--n-gpu-layers")
    tensor_split: list[int] | None = flag("--tensor-split", join=",")
    split_mode: Literal["none", "layer", "row", "tensor"] | None = flag("--split-mode")
    ctx_size: int | None = flag("--ctx-size", ge=0)
    parallel: int | None = flag("--parallel", ge=1)
    flash_attn: Literal["on", "off", "auto"] | None = flag("--flash-attn")
    cache_type_k: FlagText | None = flag("--cache-type-k")
    cache_type_v: FlagText | None = flag("--cache-type-v")
    override_tensor: FlagText | None = flag("--override-tensor")
    n_cpu_moe: int | None = flag("--n-cpu-moe", ge=0)
    threads: int | None = flag("--threads", ge=1)
    load_mode: Literal["auto", "none", "mmap", "mlock", "mmap+mlock", "dio"] | None = flag(
        "--load-mode"
    )
    metrics: bool | None = flag("--metrics")
    alias: ServedName | None = flag("--alias")
    rpc: list[FlagText] | None = flag(
        "--rpc", join=",", description="set by the cluster plan: the workers' rpc-server addresses"
    )
    host: Address | None = flag("--host")
    port: Port | None = flag("--port")

    @property
    def listen_port(self) -> int:
        return self.port or DEFAULT_PORT

    @field_validator("quant")
    @classmethod
    def _known_quant(cls, quant: str) -> str:
        if quant not in QUANT_BITS_PER_WEIGHT:
            raise ValueError(
                f"unknown quant {quant!r} (offered: {', '.join(QUANT_BITS_PER_WEIGHT)})"
            )
        return quant

    @property
    def max_model_len(self) -> int | None:
        return self.ctx_size or None

    def argv(
        self,
        model: str,
        executable: tuple[str, ...] = ("llama-server",),
        api_key_file: str | None = None,
    ) -> list[str]:
        key = ["--api-key-file", api_key_file] if api_key_file else []
        return [*executable, "-m", model, *self.options_argv(), *key]

    RUNNING_REQUESTS_METRIC: ClassVar[str] = "llamacpp:requests_processing"
    """llama-server README, ``--metrics``."""

    def engine_args(self, command: list[str]) -> list[str]:
        return command[command.index("-m") :]

    def serving(self, served_name: str) -> Self:
        return self.model_copy(update={"alias": served_name})

    def on_node(self, node: NodeRole) -> Self:
        """The head's llama-server offloads to every worker's ``rpc-server`` (llama.cpp
        tools/rpc/README.md); a worker runs no llama-server (see :func:`rpc_server_argv`)."""
        if not node.head:
            return self
        return self.model_copy(update={"rpc": [f"{w}:{node.port}" for w in node.workers]})


RPC_SERVER = "ggml-rpc-server"
"""The RPC worker's CMake target and binary at the pinned release (tools/rpc/CMakeLists.txt)."""


def rpc_server_argv(bin_dir: str, node: NodeRole, address: str) -> list[str]:
    """A worker's ``ggml-rpc-server``, bound to its cluster address only: it has no authentication
    (llama.cpp tools/rpc/README.md: never run it on an open network), and ``--host`` takes a
    numeric IPv4 address (tools/rpc/rpc-server.cpp, inet_addr)."""
    return [f"{bin_dir}/{RPC_SERVER}", "--host", address, "--port", str(node.port)]
