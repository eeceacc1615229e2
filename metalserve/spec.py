"""Validate one inventory host's ``metalserve`` data into a typed ``HostSpec``.

Example::

    spec = host_spec("gpu01", {"profile": "h200-sxm-8", "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
                               "engine": {"name": "vllm", "tensor_parallel_size": 8}})
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    Field,
    IPvAnyNetwork,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from metalserve.catalog.nvidia_stack import NvidiaStack
from metalserve.catalog.profiles import PROFILES
from metalserve.composition import HardwareSpec, compose
from metalserve.diag.spec import DiagSpec
from metalserve.engines import EngineSettings
from metalserve.errors import MetalserveError, SpecError
from metalserve.hardening import GOVERNED_BY, RELAXABLE
from metalserve.hardware import Frozen, HardwareProfile
from metalserve.nccl import FabricSpec
from metalserve.preflight import PreflightSpec
from metalserve.sources import Sources
from metalserve.target import HostOs
from metalserve.types import (
    Address,
    CatalogueId,
    ClusterName,
    EnvName,
    EnvValue,
    FlagText,
    HostName,
    LocalPath,
    NcclName,
    NcclValue,
    Port,
    RepoId,
    Revision,
    ServedName,
    ServiceName,
    UserName,
    repo_id_problem,
    shown,
)

DATA_KEY = "metalserve"
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY")


class ModelRef(Frozen):
    """A catalogue checkpoint; or a hub repo id, a local directory on the control host, or both
    (the directory is then read to plan and size the repo without fetching it)."""

    checkpoint: CatalogueId | None = Field(
        default=None, description="a catalogue id, e.g. zai-org/GLM-5.2-FP8"
    )
    repo_id: RepoId | None = Field(default=None, description="any Hugging Face repo id")
    revision: Revision = "main"
    local_dir: LocalPath | None = Field(
        default=None, description="a checkpoint dir on the control host"
    )
    served_name: ServedName | None = None

    @model_validator(mode="after")
    def _one_model(self) -> ModelRef:
        if self.checkpoint and (self.repo_id or self.local_dir):
            raise ValueError("give a catalogue checkpoint, or repo_id/local_dir, not both")
        if not (self.checkpoint or self.repo_id or self.local_dir):
            raise ValueError("give one of checkpoint, repo_id or local_dir")
        if self.local_dir and not self.repo_id:
            folder = self.local_dir.rstrip("/").rsplit("/", 1)[-1]
            if repo_id_problem(folder) is not None:
                raise ValueError(
                    f"local_dir: expected a folder named like a repo (A-Z a-z 0-9 . _ -), found "
                    f"{shown(folder)}; it names the model on the host — fix: give model.repo_id"
                )
        return self

    @property
    def name(self) -> str:
        """The id clients use: served_name, else the repo id / checkpoint / directory name."""
        ref = self.served_name or self.checkpoint or self.repo_id or self.local_dir or ""
        return ref.rstrip("/")


class ClusterSpec(Frozen):
    """Multi-node: which cluster this host belongs to and its place in it. Every host sharing
    ``name`` is planned together with it (hosts of one multi-node setup without a name form one
    cluster per hardware)."""

    name: ClusterName | None = None
    node_rank: int = Field(ge=0, le=1023)
    address: Address | None = Field(
        default=None,
        description="this node's address on the cluster network; default: the inventory name",
    )
    head_address: Address | None = Field(
        default=None,
        description="rank 0's address, if given it must be rank 0's own address",
    )
    port: Port = 29500


class AccessSpec(Frozen):
    """Who may reach the engine. Closed by default: the engine binds 127.0.0.1 unless
    ``engine.host`` names an address; binding every interface (0.0.0.0, ::) needs ``clients``,
    the networks a firewall (nftables, ``table inet metalserve``) lets reach the serving port.

    Example (host data)::

        "access": {"clients": ["10.20.0.0/16"]}
    """

    clients: tuple[IPvAnyNetwork, ...] = Field(
        default=(), description="client networks allowed to the serving port (CIDR)"
    )
    firewall: bool = Field(
        default=True,
        description="write and load the nftables table; off only where the site's own firewall "
        "enforces the same (say so in firewall_off_reason)",
    )
    firewall_off_reason: FlagText | None = Field(default=None, min_length=3, max_length=200)
    ssh_port: int = Field(default=22, ge=1, le=65535, description="never dropped by metalserve")

    @model_validator(mode="after")
    def _off_needs_reason(self) -> AccessSpec:
        if not self.firewall and not self.firewall_off_reason:
            raise ValueError(
                "firewall off needs firewall_off_reason — fix: say which firewall enforces it"
            )
        return self


class SecretsSpec(Frozen):
    """Secrets are files on the control host; the deploy copies them 0600 and units load them as
    systemd credentials. Their contents never enter argv, unit files or logs."""

    hf_token_file: LocalPath | None = None
    api_key_file: LocalPath | None = None


class ServiceSpec(Frozen):
    name: ServiceName | None = None
    user: UserName = "metalserve"
    keep_warm_minutes: int | None = Field(
        default=None, ge=1, description="ping /health this often (Modal H200 post: every 14 min)"
    )
    health_timeout_s: int = Field(default=1800, ge=10)
    relax: dict[str, FlagText] = Field(
        default_factory=dict,
        description="systemd directive -> why this host needs it off (metalserve/hardening.py)",
    )

    @field_validator("relax")
    @classmethod
    def _relax_known_with_reason(cls, relax: dict[str, str]) -> dict[str, str]:
        for name, reason in relax.items():
            if name in GOVERNED_BY:
                raise ValueError(
                    f"{name} goes with {GOVERNED_BY[name]} — fix: relax {GOVERNED_BY[name]}"
                )
            if name not in RELAXABLE:
                raise ValueError(
                    f"{name!r} is not a directive metalserve sets (known: "
                    f"{', '.join(sorted(RELAXABLE))}) — fix: name one of them"
                )
            if not reason.strip() or not reason.isprintable():
                raise ValueError(
                    f"{name}: the reason must be one line of text saying why this host needs it "
                    "(it is written into the unit) — fix: give the reason"
                )
        return relax


class HostSpec(Frozen):
    host: HostName
    profile: str | None = Field(default=None, description="a catalogue preset, e.g. h200-sxm-8")
    hardware: HardwareSpec | None = Field(default=None, description="or a composition of parts")
    model: ModelRef
    engine: EngineSettings
    fabric: FabricSpec | None = None
    cluster: ClusterSpec | None = None
    nccl: dict[NcclName, NcclValue] = Field(default_factory=dict, description="NCCL_* overrides")
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        description="extra engine environment (no secrets), e.g. HF_XET_HIGH_PERFORMANCE",
    )
    sources: Sources = Sources()
    secrets: SecretsSpec = SecretsSpec()
    access: AccessSpec = AccessSpec()
    service: ServiceSpec = ServiceSpec()
    diag: DiagSpec = DiagSpec()
    nvidia: NvidiaStack = NvidiaStack()
    preflight: PreflightSpec = PreflightSpec()
    os: HostOs | None = Field(
        default=None, description="release and architecture, for a bundle built off-site"
    )

    @field_validator("env")
    @classmethod
    def _no_secrets_in_env(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if any(word in name.upper() for word in SECRET_WORDS):
                raise ValueError(
                    f"{name} looks like a secret; env is written to a world-readable file — "
                    "fix: put it in metalserve.secrets as a file"
                )
        return env

    @field_validator("profile")
    @classmethod
    def _profile_known(cls, profile: str | None) -> str | None:
        if profile is not None and profile not in PROFILES:
            raise ValueError(
                f"unknown hardware profile (known: {', '.join(PROFILES)}) — fix: name one, or "
                "compose the setup under metalserve.hardware"
            )
        return profile

    @model_validator(mode="after")
    def _one_hardware(self) -> HostSpec:
        if (self.profile is None) == (self.hardware is None):
            raise ValueError(
                "give exactly one of profile (a preset) or hardware (a composition) — fix: keep "
                "one of them"
            )
        return self

    @property
    def setup(self) -> HardwareProfile:
        """The hardware this host is part of: the preset, or the inventory's composition."""
        if self.hardware is not None:
            return compose(self.hardware)
        return PROFILES[str(self.profile)]


_FIXES = {
    "extra_forbidden": "remove it or fix its spelling",
    "missing": "add it",
    "literal_error": "use one of the listed values",
    "union_tag_invalid": "set engine.name to vllm, sglang or llamacpp",
    "union_tag_not_found": "set engine.name to vllm, sglang or llamacpp",
}


def _one_line(host: str, exc: ValidationError) -> SpecError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    # pydantic names the union member in the path (engine.vllm.port); the user wrote engine.port
    loc = [
        p
        for i, p in enumerate(loc)
        if not (i > 0 and loc[i - 1] == "engine" and p in ("vllm", "sglang", "llamacpp"))
    ]
    # a key of a mapping (env, nccl) is named as the user wrote it, escaped to stay on one line
    loc = [p if re.fullmatch(r"[\w.-]+", p) else shown(p) for p in loc if p != "[key]"]
    field = ".".join([DATA_KEY, *loc]) if loc else DATA_KEY
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    got = err.get("input")
    if " — " in message:  # the validator already says what it found and what to do
        return SpecError(f"host {host}: {field}: {message}")
    if err["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict | list):
        message += f" (got {shown(got)})"
    fix = _FIXES.get(err["type"], "correct the value in the inventory")
    return SpecError.at(host, field, message, fix)


_HOST_NAME: TypeAdapter[str] = TypeAdapter(HostName)


def host_spec(host: str, data: Any) -> HostSpec:
    """The validated spec of one host, or a one-line ``SpecError`` naming host, field and fix."""
    try:
        _HOST_NAME.validate_python(host)
    except ValidationError as exc:
        message = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise SpecError(f"host {shown(host)}: inventory host name: {message}") from None
    if not isinstance(data, dict):
        raise SpecError.at(
            host, DATA_KEY, "missing or not a mapping", "add the metalserve host data"
        )
    try:
        return HostSpec(host=host, **data)
    except ValidationError as exc:
        raise _one_line(host, exc) from None
    except MetalserveError as exc:
        raise SpecError(f"host {host}: {exc}") from None
    except TypeError as exc:
        raise SpecError.at(host, DATA_KEY, str(exc), "check the host data keys") from None
