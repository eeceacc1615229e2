"""Where packages, wheels, sources and weights come from: online, a mirror, or an offline bundle.

A sovereign (air-gapped) site uses the same roles with mirror or bundle sources.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from metalserve.hardware import Frozen
from metalserve.types import FlagText, LocalPath, Sha256, SourceUrl, Url


class SourceKind(StrEnum):
    ONLINE = "online"  # the vendor's public repository / PyPI / Hugging Face Hub
    MIRROR = "mirror"  # a site-local mirror reached over the network (apt repo, index, HF_ENDPOINT)
    BUNDLE = "bundle"  # files pushed from the control host over SSH (nothing fetched by the host)


class AptSource(Frozen):
    kind: SourceKind = SourceKind.ONLINE
    url: Url | None = Field(default=None, description="mirror: a flat repo URL ('deb URL ./')")
    path: LocalPath | None = Field(
        default=None,
        description="bundle: a flat repo directory (debs + Packages) on the control host",
    )

    @model_validator(mode="after")
    def _needs_location(self) -> AptSource:
        if self.kind is SourceKind.MIRROR and not self.url:
            raise ValueError("a mirror apt source needs url, e.g. http://10.0.0.1:8080/apt")
        if self.kind is SourceKind.BUNDLE and not self.path:
            raise ValueError("a bundle apt source needs path (a flat repo dir on the control host)")
        return self


class PythonSource(Frozen):
    kind: SourceKind = SourceKind.ONLINE
    index_url: Url | None = Field(default=None, description="mirror: a PEP 503 index or find-links")
    wheelhouse: LocalPath | None = Field(
        default=None, description="bundle: a directory on the control host"
    )


class LlamaCppSource(Frozen):
    kind: Literal["tarball", "git", "local"] = "tarball"
    url: SourceUrl | None = Field(default=None, description="tarball URL or git remote")
    path: LocalPath | None = Field(default=None, description="local: a tarball on the control host")
    sha256: Sha256 | None = None


class WeightsSource(Frozen):
    kind: SourceKind = SourceKind.ONLINE
    endpoint: Url | None = Field(default=None, description="mirror: HF_ENDPOINT of a hub mirror")
    trust_plain_http: FlagText | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        description="why the HF token may go to this plain-HTTP mirror (e.g. a host-only link)",
    )
    path: LocalPath | None = Field(
        default=None, description="bundle: a snapshot dir on the control host"
    )

    @model_validator(mode="after")
    def _needs_location(self) -> WeightsSource:
        if self.kind is SourceKind.MIRROR and not self.endpoint:
            raise ValueError("a mirror weights source needs endpoint (the hub mirror's URL)")
        if self.kind is SourceKind.BUNDLE and not self.path:
            raise ValueError("a bundle weights source needs path (a snapshot on the control host)")
        return self

    @property
    def sends_token_in_clear(self) -> bool:
        """huggingface_hub sends ``Authorization: Bearer`` to whatever HF_ENDPOINT names, plain
        HTTP included (huggingface_hub utils/_headers.py build_hf_headers)."""
        return (
            self.kind is SourceKind.MIRROR
            and bool(self.endpoint)
            and str(self.endpoint).lower().startswith("http://")
        )


class Sources(Frozen):
    apt: AptSource = AptSource()
    python: PythonSource = PythonSource()
    llamacpp: LlamaCppSource = LlamaCppSource()
    weights: WeightsSource = WeightsSource()


WHEELHOUSE_DIR = "/var/cache/metalserve/wheels"
"""Where a bundled wheelhouse is pushed on the host."""


def pip_source_args(source: PythonSource) -> list[str]:
    """pip options that make ``source`` the only place wheels come from.

    Example::

        pip_source_args(PythonSource(kind="mirror", index_url="http://10.0.0.1/simple"))
        # ['--index-url', 'http://10.0.0.1/simple']
    """
    if source.kind is SourceKind.MIRROR and source.index_url:
        return ["--index-url", source.index_url]
    if source.kind is SourceKind.BUNDLE:
        return ["--no-index", "--find-links", WHEELHOUSE_DIR]
    return []
