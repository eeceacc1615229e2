"""Will this checkpoint fit this machine with these engine settings, and with how much context?

Figures are decimal GB, as the published guides (``metalserve.catalog.guides``) and vendors use. The
GLM-5.2-NVFP4 post's arithmetic is the reference case: 465 GB of weights on 8 × 96 GB = 768 GB
leaves 303 GB, 60.5 % of the memory used.

Example::

    report = size(request_for(PROFILES["rtxpro6000-8"], GLM52_NVFP4, VllmSettings(...)))
    report.fits, report.headroom_bytes, report.max_context_tokens
"""

from __future__ import annotations

from metalserve.catalog.checkpoints import CHECKPOINTS
from metalserve.catalog.profiles import PROFILES
from metalserve.checkpoint import Checkpoint, WeightFormat
from metalserve.engines import EngineSettings, LlamaCppSettings
from metalserve.engines.kvcache import kv_dtype_bytes
from metalserve.engines.llamacpp import QUANT_BITS_PER_WEIGHT
from metalserve.hardware import GB, GIB, Frozen, HardwareProfile

RUNTIME_RESERVE_PER_GPU = 2 * GB
"""Activations, CUDA graphs and NCCL buffers outside the KV cache: an estimate (vLLM profiles it at
start; 1-3 GB per GPU is typical for these models). Sizing keeps it out of the KV budget."""

LLAMACPP_MARGIN_PER_GPU = 1 * GIB
"""llama.cpp's ``--fit`` leaves about 1 GiB free per GPU (common/arg.cpp ``--fit-target`` default)."""

HOST_RESERVE = 8 * GB
"""RAM kept for the OS and the server process when llama.cpp offloads weights to the CPU."""

DEFAULT_CONTEXT_TOKENS = 4096
"""The context a plan must hold at least when the settings leave max-model-len to the engine."""

CLAIM_TOLERANCE = 0.15
"""How far a claimed size may be from the computed one before it is reported as not adding up."""


def gb(n: float) -> str:
    return f"{n / GB:,.1f} GB"


class SizingRequest(Frozen):
    profile: HardwareProfile
    checkpoint: Checkpoint
    engine: str
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    memory_fraction: float = 0.92
    kv_dtype: str | None = None
    context_tokens: int | None = None
    gpu_layers: int | None = None
    """llama.cpp: layers on the GPUs; None lets llama.cpp fit as many as the memory holds."""
    weight_bytes_override: int | None = None
    """llama.cpp from safetensors: the GGUF size the conversion will produce."""


class SizingReport(Frozen):
    profile_id: str
    checkpoint_id: str
    gpus_used: int
    gpu_memory_bytes: int
    total_gpu_bytes: int
    weight_bytes: int
    weight_bytes_per_gpu: int
    headroom_bytes: int
    weights_fraction: float
    usable_bytes_per_gpu: int
    kv_budget_bytes_per_gpu: int
    kv_bytes_per_token: float | None
    kv_bytes_per_token_per_gpu: float | None
    max_context_tokens: int | None
    context_tokens: int
    cpu_offload_bytes: int = 0
    fits: bool
    reasons: tuple[str, ...] = ()

    def summary(self) -> str:
        verdict = "fits" if self.fits else "does NOT fit"
        line = (
            f"{self.checkpoint_id} on {self.profile_id}: {verdict}; weights {gb(self.weight_bytes)} "
            f"of {gb(self.total_gpu_bytes)} GPU memory ({self.weights_fraction * 100:.1f} % used, "
            f"{gb(self.headroom_bytes)} left)"
        )
        if self.max_context_tokens is not None:
            line += f"; KV room for {self.max_context_tokens:,} tokens"
        if self.cpu_offload_bytes:
            line += f"; {gb(self.cpu_offload_bytes)} offloaded to CPU RAM"
        return line


def gguf_bytes_from(checkpoint: Checkpoint, quant: str) -> int:
    """What converting a safetensors checkpoint to ``quant`` will weigh."""
    if checkpoint.format is WeightFormat.GGUF:
        return checkpoint.weight_bytes
    source_bits = checkpoint.bits_per_weight or 16
    return int(checkpoint.weight_bytes * QUANT_BITS_PER_WEIGHT[quant] / source_bits)


def request_for(
    profile: HardwareProfile, checkpoint: Checkpoint, engine: EngineSettings
) -> SizingRequest:
    """The sizing question an engine's settings ask on a profile."""
    if isinstance(engine, LlamaCppSettings):
        layers = engine.n_gpu_layers if isinstance(engine.n_gpu_layers, int) else None
        return SizingRequest(
            profile=profile,
            checkpoint=checkpoint,
            engine=engine.name,
            kv_dtype=engine.cache_type_k or "f16",
            context_tokens=engine.max_model_len,
            gpu_layers=layers,
            weight_bytes_override=gguf_bytes_from(checkpoint, engine.quant),
        )
    tp, pp = engine.parallel
    return SizingRequest(
        profile=profile,
        checkpoint=checkpoint,
        engine=engine.name,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        memory_fraction=engine.memory_fraction,
        kv_dtype=engine.kv_cache_dtype,
        context_tokens=engine.max_model_len,
    )


def size(req: SizingRequest) -> SizingReport:
    if req.engine == "llamacpp":
        return _size_llamacpp(req)
    return _size_gpu_engine(req)


def _kv_per_token(req: SizingRequest, tp: int, pp: int) -> tuple[float | None, float | None]:
    arch = req.checkpoint.architecture
    if arch is None:
        return None, None
    dtype = kv_dtype_bytes(req.kv_dtype)
    return arch.kv_bytes_per_token(dtype), arch.kv_bytes_per_token_per_gpu(dtype, tp, pp)


def _size_gpu_engine(req: SizingRequest) -> SizingReport:
    profile, ckpt = req.profile, req.checkpoint
    gpus = req.tensor_parallel * req.pipeline_parallel
    per_gpu = profile.gpu_memory_bytes
    reasons: list[str] = []
    if profile.gpu is None:
        reasons.append(f"{profile.id} has no GPU; {req.engine} needs one — use llama.cpp")
    elif gpus > profile.total_gpus:
        reasons.append(
            f"TP {req.tensor_parallel} × PP {req.pipeline_parallel} = {gpus} GPUs but {profile.id} "
            f"has {profile.total_gpus}"
        )
    if profile.gpu is not None and ckpt.needs_nvfp4 and not profile.gpu.nvfp4:
        reasons.append(f"{ckpt.id} is NVFP4 but {profile.gpu.name} has no NVFP4 tensor cores")
    if profile.gpu is not None and ckpt.needs_fp8 and not profile.gpu.fp8:
        reasons.append(f"{ckpt.id} is FP8 but {profile.gpu.name} has no FP8 support")
    gpus = max(gpus, 1)
    total = per_gpu * gpus
    weights = ckpt.weight_bytes
    weights_per_gpu = -(-weights // gpus)
    usable = int(per_gpu * req.memory_fraction)
    kv_budget = usable - weights_per_gpu - RUNTIME_RESERVE_PER_GPU
    kv_token, kv_token_gpu = _kv_per_token(req, req.tensor_parallel, req.pipeline_parallel)
    max_tokens = None
    if kv_token_gpu:
        max_tokens = max(0, int(kv_budget // kv_token_gpu))
    context = req.context_tokens or DEFAULT_CONTEXT_TOKENS
    if profile.gpu is not None and weights_per_gpu + RUNTIME_RESERVE_PER_GPU > usable:
        reasons.append(
            f"weights need {gb(weights_per_gpu)} per GPU ({gb(weights)} over {gpus} GPUs) plus "
            f"{gb(RUNTIME_RESERVE_PER_GPU)} runtime, but each {profile.gpu.name} has "
            f"{gb(usable)} usable ({gb(per_gpu)} × {req.memory_fraction})"
        )
    elif max_tokens is not None and max_tokens < context:
        reasons.append(
            f"KV cache holds {max_tokens:,} tokens per sequence but the context is {context:,} "
            f"({kv_token_gpu:,.0f} bytes per token per GPU) — lower max-model-len, use an FP8 KV "
            "cache or add GPUs"
        )
    return SizingReport(
        profile_id=profile.id,
        checkpoint_id=ckpt.id,
        gpus_used=gpus,
        gpu_memory_bytes=per_gpu,
        total_gpu_bytes=total,
        weight_bytes=weights,
        weight_bytes_per_gpu=weights_per_gpu,
        headroom_bytes=total - weights,
        weights_fraction=weights / total if total else float("inf"),
        usable_bytes_per_gpu=usable,
        kv_budget_bytes_per_gpu=max(kv_budget, 0),
        kv_bytes_per_token=kv_token,
        kv_bytes_per_token_per_gpu=kv_token_gpu,
        max_context_tokens=max_tokens,
        context_tokens=context,
        fits=not reasons,
        reasons=tuple(reasons),
    )


def _size_llamacpp(req: SizingRequest) -> SizingReport:
    profile, ckpt = req.profile, req.checkpoint
    weights = req.weight_bytes_override or ckpt.weight_bytes
    gpus = profile.total_gpus
    vram = profile.total_gpu_memory_bytes
    vram_usable = max(0, vram - gpus * LLAMACPP_MARGIN_PER_GPU)
    ram_usable = max(0, int(profile.host_ram_gb * GB) - HOST_RESERVE)
    context = req.context_tokens or DEFAULT_CONTEXT_TOKENS
    kv_token, _ = _kv_per_token(req, 1, 1)
    kv_bytes = int((kv_token or 0) * context)
    reasons: list[str] = []
    layers = ckpt.architecture.num_hidden_layers if ckpt.architecture else None
    if req.gpu_layers is not None and layers and gpus:
        on_gpu = weights * min(req.gpu_layers, layers) // layers
        if on_gpu > vram_usable:
            reasons.append(
                f"--n-gpu-layers {req.gpu_layers} puts {min(req.gpu_layers, layers)} of {layers} "
                f"layers (~{gb(on_gpu)}) on the GPUs, which hold {gb(vram_usable)} usable — "
                "lower it or leave it to llama.cpp's --fit"
            )
        gpu_part = min(on_gpu, vram_usable)
    else:
        gpu_part = min(weights, max(0, vram_usable - kv_bytes))
    offload = weights - gpu_part
    if weights + kv_bytes > vram_usable + ram_usable:
        reasons.append(
            f"weights {gb(weights)} + KV {gb(kv_bytes)} exceed GPU {gb(vram_usable)} + RAM "
            f"{gb(ram_usable)} usable (after {gb(HOST_RESERVE)} for the OS); it could only run by "
            "paging weights from disk through mmap"
        )
    free = vram_usable + ram_usable - weights - kv_bytes
    max_tokens = int(max(0, free + kv_bytes) // kv_token) if kv_token else None
    total = vram + int(profile.host_ram_gb * GB)
    return SizingReport(
        profile_id=profile.id,
        checkpoint_id=ckpt.id,
        gpus_used=gpus,
        gpu_memory_bytes=profile.gpu_memory_bytes,
        total_gpu_bytes=vram,
        weight_bytes=weights,
        weight_bytes_per_gpu=gpu_part // gpus if gpus else 0,
        headroom_bytes=total - weights,
        weights_fraction=weights / total,
        usable_bytes_per_gpu=vram_usable // gpus if gpus else 0,
        kv_budget_bytes_per_gpu=0,
        kv_bytes_per_token=kv_token,
        kv_bytes_per_token_per_gpu=kv_token,
        max_context_tokens=max_tokens,
        context_tokens=context,
        cpu_offload_bytes=offload,
        fits=not reasons,
        reasons=tuple(reasons),
    )


class Setup(Frozen):
    profile_id: str
    tensor_parallel: int
    pipeline_parallel: int
    expert_parallel: bool
    report: SizingReport

    def describe(self) -> str:
        ep = " + EP" if self.expert_parallel else ""
        return (
            f"{self.profile_id} (TP {self.tensor_parallel} × PP {self.pipeline_parallel}{ep}): "
            f"{self.report.summary()}"
        )


def smallest_setup(req: SizingRequest) -> Setup | None:
    """The smallest catalogue profile (fewest GPUs, then least memory) on which ``req`` fits, with
    TP inside a node and PP across nodes; MoE checkpoints get expert parallelism on top of TP."""
    candidates = sorted(
        (p for p in PROFILES.values() if (p.gpu is not None) or req.engine == "llamacpp"),
        key=lambda p: (p.total_gpus, p.total_gpu_memory_bytes + p.host_ram_gb * GB),
    )
    arch = req.checkpoint.architecture
    for profile in candidates:
        tp, pp = max(profile.gpus_per_node, 1), profile.nodes
        attempt = req.model_copy(
            update={"profile": profile, "tensor_parallel": tp, "pipeline_parallel": pp}
        )
        report = size(attempt)
        if report.fits:
            moe = bool(arch and arch.is_moe) and req.engine != "llamacpp"
            return Setup(
                profile_id=profile.id,
                tensor_parallel=tp if req.engine != "llamacpp" else 1,
                pipeline_parallel=pp if req.engine != "llamacpp" else 1,
                expert_parallel=moe,
                report=report,
            )
    return None


def _off_by(claimed: float, actual: float) -> bool:
    return abs(claimed - actual) > CLAIM_TOLERANCE * actual


def audit_claims(ckpt: Checkpoint) -> list[str]:
    """Every claim about ``ckpt`` that does not add up, as one plain sentence each."""
    findings: list[str] = []
    implied = ckpt.expected_weight_bytes
    if implied and _off_by(ckpt.weight_bytes, implied):
        bpw = ckpt.weight_bytes * 8 / (ckpt.total_params or 1)
        findings.append(
            f"{ckpt.id}: {gb(ckpt.weight_bytes)} ({ckpt.weight_bytes_source}) implies "
            f"{bpw:.2f} bits per weight for {(ckpt.total_params or 0) / 1e9:.0f}B parameters, "
            f"but {ckpt.weight_dtype} averages {ckpt.bits_per_weight} — expect ~{gb(implied)}"
        )
    for claim in ckpt.claims:
        if claim.vram_gb is not None and _off_by(claim.vram_gb * GB, ckpt.weight_bytes):
            findings.append(
                f"{claim.source} says '{claim.statement}': {claim.vram_gb:,.0f} GB of VRAM, but "
                f"the weights alone are {gb(ckpt.weight_bytes)}"
            )
        if claim.disk_gb is not None and _off_by(claim.disk_gb * GB, ckpt.weight_bytes):
            findings.append(
                f"{claim.source} gives ~{claim.disk_gb:,.0f} GB on disk, but the weights are "
                f"{gb(ckpt.weight_bytes)}"
            )
        if (
            claim.total_params_b is not None
            and ckpt.total_params
            and _off_by(claim.total_params_b * 1e9, ckpt.total_params)
        ):
            findings.append(
                f"{claim.source} gives {claim.total_params_b:.0f}B total parameters; {ckpt.id} "
                f"has {ckpt.total_params / 1e9:.0f}B ({ckpt.params_source}) — kept as distinct "
                "checkpoints, not merged"
            )
        if claim.minimum_profile:
            profile = PROFILES[claim.minimum_profile]
            engine = "llamacpp" if ckpt.format is WeightFormat.GGUF else "vllm"
            report = size(
                SizingRequest(
                    profile=profile,
                    checkpoint=ckpt,
                    engine=engine,
                    tensor_parallel=max(profile.gpus_per_node, 1) if engine != "llamacpp" else 1,
                    pipeline_parallel=profile.nodes if engine != "llamacpp" else 1,
                )
            )
            if not report.fits:
                findings.append(
                    f"{claim.source} says {profile.description} is enough for {ckpt.id}, but "
                    f"{gb(ckpt.weight_bytes)} of weights cannot fit in "
                    f"{gb(profile.total_gpu_memory_bytes)} of GPU memory: {report.reasons[0]}"
                )
    return findings


def audit_catalogue() -> dict[str, list[str]]:
    return {cid: audit_claims(c) for cid, c in CHECKPOINTS.items()}
