"""The offline inputs' pins, as this package needs them, read from the core's catalogue.

Versions live in :mod:`metalserve.catalog.pins`; this module only adds the facts that exist for the
artefacts alone (the sdist's sha256, gguf-py's own run-time dependencies) and shapes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from metalserve.catalog import pins as catalog


@dataclass(frozen=True)
class LlamaCppSdistPin:
    """The llama-cpp-python sdist whose ``vendor/llama.cpp`` tree is our offline llama.cpp source."""

    sdist: catalog.Pin
    sdist_sha256: str
    llamacpp: catalog.Pin

    @property
    def package(self) -> str:
        return self.sdist.name

    @property
    def version(self) -> str:
        return self.sdist.version

    @property
    def requirement(self) -> str:
        return self.sdist.requirement

    @property
    def llamacpp_commit(self) -> str:
        return self.llamacpp.version


LLAMACPP_SDIST = LlamaCppSdistPin(
    sdist=catalog.LLAMA_CPP_PYTHON,
    # sha256 of llama_cpp_python-0.3.36.tar.gz as PyPI served it (measured with sha256sum).
    sdist_sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    llamacpp=catalog.LLAMA_CPP,
)

CONVERTER_REQUIREMENTS: tuple[str, ...] = catalog.converter_requirements()
"""What the offline ``convert_hf_to_gguf.py`` venv on a host is installed from."""

HUB_CLIENT_REQUIREMENTS: tuple[str, ...] = catalog.hub_client_requirements()
"""The weights step on the host (kept apart: transformers 4.57 wants ``huggingface_hub<1``)."""
