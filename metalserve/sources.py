"""Where packages, wheels, sources and weights come from: online, a mirror, or an offline bundle.

A sovereign (air-gapped) site uses the same roles with mirror or bundle sources.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from metalserve.catalog import pins
from metalserve.hardware import Frozen
from metalserve.types import FlagText, LocalPath, Sha256, SourceUrl, Url


class SourceKind(StrEnum):
    ONLINE = "online"  # the vendor's public repository / PyPI / Hugging Face Hub
    MIRROR = "mirror"  # a site-local mirror reached over the network (apt repo, index, HF_ENDPOINT)
    BUNDLE = "bundle"  # files pushed from the control host over SSH (nothing fetched by the host)


class BundleLayout(Frozen):
    """Where each input lies in a bundle made by ``metalserve bundle build`` (paths relative to
    its root): one signed flat apt repository per OS release and architecture, one wheelhouse for
    every Python, the source tarballs, the model snapshots, and the manifest.

    Example::

        BundleLayout(root="/srv/bundle").apt_repo("debian12-amd64")
        # '/srv/bundle/apt/debian12-amd64'
    """

    root: str = "."

    def _at(self, relative: str) -> str:
        return relative if self.root == "." else f"{self.root.rstrip('/')}/{relative}"

    @property
    def manifest(self) -> str:
        return self._at("bundle.json")

    @property
    def key(self) -> str:
        """The public key the apt repositories are signed with (binary OpenPGP, for signed-by)."""
        return self._at("keys/metalserve-bundle.gpg")

    def apt_repo(self, target: str) -> str:
        return self._at(f"apt/{target}")

    @property
    def wheels(self) -> str:
        return self._at("wheels")

    @property
    def llamacpp_tarball(self) -> str:
        return self._at(f"sources/llama.cpp-{pins.LLAMA_CPP.version}.tar.gz")

    def nccl_tests_tarball(self, ref: str) -> str:
        return self._at(f"sources/nccl-tests-{ref}.tar.gz")

    @property
    def models(self) -> str:
        return self._at("models")

    def model_dir(self, repo_id: str) -> str:
        return self._at(f"models/{repo_id.replace('/', '--')}")


class AptSource(Frozen):
    kind: SourceKind = SourceKind.ONLINE
    url: Url | None = Field(default=None, description="mirror: a flat repo URL ('deb URL ./')")
    path: LocalPath | None = Field(
        default=None,
        description="bundle: a bundle made by `metalserve bundle build` on the control host (one "
        "signed flat repository per OS release and architecture, and its key)",
    )

    @model_validator(mode="after")
    def _needs_location(self) -> AptSource:
        if self.kind is SourceKind.MIRROR and not self.url:
            raise ValueError("a mirror apt source needs url, e.g. http://10.0.0.1:8080/apt")
        if self.kind is SourceKind.BUNDLE and not self.path:
            raise ValueError("a bundle apt source needs path (a bundle dir on the control host)")
        return self

    @property
    def bundle(self) -> BundleLayout | None:
        return (
            BundleLayout(root=self.path) if self.kind is SourceKind.BUNDLE and self.path else None
        )


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


_BUNDLED = ("apt", "python", "llamacpp", "weights")


class Sources(Frozen):
    """Where each input comes from. ``bundle`` (a folder made by ``metalserve bundle build``)
    takes every one of them from that bundle: the apt repository for the host's release, the
    wheelhouse, the llama.cpp source, the model snapshot and the nccl-tests source.

    Example (host data)::

        "sources": {"bundle": "/srv/metalserve-bundle"}
    """

    bundle: LocalPath | None = Field(
        default=None, description="a bundle dir on the control host: every input from it"
    )
    apt: AptSource = AptSource()
    python: PythonSource = PythonSource()
    llamacpp: LlamaCppSource = LlamaCppSource()
    weights: WeightsSource = WeightsSource()

    @model_validator(mode="before")
    @classmethod
    def _from_bundle(cls, data: object) -> object:
        if not isinstance(data, dict) or not data.get("bundle"):
            return data
        also = [name for name in _BUNDLED if name in data]
        if also:
            raise ValueError(
                f"bundle takes every input from the bundle, and {', '.join(also)} is set too — "
                "fix: remove it, or remove bundle"
            )
        layout = BundleLayout(root=str(data["bundle"]))
        return {
            **data,
            "apt": {"kind": SourceKind.BUNDLE, "path": layout.root},
            "python": {"kind": SourceKind.BUNDLE, "wheelhouse": layout.wheels},
            "llamacpp": {"kind": "local", "path": layout.llamacpp_tarball},
            "weights": {"kind": SourceKind.BUNDLE, "path": layout.models},
        }

    @property
    def layout(self) -> BundleLayout | None:
        return BundleLayout(root=self.bundle) if self.bundle else None

    @property
    def pushes(self) -> bool:
        """Some input goes from the control host onto the host (a bundle apt repository,
        wheelhouse or model snapshot), which takes rsync on the host (``roles.push``)."""
        return SourceKind.BUNDLE in (self.apt.kind, self.python.kind, self.weights.kind)


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
