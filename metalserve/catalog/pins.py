"""Version pins of the serving stack. Each pin is written here once, with where it was checked."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Pin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    source: str

    @property
    def requirement(self) -> str:
        """The pip requirement string, e.g. ``vllm==0.33.0``."""
        return f"{self.name}=={self.version}"


VLLM = Pin(
    name="vllm", version="0.33.0", source="PyPI; vllm-project/vllm v0.33.0 vllm/engine/arg_utils.py"
)
SGLANG = Pin(name="sglang", version="0.5.23", source="PyPI; sgl-project/sglang v0.5.23")
HUGGINGFACE_HUB = Pin(name="huggingface_hub", version="2.4.0", source="PyPI huggingface_hub 2.4.0")
GGUF = Pin(name="gguf", version="0.19.0", source="PyPI; vendored gguf-py in llama.cpp 0c1e57098")
LLAMA_CPP_PYTHON = Pin(
    name="llama-cpp-python",
    version="0.3.36",
    source="PyPI sdist; its CHANGELOG pins vendor/llama.cpp to ggml-org/llama.cpp@0c1e57098",
)
LLAMA_CPP = Pin(
    name="llama.cpp",
    version="0c1e57098",
    source="vendor/llama.cpp of the llama-cpp-python 0.3.36 sdist (its CHANGELOG.md)",
)

# The converter venv (llama.cpp requirements/requirements-convert_hf_to_gguf.txt), CPU torch.
CONVERTER_REQUIREMENTS: tuple[Pin, ...] = (
    Pin(
        name="torch", version="2.13.0", source="CPU wheel (+cpu) from download.pytorch.org/whl/cpu"
    ),
    Pin(
        name="transformers",
        version="4.57.6",
        source="llama.cpp requirements-convert_hf_to_gguf.txt",
    ),
    Pin(name="numpy", version="2.2.6", source="llama.cpp converter requirements: numpy~=2.2.6"),
    Pin(
        name="sentencepiece",
        version="0.2.0",
        source="0.2.3 with protobuf<5: ImportError runtime_version (Python 3.11)",
    ),
    Pin(name="protobuf", version="4.25.8", source="llama.cpp pins protobuf<5"),
    Pin(name="safetensors", version="0.6.2", source="transformers 4.57 dependency"),
)

NCCL_TESTS = Pin(
    name="nccl-tests",
    version="v2.19.6",
    source="NVIDIA/nccl-tests release tag; JSON output (-J) exists since v2.17.3 (src/util.cu)",
)

GGUF_PY_RUNTIME: tuple[str, ...] = ("pyyaml>=5.1", "tqdm>=4.27", "requests>=2.25")
"""gguf-py/pyproject.toml of the vendored tree: the converter imports the vendored gguf-py."""


def converter_requirements() -> tuple[str, ...]:
    """What the offline ``convert_hf_to_gguf.py`` venv on a host is installed from."""
    return (*(pin.requirement for pin in CONVERTER_REQUIREMENTS), *GGUF_PY_RUNTIME)


def hub_client_requirements() -> tuple[str, ...]:
    """The weights step's venv, kept apart: transformers 4.57 wants ``huggingface_hub<1``."""
    return (HUGGINGFACE_HUB.requirement,)


LLAMA_CPP_GIT = "https://github.com/ggml-org/llama.cpp.git"
LLAMA_CPP_ARCHIVE = f"https://github.com/ggml-org/llama.cpp/archive/{LLAMA_CPP.version}.tar.gz"
"""Upstream, for a llama.cpp source given without a URL (GitHub resolves the short commit)."""

ENGINE_PINS: dict[str, Pin] = {"vllm": VLLM, "sglang": SGLANG, "llamacpp": LLAMA_CPP}
