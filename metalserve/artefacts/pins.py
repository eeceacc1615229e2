"""Version pins of the offline inputs, each with its source.

These move to the core's ``metalserve/catalog/pins.py`` when it lands; until then this module is
the one place that states them, and everything in ``metalserve.artefacts`` reads them from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LlamaCppSdistPin:
    """The llama-cpp-python sdist whose ``vendor/llama.cpp`` tree is our offline llama.cpp source."""

    package: str
    version: str
    sdist_sha256: str
    llamacpp_commit: str
    source: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


LLAMACPP_SDIST = LlamaCppSdistPin(
    package="llama-cpp-python",
    version="0.3.36",
    # sha256 of llama_cpp_python-0.3.36.tar.gz as served by PyPI (measured with sha256sum).
    sdist_sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    # CHANGELOG.md of the sdist: "feat: update llama.cpp to ggml-org/llama.cpp@0c1e57098".
    llamacpp_commit="0c1e57098",
    source="https://pypi.org/project/llama-cpp-python/0.3.36/ (CHANGELOG.md, vendor/llama.cpp)",
)

CONVERTER_REQUIREMENTS: tuple[str, ...] = (
    # llama.cpp requirements/requirements-convert_hf_to_gguf.txt asks torch~=2.11 from PyTorch's
    # CPU index; that index is out of reach here, and the CPU build 2.13.0 is what lies on disk.
    "torch==2.13.0",
    # same file: transformers==4.57.6, numpy~=2.2.6 (gguf-py needs numpy>=2.2.6), protobuf<5.
    "transformers==4.57.6",
    "numpy~=2.2.6",
    "protobuf<5",
    # "sentencepiece<0.3" there, but 0.2.3 with protobuf<5 fails to import (runtime_version):
    # shared/notes/sandbox-facts.md section 3.
    "sentencepiece==0.2.0",
    # gguf-py/pyproject.toml of the vendored tree: the converter imports the vendored gguf-py,
    # which needs these at run time.
    "pyyaml>=5.1",
    "tqdm>=4.27",
    "requests>=2.25",
    "safetensors>=0.4",
)
"""What the offline ``convert_hf_to_gguf.py`` venv on a host is installed from."""

HUB_CLIENT_REQUIREMENTS: tuple[str, ...] = ("huggingface_hub==2.4.0",)
"""The weights step on the host: shared/notes/engine-facts.md section 4 was checked on 2.4.0."""
