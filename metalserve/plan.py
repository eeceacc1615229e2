"""One typed plan per host: everything the roles carry out, computed without touching the host.

Example::

    plan = build_plan(host_spec("gpu01", host.data["metalserve"]))
    plan.service.exec_argv, plan.nccl.as_dict(), plan.sizing.summary()
"""

from __future__ import annotations

import hashlib
import json

from pydantic import Field

from metalserve.catalog import pins
from metalserve.catalog.checkpoints import CHECKPOINTS
from metalserve.catalog.packages import packages_for
from metalserve.catalog.profiles import profile as get_profile
from metalserve.checkpoint import Checkpoint, WeightFormat
from metalserve.engines import LlamaCppSettings, SglangSettings, VllmSettings
from metalserve.engines.flagsets import check_argv, deprecation_notes, flagset
from metalserve.errors import PlanError
from metalserve.hardware import Frozen, HardwareProfile
from metalserve.layout import Layout
from metalserve.nccl import NcclEnvironment, distributed_environment, nccl_environment
from metalserve.sizing import SizingReport, audit_claims, request_for, size, smallest_setup
from metalserve.sources import LlamaCppSource, SourceKind, WeightsSource
from metalserve.spec import HostSpec

CUDA_HOME = "/usr/local/cuda"
"""Where NVIDIA's cuda-toolkit packages put the active toolkit (a symlink to cuda-<version>)."""

API_KEY_CREDENTIAL = "api_key"
HF_TOKEN_CREDENTIAL = "hf_token"


class WeightsPlan(Frozen):
    repo_id: str
    revision: str
    source: WeightsSource
    local_dir: str = Field(description="the verified checkpoint on the host")
    token_file: str | None = Field(description="0600 file on the host, given as HF_TOKEN_PATH")
    expected_bytes: int | None
    hub_venv: str
    hub_requirements: tuple[str, ...]


class LlamaCppBuildPlan(Frozen):
    version: str
    source: LlamaCppSource
    source_tarball: str = Field(description="where the source tarball is kept on the host")
    cmake_flags: tuple[str, ...]
    targets: tuple[str, ...] = ("llama-server", "llama-quantize", "llama-gguf-split")
    cuda_archs: tuple[str, ...] = ()
    build_key: str = Field(description="hash of version + flags: names the install prefix")
    prefix: str
    current: str = Field(description="symlink to the active prefix")

    @property
    def bin(self) -> str:
        return f"{self.current}/bin"


class GgufPlan(Frozen):
    model_dir: str
    quant: str
    f16_path: str
    out_path: str
    converter_venv: str
    converter_requirements: tuple[str, ...]


class ServicePlan(Frozen):
    name: str
    unit_path: str
    env_file: str
    user: str
    port: int
    health_url: str | None
    completion_url: str | None
    served_model: str
    health_timeout_s: int
    keep_warm_minutes: int | None
    credentials: tuple[tuple[str, str], ...] = Field(description="(name, file on host) pairs")
    exec_argv: tuple[str, ...]
    secret_env: tuple[tuple[str, str], ...] = Field(
        default=(), description="(VARIABLE, credential name): exported from the credential at start"
    )


class HostPlan(Frozen):
    host: str
    spec: HostSpec
    profile: HardwareProfile
    checkpoint: Checkpoint | None
    sizing: SizingReport | None
    smallest_setup: str | None
    command: tuple[str, ...] = Field(description="the engine command as a person would type it")
    environment: tuple[tuple[str, str], ...] = Field(description="the unit's EnvironmentFile")
    nccl: NcclEnvironment
    layout: Layout
    python_requirements: tuple[str, ...]
    apt_packages: tuple[str, ...]
    weights: WeightsPlan | None
    llamacpp: LlamaCppBuildPlan | None
    gguf: GgufPlan | None
    service: ServicePlan
    warnings: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        return self.spec.engine.name

    def environment_dict(self) -> dict[str, str]:
        return dict(self.environment)


def _cmake_flags(profile: HardwareProfile) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Static binaries can be moved into the versioned prefix; GGML_NATIVE=OFF keeps them portable
    # across the hosts of a site (still AVX2); the web UI would be fetched online (sandbox-facts §2).
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
    return tuple(flags), archs


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _multi_node_engine(spec: HostSpec, profile: HardwareProfile) -> VllmSettings | SglangSettings:
    engine = spec.engine
    assert not isinstance(engine, LlamaCppSettings)
    if spec.cluster is None:
        raise PlanError(
            f"host {spec.host}: metalserve.cluster: required for multi-node profile {profile.id} — "
            "fix: set node_rank and head_address"
        )
    c = spec.cluster
    if isinstance(engine, VllmSettings):
        return engine.model_copy(
            update={
                "nnodes": profile.nodes,
                "node_rank": c.node_rank,
                "master_addr": c.head_address,
                "master_port": c.port,
                "headless": True if c.node_rank > 0 else None,
            }
        )
    return engine.model_copy(
        update={
            "nnodes": profile.nodes,
            "node_rank": c.node_rank,
            "dist_init_addr": f"{c.head_address}:{c.port}",
        }
    )


def _check_parallelism(spec: HostSpec, profile: HardwareProfile) -> None:
    engine = spec.engine
    if isinstance(engine, LlamaCppSettings):
        if engine.tensor_split and len(engine.tensor_split) != profile.gpus_per_node:
            raise PlanError(
                f"host {spec.host}: metalserve.engine.tensor_split: {len(engine.tensor_split)} "
                f"entries but {profile.id} has {profile.gpus_per_node} GPUs — fix: one per GPU"
            )
        return
    if profile.gpu is None:
        raise PlanError(
            f"host {spec.host}: metalserve.engine.name: {engine.name} needs a GPU and {profile.id} "
            "has none — fix: use llamacpp"
        )
    tp, pp = engine.parallel
    if tp * pp > profile.total_gpus:
        raise PlanError(
            f"host {spec.host}: metalserve.engine: TP {tp} × PP {pp} = {tp * pp} GPUs but "
            f"{profile.id} has {profile.total_gpus} — fix: lower tensor/pipeline parallel size"
        )
    if tp > profile.gpus_per_node:
        raise PlanError(
            f"host {spec.host}: metalserve.engine: TP {tp} spans nodes ({profile.gpus_per_node} "
            "GPUs per node) — fix: TP within a node, PP across nodes"
        )


def _weights(spec: HostSpec, layout: Layout, ckpt: Checkpoint | None) -> WeightsPlan | None:
    repo = spec.model.repo_id or (ckpt.repo_id if ckpt else None)
    source = spec.sources.weights
    if repo is None and spec.model.local_dir:
        repo = f"local/{spec.model.local_dir.rstrip('/').rsplit('/', 1)[-1]}"
        source = WeightsSource(kind=SourceKind.BUNDLE, path=spec.model.local_dir)
    if repo is None:
        return None
    return WeightsPlan(
        repo_id=repo,
        revision=spec.model.revision,
        source=source,
        local_dir=f"{layout.models}/{repo.replace('/', '--')}",
        hub_venv=layout.venv("hub"),
        hub_requirements=pins.hub_client_requirements(),
        token_file=(
            f"{layout.credentials}/{HF_TOKEN_CREDENTIAL}" if spec.secrets.hf_token_file else None
        ),
        expected_bytes=ckpt.weight_bytes if ckpt else None,
    )


def _service(
    spec: HostSpec, layout: Layout, exec_argv: list[str], port: int, head: bool
) -> ServicePlan:
    credentials: list[tuple[str, str]] = []
    secret_env: list[tuple[str, str]] = []
    if spec.secrets.api_key_file:
        credentials.append((API_KEY_CREDENTIAL, f"{layout.credentials}/{API_KEY_CREDENTIAL}"))
        if spec.engine.name == "vllm":
            secret_env.append(("VLLM_API_KEY", API_KEY_CREDENTIAL))
    base = f"http://127.0.0.1:{port}"
    return ServicePlan(
        name=layout.service,
        unit_path=layout.unit_file,
        env_file=layout.env_file,
        user=spec.service.user,
        port=port,
        health_url=f"{base}/health" if head else None,
        completion_url=f"{base}/v1/completions" if head else None,
        served_model=_served_name(spec),
        health_timeout_s=spec.service.health_timeout_s,
        keep_warm_minutes=spec.service.keep_warm_minutes,
        credentials=tuple(credentials),
        exec_argv=tuple(exec_argv),
        secret_env=tuple(secret_env),
    )


def _weights_required(weights: WeightsPlan | None) -> WeightsPlan:
    if weights is None:
        raise PlanError("no model weights to serve — set metalserve.model")
    return weights


def _local_weights(
    engine: VllmSettings | SglangSettings, weights: WeightsPlan | None
) -> VllmSettings | SglangSettings:
    """The unit serves the verified local copy; clients keep asking for the repo id."""
    if engine.served_model_name or weights is None:
        return engine
    return engine.model_copy(update={"served_model_name": weights.repo_id})


_FIRST_ENGINE_WORD: dict[str, int | str] = {"vllm": 2, "sglang": "--model-path", "llamacpp": "-m"}
"""Where the engine's own arguments start: after ``vllm serve``, at ``--model-path``, at ``-m``."""


def _check_flags(
    engine: VllmSettings | SglangSettings | LlamaCppSettings, command: list[str]
) -> list[str]:
    """The command against the flag set derived from that engine release's own source: an unknown
    flag or value is an error (one line), a deprecated one a warning."""
    first = _FIRST_ENGINE_WORD[engine.name]
    args = command[first:] if isinstance(first, int) else command[command.index(first) :]
    fs = flagset(engine.name, engine.version)
    check_argv(fs, args)
    return deprecation_notes(fs, args)


def _served_name(spec: HostSpec) -> str:
    engine = spec.engine
    if not isinstance(engine, LlamaCppSettings) and engine.served_model_name:
        return engine.served_model_name
    return spec.model.name


def _llamacpp_source(source: LlamaCppSource) -> LlamaCppSource:
    """``source`` with upstream's URL filled in where the inventory names none."""
    if source.url is not None or source.kind == "local":
        return source
    url = pins.LLAMA_CPP_GIT if source.kind == "git" else pins.LLAMA_CPP_ARCHIVE
    return source.model_copy(update={"url": url})


def build_plan(spec: HostSpec, checkpoint: Checkpoint | None = None) -> HostPlan:
    """The plan for one host. ``checkpoint`` is given by the edge for models outside the catalogue
    (read from their config.json and index); catalogue checkpoints are found by id."""
    profile = get_profile(spec.profile)
    _check_parallelism(spec, profile)
    ckpt = checkpoint or CHECKPOINTS.get(spec.model.checkpoint or "")
    engine = spec.engine
    if spec.sources.llamacpp.kind == "local" and not spec.sources.llamacpp.path:
        raise PlanError(
            f"host {spec.host}: metalserve.sources.llamacpp.path: required for kind local"
        )
    if profile.multi_node and not isinstance(engine, LlamaCppSettings):
        engine = _multi_node_engine(spec, profile)
    head = spec.cluster is None or spec.cluster.node_rank == 0
    service_name = spec.service.name or f"metalserve-{engine.name}"
    layout = Layout.for_service(service_name)
    warnings: list[str] = []

    sizing = smallest = None
    if ckpt is not None:
        sizing = size(request_for(profile, ckpt, engine))
        if not sizing.fits:
            best = smallest_setup(request_for(profile, ckpt, engine))
            smallest = best.describe() if best else "no catalogue setup fits"
        warnings += audit_claims(ckpt)
    else:
        warnings.append("model outside the catalogue and not read: sizing skipped")

    weights = _weights(spec, layout, ckpt)
    model_name = spec.model.name
    llamacpp = gguf = None
    requirements: tuple[str, ...] = ()
    if isinstance(engine, LlamaCppSettings):
        flags, archs = _cmake_flags(profile)
        # a CUDA build links the toolkit: a new toolkit pin is a new build
        toolkit = spec.nvidia.pins.cuda_version if archs else None
        key = _digest(pins.LLAMA_CPP.version, flags, toolkit)
        llamacpp = LlamaCppBuildPlan(
            version=pins.LLAMA_CPP.version,
            source=_llamacpp_source(spec.sources.llamacpp),
            source_tarball=f"{layout.sources}/llama.cpp-{pins.LLAMA_CPP.version}.tar.gz",
            cmake_flags=flags,
            cuda_archs=archs,
            build_key=key,
            prefix=f"{layout.llamacpp_root}/{pins.LLAMA_CPP.version}-{key}",
            current=f"{layout.llamacpp_root}/current",
        )
        if ckpt is not None and ckpt.format is WeightFormat.GGUF:
            model_path = f"{layout.gguf}/{ckpt.id}"
        else:
            if weights is None:
                raise PlanError(
                    f"host {spec.host}: metalserve.model: llama.cpp needs a GGUF or an HF repo to "
                    "convert — fix: give model.repo_id"
                )
            stem = weights.repo_id.replace("/", "--")
            model_path = f"{layout.gguf}/{stem}-{engine.quant}.gguf"
            gguf = GgufPlan(
                model_dir=weights.local_dir,
                quant=engine.quant,
                f16_path=f"{layout.gguf}/{stem}-F16.gguf",
                out_path=model_path,
                converter_venv=layout.venv(f"convert-{pins.LLAMA_CPP.version}"),
                converter_requirements=pins.converter_requirements(),
            )
        key_file = f"%d/{API_KEY_CREDENTIAL}" if spec.secrets.api_key_file else None
        command = engine.argv(model_path, api_key_file=key_file)
        exec_argv = engine.argv(model_path, (f"{llamacpp.bin}/llama-server",), key_file)
    elif isinstance(engine, VllmSettings):
        venv = layout.venv(f"vllm-{engine.version}")
        requirements = (pins.VLLM.requirement,)
        command = engine.argv(spec.model.checkpoint or spec.model.repo_id or model_name)
        exec_argv = _local_weights(engine, weights).argv(
            _weights_required(weights).local_dir, (f"{venv}/bin/vllm",)
        )
    else:
        venv = layout.venv(f"sglang-{engine.version}")
        requirements = (pins.SGLANG.requirement,)
        command = engine.argv(spec.model.checkpoint or spec.model.repo_id or model_name)
        exe: tuple[str, ...] = (f"{venv}/bin/python", "-m", "sglang.launch_server")
        if engine.entrypoint == "serve":
            exe = (f"{venv}/bin/sglang", "serve")
        exec_argv = _local_weights(engine, weights).argv(_weights_required(weights).local_dir, exe)
        if spec.secrets.api_key_file:
            raise PlanError(
                f"host {spec.host}: metalserve.secrets.api_key_file: SGLang {engine.version} takes "
                "the key only as --api-key, visible in ps — fix: use vLLM or llama.cpp, or put an "
                "authenticating proxy in front"
            )

    try:
        warnings += _check_flags(engine, list(command))
    except PlanError as exc:
        raise PlanError(f"host {spec.host}: metalserve.engine: {exc}") from None

    nccl = nccl_environment(
        profile,
        spec.fabric,
        expert_parallel=bool(
            getattr(engine, "enable_expert_parallel", None) or getattr(engine, "ep_size", None)
        ),
        overrides=spec.nccl,
    )
    warnings += nccl.warnings
    env: dict[str, str] = {
        **nccl.as_dict(),
        **distributed_environment(spec.fabric, profile.multi_node),
    }
    if weights is not None and not isinstance(engine, LlamaCppSettings):
        env["HF_HOME"] = layout.hf_home
        env["HF_HUB_OFFLINE"] = "1"  # weights are fetched by the deploy; the engine never downloads
    env.update(spec.env)

    return HostPlan(
        host=spec.host,
        spec=spec,
        profile=profile,
        checkpoint=ckpt,
        sizing=sizing,
        smallest_setup=smallest,
        command=tuple(command),
        environment=tuple(env.items()),
        nccl=nccl,
        layout=layout,
        python_requirements=requirements,
        apt_packages=packages_for(engine.name),
        weights=weights,
        llamacpp=llamacpp,
        gguf=gguf,
        service=_service(spec, layout, exec_argv, engine.listen_port, head),
        warnings=tuple(warnings),
    )
