"""One typed plan per node, decided with its whole cluster, computed without touching any host.

The inventory's hosts are validated together (``metalserve.cluster``); each node's plan is then made
of decided sections — the NVIDIA stack, the fabric, the engine, credentials, weights, the llama.cpp
build, the GGUF conversion, the service and the diagnostic — and a role receives only its section.
Nothing in a plan is the raw inventory.

Example::

    plans = plan_hosts([host_spec("gpu01", data)])
    plans[0].service.exec_argv, plans[0].nccl.as_dict(), plans[0].sizing.summary()
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field

from metalserve import weights as weights_facts
from metalserve.catalog import pins
from metalserve.catalog.checkpoints import CHECKPOINTS
from metalserve.catalog.engine_locks import EngineLock, locks_for
from metalserve.catalog.nvidia_stack import cuda_runtime_problem
from metalserve.catalog.packages import FIREWALL, PUSH, packages_for
from metalserve.checkpoint import Checkpoint, WeightFormat
from metalserve.cluster import Cluster, ClusterNode, clusters_of
from metalserve.diag.plan import DiagNode, DiagPlan, diag_plan
from metalserve.diag.spec import DiagSpec, NcclTestsSource
from metalserve.engines import LlamaCppSettings, SglangSettings, VllmSettings
from metalserve.engines.base import NodeRole
from metalserve.engines.flagsets import check_argv, deprecation_notes, flagset
from metalserve.engines.llamacpp import QUANT_BITS_PER_WEIGHT, RPC_SERVER, rpc_server_argv
from metalserve.errors import PlanError, SpecError
from metalserve.firewall import ALL_INTERFACES, FirewallPlan, firewall_plan
from metalserve.gguf import (
    BF16_SUFFIX,
    CONVERTER_DEQUANTIZES,
    DEQUANTIZED_FIRST,
    GGUF_SPLIT_TOOL,
    LOCK_SUFFIX,
    SPLIT_PART_MAX_BYTES,
    conversion_route,
    leftovers,
    parts_name,
    quantized_name,
    split_parts,
    split_path,
)
from metalserve.hardening import Node, ServiceHardening, service_hardening
from metalserve.hardware import Frozen, HardwareProfile, Interconnect, NetworkFabric
from metalserve.layout import Layout
from metalserve.nccl import NcclEnvironment, distributed_environment, nccl_environment
from metalserve.preflight import PreflightPlan
from metalserve.sizing import (
    SizingReport,
    audit_claims,
    gguf_bytes_from,
    request_for,
    size,
    smallest_setup,
)
from metalserve.sources import AptSource, LlamaCppSource, PythonSource, SourceKind, WeightsSource
from metalserve.spec import HostSpec
from metalserve.stack import FabricPlan, NvidiaPlan, fabric_plan, nvidia_plan
from metalserve.types import (
    FileStem,
    HostPath,
    RepoId,
    Revision,
    ServedName,
    ServiceName,
    UserName,
)

CUDA_HOME = "/usr/local/cuda"
"""Where NVIDIA's cuda-toolkit packages put the active toolkit (a symlink to cuda-<version>)."""

API_KEY_CREDENTIAL = "api_key"
API_KEY_HEADER_CREDENTIAL = "api_key_header"
"""The key as 'Authorization: Bearer …', so curl reads it from a file (``-H @file``): the health
and smoke requests never put it in argv."""
SGLANG_KEY_CONFIG_CREDENTIAL = "sglang-api-key.yaml"
"""SGLang takes its key as --api-key only (no environment variable in 0.5.23's arg_groups/fields/
serving.py), but reads any flag from ``--config FILE.yaml`` inside the process
(sglang/srt/utils/server_args_config_parser.py): the key stays out of argv and ps."""
HF_TOKEN_CREDENTIAL = "hf_token"
GENERATED_KEYS_DIR = "~/.config/metalserve/keys"
"""Where an API key is generated (0600) on the control host when the inventory names none."""
LOOPBACK = "127.0.0.1"

Engine = VllmSettings | SglangSettings | LlamaCppSettings


class Credential(Frozen):
    """A secret copied 0600 from the control host and loaded by the unit as a systemd credential."""

    name: str
    local_path: str = Field(description="the file on the control host")
    host_path: str = Field(description="the root-only copy on the node")
    form: Literal["as_is", "bearer_header", "sglang_config"] = Field(
        default="as_is", description="what the node's copy holds, made from the local file"
    )
    generate: bool = Field(
        default=False, description="an API key made on the control host when the file is missing"
    )
    unit: bool = Field(default=False, description="loaded by the engine's unit (LoadCredential=)")


class PackagesPlan(Frozen):
    names: tuple[str, ...]
    apt: AptSource


class EnginePlan(Frozen):
    """The engine as this node runs it."""

    name: str
    version: str
    venv: str | None = Field(description="its own venv; None for llama.cpp, built from source")
    requirements: tuple[str, ...]
    python: PythonSource
    served_name: str = Field(description="the one model name clients, health and smoke ask for")
    running_requests_metric: str
    head: bool = Field(description="serves the API (rank 0); a worker only joins the head")
    locks: tuple[EngineLock, ...] = Field(
        default=(),
        description="the release's locks this node may install from; the role takes the one of "
        "the host's Python and architecture (refusing a target listed without a lock)",
    )
    parser_args: tuple[str, ...] = Field(
        default=(),
        description="the unit's engine arguments as the engine's own parser reads them, checked "
        "by the installed engine before the unit is written (no secret among them)",
    )


class WeightsPlan(Frozen):
    repo_id: RepoId
    revision: Revision
    source: WeightsSource
    local_dir: str = Field(description="the verified checkpoint on the host")
    token_file: str | None = Field(description="0600 file on the host, given as HF_TOKEN_PATH")
    expected_bytes: int | None
    hub_venv: str
    hub_requirements: tuple[str, ...]
    python: PythonSource
    allow_patterns: tuple[str, ...] = Field(
        default=(), description="the repo's files to fetch (fnmatch); empty: every file"
    )
    ignore_patterns: tuple[str, ...] = ()
    max_workers: int = Field(default=weights_facts.DOWNLOAD_WORKERS, gt=0)
    unit: str = Field(default="", description="the transient systemd unit that downloads")
    fetches: bool = Field(
        default=True, description="False: another node downloads into the shared folder"
    )
    progress_every_s: int = weights_facts.PROGRESS_EVERY_S
    stall_s: int = weights_facts.STALL_S


class LlamaCppBuildPlan(Frozen):
    version: str
    source: LlamaCppSource
    source_tarball: str = Field(description="where the source tarball is kept on the host")
    cmake_flags: tuple[str, ...]
    targets: tuple[str, ...] = ("llama-server", "llama-quantize")
    cuda_archs: tuple[str, ...] = ()
    build_key: str = Field(description="hash of version + flags: names the install prefix")
    prefix: str
    current: str = Field(description="symlink to the active prefix")

    @property
    def bin(self) -> str:
        return f"{self.current}/bin"


class GgufSplitPlan(Frozen):
    """The quantized GGUF cut by llama-gguf-split into ``parts`` files (``metalserve.gguf``)."""

    folder: HostPath = Field(
        description="holds the parts and nothing else: made under a temporary name and renamed "
        "whole, so no part of an earlier split lies beside them"
    )
    prefix: HostPath = Field(
        description="llama-gguf-split's GGUF_OUT, in folder: the parts are PREFIX-%05d-of-%05d.gguf"
    )
    parts: int = Field(ge=2, le=99_999, description="decided from the estimate (split_parts)")
    part_max_bytes: int = Field(gt=0, description="the most one part may weigh once made")
    estimate_bytes: int = Field(gt=0, description="the GGUF's size the count was decided from")

    @property
    def first(self) -> str:
        """Part 1: the file llama-server is given."""
        return split_path(self.prefix, 1, self.parts)

    def names(self) -> tuple[str, ...]:
        """Every part's file name in ``folder``, part 1 first."""
        return tuple(
            posixpath.basename(split_path(self.prefix, index, self.parts))
            for index in range(1, self.parts + 1)
        )


class GgufPlan(Frozen):
    folder: HostPath = Field(description="the GGUF directory, shared by every checkpoint converted")
    stem: FileStem = Field(
        description="the checkpoint's name in folder: every file its conversion writes starts "
        "with it (metalserve.gguf.leftovers)"
    )
    model_dir: str
    quant: str
    f16_path: str
    out_path: str = Field(description="the quantized GGUF; with a split, removed once cut")
    bf16_dir: str = Field(description="the BF16 copy of a checkpoint the converter cannot read")
    converter_methods: tuple[str, ...] = Field(
        description="quant_methods llama.cpp's converter dequantizes itself (metalserve.gguf)"
    )
    bf16_methods: tuple[str, ...] = Field(description="quant_methods dequantized to BF16 first")
    converter_venv: str
    converter_requirements: tuple[str, ...]
    python: PythonSource
    split: GgufSplitPlan | None = Field(
        default=None, description="None: served as one file (small, or its size is not known)"
    )

    @property
    def model_path(self) -> str:
        """What llama-server is given: the quantized file, or the first of its parts."""
        return self.split.first if self.split else self.out_path

    @property
    def lock_path(self) -> str:
        """The ``flock`` a conversion holds, beside the quantized file."""
        return f"{self.out_path}{LOCK_SUFFIX}"

    def leftovers(self, found: Mapping[str, int]) -> dict[str, int]:
        """What earlier conversions of this checkpoint left in ``folder`` that this plan does
        not serve from (another quant; the parts of a split it no longer makes, or the single
        file of one it now makes; an intermediate; a killed run's temporary output), each with
        its bytes. ``found``: ``folder``'s files and their sizes (``roles.sizes.FileSizes``)."""
        served = self.split.folder if self.split else self.out_path
        return leftovers(
            found,
            self.stem,
            QUANT_BITS_PER_WEIGHT,
            served=posixpath.basename(served),
            lock=posixpath.basename(self.lock_path),
        )


class ServicePlan(Frozen):
    name: ServiceName
    unit_path: str
    env_file: str
    user: UserName
    port: int
    health_url: str | None
    completion_url: str | None
    served_model: ServedName
    health_timeout_s: int
    keep_warm_minutes: int | None
    credentials: tuple[tuple[str, str], ...] = Field(description="(name, file on host) pairs")
    exec_argv: tuple[str, ...]
    secret_env: tuple[tuple[str, str], ...] = Field(
        default=(), description="(VARIABLE, credential name): exported from the credential at start"
    )
    workers: tuple[str, ...] = Field(
        default=(), description="head of a cluster: worker host:port the health check reaches"
    )
    restart: str = Field(default="on-failure", description="the unit's Restart= policy")
    worker_hosts: tuple[str, ...] = Field(
        default=(),
        description="head of a llama.cpp RPC cluster: the worker hosts whose restart restarts it",
    )
    hardening: ServiceHardening = Field(description="the units' systemd sandbox (hardening.py)")
    unsourced: tuple[tuple[str, str], ...] = Field(
        default=(),
        description="(file, why and fix): files the unit reads that no deploy step provides, "
        "checked on the host before the unit is written",
    )


class HostPlan(Frozen):
    host: str
    profile: HardwareProfile = Field(description="the hardware, preset or composed")
    cluster: Cluster
    node: ClusterNode
    checkpoint: Checkpoint | None
    sizing: SizingReport | None
    smallest_setup: str | None
    command: tuple[str, ...] = Field(description="the engine command as a person would type it")
    environment: tuple[tuple[str, str], ...] = Field(description="the unit's EnvironmentFile")
    nccl: NcclEnvironment
    layout: Layout
    packages: PackagesPlan
    engine: EnginePlan
    nvidia: NvidiaPlan | None
    fabric: FabricPlan | None
    credentials: tuple[Credential, ...]
    firewall: FirewallPlan | None = Field(description="None where the site's own firewall rules")
    weights: WeightsPlan | None
    llamacpp: LlamaCppBuildPlan | None
    gguf: GgufPlan | None
    service: ServicePlan
    diag: DiagPlan | None = Field(description="nccl-tests on this node; none without a GPU")
    preflight: PreflightPlan
    warnings: tuple[str, ...] = ()

    def environment_dict(self) -> dict[str, str]:
        return dict(self.environment)


def _cmake_flags(profile: HardwareProfile, rpc: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Static binaries can be moved into the versioned prefix; GGML_NATIVE=OFF keeps them portable
    # across the hosts of a site (still AVX2); the web UI would be fetched online.
    flags = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DGGML_NATIVE=OFF",
    ]
    archs: tuple[str, ...] = ()
    if profile.gpu is not None:
        archs = (profile.gpu.cuda_arch,)
        flags += [
            "-DGGML_CUDA=ON",
            f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}",
            f"-DCMAKE_CUDA_COMPILER={CUDA_HOME}/bin/nvcc",
        ]
    if rpc:
        # ggml/CMakeLists.txt GGML_RPC builds tools/rpc (target ggml-rpc-server). Its RDMA transport
        # is switched on whenever libibverbs happens to be found (ggml/src/ggml-rpc/CMakeLists.txt),
        # which would change the binary without changing the build key: TCP, said explicitly.
        flags += ["-DGGML_RPC=ON", "-DGGML_RPC_RDMA=OFF"]
    return tuple(flags), archs


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _node_role(cluster: Cluster, node: ClusterNode) -> NodeRole:
    return NodeRole(
        nnodes=len(cluster.nodes),
        rank=node.rank,
        head_address=cluster.head.address,
        port=cluster.port,
        workers=tuple(n.address for n in cluster.workers),
        worker_hosts=tuple(n.host for n in cluster.workers),
        gpus_per_node=cluster.hardware.gpus_per_node,
    )


def _parallelism_warnings(spec: HostSpec, profile: HardwareProfile) -> list[str]:
    """Refuse what cannot run; warn about what runs slowly (tensor parallelism across nodes)."""
    engine = spec.engine
    if isinstance(engine, LlamaCppSettings):
        if engine.tensor_split and len(engine.tensor_split) != profile.gpus_per_node:
            raise PlanError(
                f"host {spec.host}: metalserve.engine.tensor_split: {len(engine.tensor_split)} "
                f"entries but {profile.id} has {profile.gpus_per_node} GPUs — fix: one per GPU"
            )
        return []
    if profile.gpu is None:
        raise PlanError(
            f"host {spec.host}: metalserve.engine.name: {engine.name} needs a GPU and {profile.id} "
            "has none — fix: use llamacpp"
        )
    tp, pp = engine.parallel
    dp = (engine.data_parallel_size or 1) if isinstance(engine, VllmSettings) else 1
    if tp * pp * dp > profile.total_gpus:
        sizes = f"TP {tp} × PP {pp}" + (f" × DP {dp}" if dp > 1 else "")
        raise PlanError(
            f"host {spec.host}: metalserve.engine: {sizes} = {tp * pp * dp} GPUs but "
            f"{profile.id} has {profile.total_gpus} — fix: lower the parallel sizes"
        )
    if dp > 1 and profile.multi_node and dp % profile.nodes:
        raise PlanError(
            f"host {spec.host}: metalserve.engine.data_parallel_size: {dp} ranks do not split "
            f"evenly over {profile.nodes} nodes — fix: a multiple of {profile.nodes}"
        )
    if tp > profile.gpus_per_node:
        return [
            f"TP {tp} spans nodes ({profile.gpus_per_node} GPUs per node): every layer's "
            f"all-reduce crosses the {profile.fabric} fabric, an order of magnitude slower than "
            "NVLink — TP within a node and PP or DP across nodes is usually faster"
        ]
    return []


def _served_name(spec: HostSpec, repo_id: str | None) -> str:
    """One name for the model: the engine's own setting, else model.served_name, else the repo."""
    engine = spec.engine
    if not isinstance(engine, LlamaCppSettings) and engine.served_model_name:
        return engine.served_model_name
    return spec.model.served_name or repo_id or spec.model.name


def _weights(
    spec: HostSpec, layout: Layout, ckpt: Checkpoint | None, token_allowed: bool, rank: int
) -> WeightsPlan | None:
    repo = spec.model.repo_id or (ckpt.repo_id if ckpt else None)
    source = spec.sources.weights
    if repo is None and spec.model.local_dir:
        repo = f"local/{spec.model.local_dir.rstrip('/').rsplit('/', 1)[-1]}"
        source = WeightsSource(kind=SourceKind.BUNDLE, path=spec.model.local_dir)
    if repo is None:
        return None
    if spec.sources.layout is not None and source.kind is SourceKind.BUNDLE:
        source = source.model_copy(update={"path": spec.sources.layout.model_dir(repo)})
    local_dir = f"{spec.model.shared_dir or layout.models}/{repo.replace('/', '--')}"
    return WeightsPlan(
        repo_id=repo,
        revision=spec.model.revision,
        source=source,
        local_dir=local_dir,
        allow_patterns=_weight_files(spec, ckpt),
        ignore_patterns=weights_facts.ignore_patterns(_weight_format(spec, ckpt)),
        unit=weights_facts.unit_name(repo, spec.model.revision, local_dir),
        fetches=spec.model.shared_dir is None or rank == 0,
        hub_venv=layout.venv("hub"),
        hub_requirements=pins.hub_client_requirements(),
        token_file=(
            f"{layout.credentials}/{HF_TOKEN_CREDENTIAL}"
            if spec.secrets.hf_token_file and token_allowed
            else None
        ),
        expected_bytes=ckpt.weight_bytes if ckpt else None,
        python=spec.sources.python,
    )


def _weight_format(spec: HostSpec, ckpt: Checkpoint | None) -> WeightFormat:
    if spec.model.gguf_file:
        return WeightFormat.GGUF
    return ckpt.format if ckpt else WeightFormat.SAFETENSORS


def _weight_files(spec: HostSpec, ckpt: Checkpoint | None) -> tuple[str, ...]:
    """The repo's files this model needs (``metalserve.weights``), its GGUF checked against the
    catalogue checkpoint's quantization."""
    file = spec.model.gguf_file
    if ckpt is not None and file and ckpt.format is not WeightFormat.GGUF:
        raise PlanError(
            f"host {spec.host}: metalserve.model.gguf_file: {ckpt.id} is a {ckpt.format} "
            "checkpoint, not a GGUF — fix: leave gguf_file out, or name a GGUF checkpoint"
        )
    if ckpt is not None and file and (want := weights_facts.quant_problem(file, ckpt.weight_dtype)):
        raise PlanError(
            f"host {spec.host}: metalserve.model.gguf_file: expected {want} for {ckpt.id}, "
            f"found {file} — fix: name the {ckpt.weight_dtype.upper()} file of the repository"
        )
    try:
        return weights_facts.allow_patterns(_weight_format(spec, ckpt), file)
    except ValueError as exc:
        raise PlanError(f"host {spec.host}: metalserve.model.gguf_file: {exc}") from None


def _credentials(
    spec: HostSpec, layout: Layout, cluster: Cluster, token_allowed: bool
) -> tuple[Credential, ...]:
    """Every engine gets an API key: the inventory's, or one generated on the control host for
    the cluster on the first deploy."""
    key = spec.secrets.api_key_file or f"{GENERATED_KEYS_DIR}/{cluster.name}.api_key"
    generate = spec.secrets.api_key_file is None

    def credential(name: str, local: str, **kw: object) -> Credential:
        return Credential(
            name=name, local_path=local, host_path=f"{layout.credentials}/{name}", **kw
        )

    made = [
        credential(API_KEY_CREDENTIAL, key, generate=generate, unit=spec.engine.name != "sglang"),
        credential(API_KEY_HEADER_CREDENTIAL, key, form="bearer_header", generate=generate),
    ]
    if spec.engine.name == "sglang":
        made.append(
            credential(
                SGLANG_KEY_CONFIG_CREDENTIAL,
                key,
                form="sglang_config",
                generate=generate,
                unit=True,
            )
        )
    if spec.secrets.hf_token_file and token_allowed:
        made.insert(0, credential(HF_TOKEN_CREDENTIAL, spec.secrets.hf_token_file))
    return tuple(made)


def _token_allowed(spec: HostSpec) -> tuple[bool, list[str]]:
    """The HF token goes to the Hub or an HTTPS mirror, or to a plain-HTTP one the inventory
    trusts by name; otherwise it stays on the control host and the plan says so."""
    weights = spec.sources.weights
    if not spec.secrets.hf_token_file or not weights.sends_token_in_clear:
        return True, []
    if weights.trust_plain_http:
        return True, []
    return False, [
        f"metalserve.secrets.hf_token_file: not sent to {weights.endpoint}: huggingface_hub "
        "would send it in clear over plain HTTP — fix: an https:// mirror, or set "
        "sources.weights.trust_plain_http to why this link is private"
    ]


def _bind_address(spec: HostSpec) -> str:
    """Closed by default: loopback unless the inventory names an address; every interface only
    with an allow-list of client networks (enforced by the firewall)."""
    address = spec.engine.host or LOOPBACK
    if address in ALL_INTERFACES and not spec.access.clients:
        raise PlanError(
            f"host {spec.host}: metalserve.engine.host: {address} binds every interface, and "
            "metalserve.access.clients names no client network — fix: list the networks "
            'allowed to reach the engine (e.g. ["10.20.0.0/16"]), or bind one address'
        )
    return address


def _llamacpp_source(source: LlamaCppSource) -> LlamaCppSource:
    """``source`` with upstream's URL filled in where the inventory names none."""
    if source.url is not None or source.kind == "local":
        return source
    url = pins.LLAMA_CPP_GIT if source.kind == "git" else pins.LLAMA_CPP_ARCHIVE
    return source.model_copy(update={"url": url})


def _llamacpp_build(
    spec: HostSpec, profile: HardwareProfile, layout: Layout, rpc: bool, split: bool
) -> LlamaCppBuildPlan:
    """The build on this node: ``llama-gguf-split`` with it only where a GGUF is split here."""
    if spec.sources.llamacpp.kind == "local" and not spec.sources.llamacpp.path:
        raise PlanError(
            f"host {spec.host}: metalserve.sources.llamacpp.path: required for kind local"
        )
    flags, archs = _cmake_flags(profile, rpc)
    # a CUDA build links the toolkit: a new toolkit pin is a new build
    toolkit = spec.nvidia.pins.cuda_version if archs else None
    key = _digest(pins.LLAMA_CPP.version, flags, toolkit)
    targets = (
        *LlamaCppBuildPlan.model_fields["targets"].default,
        *((GGUF_SPLIT_TOOL,) if split else ()),
        *((RPC_SERVER,) if rpc else ()),
    )
    return LlamaCppBuildPlan(
        version=pins.LLAMA_CPP.version,
        source=_llamacpp_source(spec.sources.llamacpp),
        source_tarball=f"{layout.sources}/llama.cpp-{pins.LLAMA_CPP.version}.tar.gz",
        cmake_flags=flags,
        targets=targets,
        cuda_archs=archs,
        build_key=key,
        prefix=f"{layout.llamacpp_root}/{pins.LLAMA_CPP.version}-{key}",
        current=f"{layout.llamacpp_root}/current",
    )


def _gguf(
    spec: HostSpec,
    engine: LlamaCppSettings,
    layout: Layout,
    ckpt: Checkpoint | None,
    weights: WeightsPlan | None,
) -> tuple[str, GgufPlan | None]:
    """Where llama-server's model lies, and the conversion that makes it (none for a GGUF)."""
    if weights is not None and spec.model.gguf_file:
        return f"{weights.local_dir}/{spec.model.gguf_file}", None  # fetched as it is served
    if ckpt is not None and ckpt.format is WeightFormat.GGUF:
        return f"{layout.gguf}/{ckpt.id}", None
    if weights is None:
        raise PlanError(
            f"host {spec.host}: metalserve.model: llama.cpp needs a GGUF or an HF repo to "
            "convert — fix: give model.repo_id"
        )
    if ckpt is not None:
        try:
            conversion_route(ckpt.quant_method)
        except PlanError as exc:
            raise PlanError(f"host {spec.host}: {exc}") from None
    stem = weights.repo_id.replace("/", "--")
    gguf = GgufPlan(
        folder=layout.gguf,
        stem=stem,
        model_dir=weights.local_dir,
        quant=engine.quant,
        f16_path=f"{layout.gguf}/{quantized_name(stem, 'F16')}",
        out_path=f"{layout.gguf}/{quantized_name(stem, engine.quant)}",
        bf16_dir=f"{layout.gguf}/{stem}{BF16_SUFFIX}",
        converter_methods=CONVERTER_DEQUANTIZES,
        bf16_methods=DEQUANTIZED_FIRST,
        converter_venv=layout.venv(f"convert-{pins.LLAMA_CPP.version}"),
        converter_requirements=pins.converter_requirements(),
        python=spec.sources.python,
        split=_gguf_split(layout.gguf, stem, engine.quant, ckpt),
    )
    return gguf.model_path, gguf


def _gguf_split(
    folder: str, stem: str, quant: str, ckpt: Checkpoint | None
) -> GgufSplitPlan | None:
    """The parts the GGUF of ``stem`` converted to ``quant`` in ``folder`` is cut into, decided
    from its estimated size; none when it fits one part or its size is not known."""
    if ckpt is None:
        return None
    estimate = gguf_bytes_from(ckpt, quant)
    parts = split_parts(estimate)
    if parts == 1:
        return None
    # beside the single file, under a name whose partial output the other's does not match
    parts_folder = f"{folder}/{parts_name(stem, quant)}"
    return GgufSplitPlan(
        folder=parts_folder,
        prefix=f"{parts_folder}/{stem}-{quant}",
        parts=parts,
        part_max_bytes=SPLIT_PART_MAX_BYTES,
        estimate_bytes=estimate,
    )


def _unsourced_gguf(
    ckpt: Checkpoint | None, model_path: str | None, fetched: bool
) -> tuple[tuple[str, str], ...]:
    """A catalogue GGUF without a repository (``fetched``: the inventory names one): nothing
    fetches or converts it, so llama-server would start on a missing file unless it was copied
    to the host by hand."""
    if ckpt is None or ckpt.format is not WeightFormat.GGUF or ckpt.repo_id or not model_path:
        return ()
    if fetched:
        return ()
    return (
        (
            model_path,
            f"metalserve.model.checkpoint: {ckpt.id} is a GGUF with no repository, so no deploy "
            f"step fetches it — fix: give model.repo_id and model.gguf_file (the repository "
            f"holding it, and its file), or copy it to {model_path} on the host",
        ),
    )


def _check_flags(engine: Engine, command: list[str]) -> list[str]:
    """The command against the flag set derived from that engine release's own source: an unknown
    flag or value is an error (one line), a deprecated one a warning."""
    args = engine.engine_args(command)
    fs = flagset(engine.name, engine.version)
    check_argv(fs, args)
    return deprecation_notes(fs, args)


def _engine_locks(
    spec: HostSpec, engine: Engine, profile: HardwareProfile
) -> tuple[EngineLock, ...]:
    """The locks of the engine release for this node's architecture (fixed by a superchip's GPU,
    else left to the host's facts), each one's CUDA runtime run by the pinned driver."""
    if isinstance(engine, LlamaCppSettings):
        return ()
    arch = profile.gpu.cpu_arch if profile.gpu is not None else None
    locks = tuple(
        lock for lock in locks_for(engine.name, engine.version) if arch in (None, lock.arch)
    )
    if not any(lock.sha256 for lock in locks):
        why = next((f" ({lock.unavailable})" for lock in locks if lock.unavailable), "")
        raise PlanError(
            f"host {spec.host}: metalserve.engine.version: {engine.name} {engine.version} has no "
            f"lock for {arch or 'any target'}{why} — fix: pin a release with wheels for it and "
            "run scripts/lock_engines.py"
        )
    driver = spec.nvidia.pins.driver_version
    for lock in locks:
        problem = None if lock.cuda_major is None else cuda_runtime_problem(driver, lock.cuda_major)
        if problem and profile.gpu is not None:
            raise PlanError(
                f"host {spec.host}: metalserve.nvidia.pins.driver_version: {engine.name} "
                f"{engine.version}'s wheels load the CUDA {lock.cuda_major} runtime ({lock.path}): "
                f"{problem} — fix: pin a newer driver"
            )
    return locks


class _Launch(Frozen):
    command: tuple[str, ...]
    exec_argv: tuple[str, ...]
    venv: str | None
    secret_env: tuple[tuple[str, str], ...] = ()
    parser_args: tuple[str, ...] = ()


def _launch(
    spec: HostSpec,
    engine: Engine,
    role: NodeRole,
    layout: Layout,
    served: str,
    weights: WeightsPlan | None,
    model_path: str | None,
    build: LlamaCppBuildPlan | None,
    address: str,
) -> _Launch:
    """The command a person would type, and the unit's exact argv on this node."""
    typed_ref = spec.model.checkpoint or spec.model.repo_id or spec.model.name
    if isinstance(engine, LlamaCppSettings):
        assert build is not None and model_path is not None
        key_file = f"%d/{API_KEY_CREDENTIAL}"
        if not role.head:
            worker = rpc_server_argv(build.bin, role, address)
            return _Launch(command=tuple(worker), exec_argv=tuple(worker), venv=None)
        return _Launch(
            command=tuple(engine.argv(model_path, api_key_file=key_file)),
            exec_argv=tuple(engine.argv(model_path, (f"{build.bin}/llama-server",), key_file)),
            venv=None,
        )
    if weights is None:
        raise PlanError(
            f"host {spec.host}: metalserve.model: no model weights to serve — fix: "
            "set model.checkpoint or model.repo_id"
        )
    venv = layout.venv(f"{engine.name}-{engine.version}")
    serving = engine.serving(served).argv(weights.local_dir, ())
    if isinstance(engine, VllmSettings):
        exe: tuple[str, ...] = (f"{venv}/bin/vllm",)
        secret_env: tuple[tuple[str, str], ...] = (("VLLM_API_KEY", API_KEY_CREDENTIAL),)
        key_args: tuple[str, ...] = ()
    else:
        exe = engine.executable(venv)
        secret_env = ()
        key_args = ("--config", f"%d/{SGLANG_KEY_CONFIG_CREDENTIAL}")
    return _Launch(
        command=tuple(engine.argv(typed_ref)),
        exec_argv=(*engine.serving(served).argv(weights.local_dir, exe), *key_args),
        venv=venv,
        secret_env=secret_env,
        # the key's --config file is a credential only the unit reads: not given to the check
        parser_args=tuple(engine.parser_args(serving)),
    )


def _service(
    spec: HostSpec,
    layout: Layout,
    launch: _Launch,
    port: int,
    role: NodeRole,
    served: str,
    credentials: tuple[Credential, ...],
    hardening: ServiceHardening,
) -> ServicePlan:
    bind = spec.engine.host or LOOPBACK
    base = f"http://{LOOPBACK if bind in ALL_INTERFACES else _url_host(bind)}:{port}"
    llamacpp_workers = (
        tuple(f"{w}:{role.port}" for w in role.workers)
        if spec.engine.name == "llamacpp" and role.head
        else ()
    )
    rpc_worker = spec.engine.name == "llamacpp" and not role.head
    return ServicePlan(
        name=layout.service,
        unit_path=layout.unit_file,
        env_file=layout.env_file,
        user=spec.service.user,
        port=port if role.head or spec.engine.name != "llamacpp" else role.port,
        health_url=f"{base}/health" if role.head else None,
        completion_url=f"{base}/v1/completions" if role.head else None,
        served_model=served,
        health_timeout_s=spec.service.health_timeout_s,
        keep_warm_minutes=spec.service.keep_warm_minutes,
        credentials=tuple((c.name, c.host_path) for c in credentials if c.unit),
        exec_argv=launch.exec_argv,
        secret_env=launch.secret_env,
        workers=llamacpp_workers,
        # rpc-server exits 0 when it cannot bind or reads a bad flag (tools/rpc/rpc-server.cpp):
        # on-failure would leave it down
        restart="always" if rpc_worker else "on-failure",
        worker_hosts=tuple(n for n in role.worker_hosts) if llamacpp_workers else (),
        hardening=hardening,
    )


def _check_rpc_addresses(cluster: Cluster) -> None:
    """rpc-server binds a numeric IPv4 address only; a name would make it exit at start."""
    for node in cluster.workers:
        if not ipv4(node.address):
            raise PlanError(
                f"cluster {cluster.name}: host {node.host}: metalserve.cluster.address: "
                f"llama.cpp's rpc-server binds a numeric IPv4 address, found {node.address!r} — "
                "fix: give the worker's IPv4 address on the cluster network"
            )


def ipv4(address: str) -> bool:
    parts = address.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and int(p) <= 255 and str(int(p)) == p for p in parts
    )


def _firewall(
    spec: HostSpec, cluster: Cluster, role: NodeRole, api_port: int
) -> FirewallPlan | None:
    """The serving port to the client networks (the head only serves), the rendezvous port to
    the other nodes of the cluster."""
    if not spec.access.firewall:
        return None
    peers = tuple(n.address for n in cluster.peers_of(spec.host))
    return firewall_plan(
        serving_port=api_port if role.head else None,
        clients=tuple(str(c) for c in spec.access.clients),
        cluster_ports=(cluster.port,) if cluster.multi_node else (),
        peers=peers,
        ssh_port=spec.access.ssh_port,
        cluster=cluster.name,
    )


def _preflight(
    spec: HostSpec, cluster: Cluster, node: ClusterNode, nccl: NcclEnvironment
) -> PreflightPlan:
    """The nodes this one dials on the rendezvous port, as the engine does: llama.cpp's head
    dials every worker's rpc-server; torch.distributed's workers (vLLM, SGLang) dial the head's
    store. The address check needs an IP to look for."""
    profile = cluster.hardware
    head = cluster.head
    if isinstance(spec.engine, LlamaCppSettings):
        reach = cluster.workers if node == head else ()
        dials = "the head dials each worker's rpc-server"
    else:
        reach = (head,) if node != head else ()
        dials = "each worker dials the head"
    try:
        literal = bool(ipaddress.ip_address(node.address))
    except ValueError:
        literal = False  # a name: the peers' probe resolves and reaches it, or says it does not
    return PreflightPlan(
        skip=tuple(spec.preflight.skip.items()),
        pcie_p2p=profile.interconnect is Interconnect.PCIE and profile.gpus_per_node > 1,
        socket_ifname=nccl.get("NCCL_SOCKET_IFNAME"),
        traffic_class=int(tc) if (tc := nccl.get("NCCL_IB_TC")) and tc.isdigit() else None,
        cluster_address=node.address if cluster.multi_node and literal else None,
        port=cluster.port if cluster.multi_node else None,
        reach=tuple((n.host, n.address) for n in reach),
        dials=dials if cluster.multi_node else "",
    )


def _diag_spec(spec: HostSpec) -> DiagSpec:
    """From a bundle, nccl-tests is the bundle's tarball of the release the inventory names."""
    layout, source = spec.sources.layout, spec.diag.source
    if layout is None or source.kind == "local":
        return spec.diag
    path = layout.nccl_tests_tarball(source.ref)
    bundled = NcclTestsSource(kind="local", ref=source.ref, path=path)
    return spec.diag.model_copy(update={"source": bundled})


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _fabric_plan(
    spec: HostSpec, profile: HardwareProfile, nccl: NcclEnvironment, nvidia: NvidiaPlan | None
) -> FabricPlan | None:
    """What the fabric role verifies: exactly the HCAs and GID index NCCL will be given."""
    if nvidia is None:
        return None
    gid = nccl.get("NCCL_IB_GID_INDEX") if profile.fabric is NetworkFabric.ROCE_V2 else None
    return fabric_plan(
        profile,
        nvidia,
        devices=nccl.hca_devices(),
        gid_index=int(gid) if gid is not None and gid.isdigit() else None,
        apt=spec.sources.apt,
    )


def build_plan(spec: HostSpec, cluster: Cluster, checkpoint: Checkpoint | None = None) -> HostPlan:
    """The plan for one node of ``cluster``. ``checkpoint`` is given by the edge for models outside
    the catalogue (read from their config.json and index); catalogue checkpoints are found by id."""
    profile = cluster.hardware
    node = cluster.node(spec.host)
    role = _node_role(cluster, node)
    if cluster.multi_node and cluster.port == spec.engine.listen_port:
        raise PlanError(
            f"host {spec.host}: metalserve.cluster.port: {cluster.port} is also the engine's API "
            "port; the head would bind it twice — fix: another cluster.port (default 29500)"
        )
    warnings = _parallelism_warnings(spec, profile)
    ckpt = checkpoint or CHECKPOINTS.get(spec.model.checkpoint or "")
    engine: Engine = spec.engine.model_copy(update={"host": _bind_address(spec)})
    token_allowed, token_warnings = _token_allowed(spec)
    warnings += token_warnings
    layout = Layout.for_service(spec.service.name or f"metalserve-{engine.name}")

    sizing = smallest = None
    if ckpt is not None:
        sizing = size(request_for(profile, ckpt, engine))
        if not sizing.fits:
            best = smallest_setup(request_for(profile, ckpt, engine))
            smallest = best.describe() if best else "no catalogue setup fits"
        warnings += audit_claims(ckpt)
    else:
        warnings.append("model outside the catalogue and not read: sizing skipped")

    weights = _weights(spec, layout, ckpt, token_allowed, node.rank)
    served = _served_name(spec, weights.repo_id if weights else None)
    if cluster.multi_node:
        engine = engine.on_node(role)
    llamacpp = gguf = None
    model_path = None
    unsourced: tuple[tuple[str, str], ...] = ()
    if isinstance(engine, LlamaCppSettings) and cluster.multi_node:
        _check_rpc_addresses(cluster)
    if isinstance(engine, LlamaCppSettings):
        model_path, gguf = _gguf(spec, engine, layout, ckpt, weights)
        if not role.head:
            gguf = None  # a worker holds tensors the head sends it; it reads no model file
        else:
            unsourced = _unsourced_gguf(ckpt, model_path, spec.model.gguf_file is not None)
            warnings += [why for _, why in unsourced]
        if gguf is not None and ckpt is None:
            warnings.append("GGUF conversion: the output's size is not known, so it is not split")
        split = gguf is not None and gguf.split is not None
        llamacpp = _llamacpp_build(spec, profile, layout, rpc=cluster.multi_node, split=split)
    launch = _launch(
        spec, engine, role, layout, served, weights, model_path, llamacpp, node.address
    )
    if role.head or not isinstance(engine, LlamaCppSettings):
        try:
            warnings += _check_flags(engine, list(launch.command))
        except PlanError as exc:
            raise PlanError(f"host {spec.host}: metalserve.engine: {exc}") from None

    try:
        nccl = nccl_environment(
            profile,
            spec.fabric,
            expert_parallel=bool(
                getattr(engine, "enable_expert_parallel", None) or getattr(engine, "ep_size", None)
            ),
            overrides=spec.nccl,
        )
    except SpecError as exc:
        raise SpecError(f"host {spec.host}: metalserve.{exc}") from None
    warnings += nccl.warnings
    env: dict[str, str] = {
        **nccl.as_dict(),
        **distributed_environment(nccl, profile.multi_node),
    }
    if weights is not None and not isinstance(engine, LlamaCppSettings):
        env["HF_HOME"] = layout.hf_home
        env["HF_HUB_OFFLINE"] = "1"  # weights are fetched by the deploy; the engine never downloads
        # huggingface_hub's own opt-out (constants.py HF_HUB_DISABLE_TELEMETRY), offline or not
        env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env.update(engine.QUIET_ENVIRONMENT)
    env.update(spec.env)
    credentials = _credentials(spec, layout, cluster, token_allowed)
    nvidia = nvidia_plan(profile, spec.nvidia, spec.sources.apt)
    fabric = _fabric_plan(spec, profile, nccl, nvidia)
    node_kind = Node(
        host=spec.host,
        gpu=profile.gpu is not None,
        rdma=fabric is not None,
        engine=engine.name,
        keepwarm=bool(spec.service.keep_warm_minutes and role.head),
    )
    hardening = service_hardening(node_kind, layout, spec.service.relax)
    warnings += hardening.warnings

    return HostPlan(
        host=spec.host,
        profile=profile,
        cluster=cluster,
        node=node,
        checkpoint=ckpt,
        sizing=sizing,
        smallest_setup=smallest,
        command=launch.command,
        environment=tuple(env.items()),
        nccl=nccl,
        layout=layout,
        packages=PackagesPlan(
            names=packages_for(engine.name)
            + (FIREWALL if spec.access.firewall else ())
            + (PUSH if spec.sources.pushes else ()),
            apt=spec.sources.apt,
        ),
        engine=EnginePlan(
            name=engine.name,
            version=engine.version,
            venv=launch.venv,
            requirements=engine.requirements(),
            python=spec.sources.python,
            served_name=served,
            running_requests_metric=engine.RUNNING_REQUESTS_METRIC,
            head=role.head,
            locks=_engine_locks(spec, engine, profile),
            parser_args=launch.parser_args,
        ),
        nvidia=nvidia,
        fabric=fabric,
        firewall=_firewall(spec, cluster, role, engine.listen_port),
        credentials=credentials,
        weights=weights if role.head or not isinstance(engine, LlamaCppSettings) else None,
        llamacpp=llamacpp,
        gguf=gguf,
        service=_service(
            spec, layout, launch, engine.listen_port, role, served, credentials, hardening
        ).model_copy(update={"unsourced": unsourced}),
        diag=None
        if nvidia is None
        else diag_plan(
            _diag_spec(spec),
            DiagNode(
                host=spec.host,
                rank=node.rank,
                cluster_addresses=tuple(n.address for n in cluster.nodes),
                oob_interface=nccl.socket_interface(),
            ),
            profile,
            layout,
            spec.nvidia.pins,
            nccl.as_dict(),
        ),
        preflight=_preflight(spec, cluster, node, nccl),
        warnings=tuple(warnings),
    )


def plan_hosts(
    specs: Sequence[HostSpec], checkpoints: Mapping[str, Checkpoint | None] | None = None
) -> list[HostPlan]:
    """Every host's plan, its cluster validated as a whole first; in the order given."""
    clusters = {node.host: c for c in clusters_of(specs) for node in c.nodes}
    return [
        build_plan(spec, clusters[spec.host], (checkpoints or {}).get(spec.host)) for spec in specs
    ]


def plan_alone(spec: HostSpec, checkpoint: Checkpoint | None = None) -> HostPlan:
    """The plan of a host that forms a cluster of its own (every single-node setup)."""
    (plan,) = plan_hosts([spec], {spec.host: checkpoint})
    return plan
