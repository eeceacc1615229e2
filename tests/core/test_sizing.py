"""Sizing reproduces the GLM-5.2-NVFP4 post's arithmetic (fixtures 003) and says plainly where the
GLM 5.2 MoE guide's table (fixtures 000) does not add up; ``metalserve.catalog.guides`` cites
both."""

from __future__ import annotations

from metalserve.catalog.checkpoints import GLM45_AIR_FP8, GLM52_FP8, GLM52_NVFP4, GLM52_Q4_K_M
from metalserve.catalog.profiles import PROFILES
from metalserve.engines import LlamaCppSettings, VllmSettings
from metalserve.hardware import GB
from metalserve.sizing import audit_claims, request_for, size, smallest_setup


def test_seed_003_nvfp4_on_8x_rtx_pro_6000_leaves_303_gb_and_uses_60_5_percent() -> None:
    report = size(
        request_for(
            PROFILES["rtxpro6000-8"],
            GLM52_NVFP4,
            VllmSettings(tensor_parallel_size=8, kv_cache_dtype="fp8_e4m3"),
        )
    )
    assert report.total_gpu_bytes == 768 * GB
    assert report.weight_bytes == 465 * GB
    assert report.headroom_bytes == 303 * GB
    assert f"{report.weights_fraction * 100:.1f}" == "60.5"
    assert report.fits
    assert "60.5 % used, 303.0 GB left" in report.summary()


def test_seed_004_fp8_on_8x_h200_fits_with_its_131k_context() -> None:
    settings = VllmSettings(
        tensor_parallel_size=8,
        kv_cache_dtype="fp8",
        max_model_len=131072,
        gpu_memory_utilization=0.92,
    )
    report = size(request_for(PROFILES["h200-sxm-8"], GLM52_FP8, settings))
    assert report.fits
    assert report.max_context_tokens is not None and report.max_context_tokens >= 131072


def test_fp8_glm52_cannot_fit_4x_h100_as_seed_000_claims() -> None:
    report = size(
        request_for(PROFILES["h100-sxm-4"], GLM52_FP8, VllmSettings(tensor_parallel_size=4))
    )
    assert not report.fits
    assert "188.9 GB per GPU" in report.reasons[0]
    findings = " | ".join(audit_claims(GLM52_FP8))
    assert "372 GB of VRAM, but the weights alone are 755.6 GB" in findings
    assert "cannot fit in 320.0 GB" in findings


def test_seed_000_q4_k_m_size_and_4090_claims_are_reported() -> None:
    findings = " | ".join(audit_claims(GLM52_Q4_K_M))
    assert "implies 2.37 bits per weight" in findings
    assert "4×RTX 4090" in findings and "could only run by paging weights from disk" in findings


def test_seed_000_llama_server_layers_do_not_fit_the_4090s() -> None:
    settings = LlamaCppSettings(n_gpu_layers=48, tensor_split=[24] * 4, ctx_size=8192)
    report = size(request_for(PROFILES["rtx4090-4"], GLM52_Q4_K_M, settings))
    assert not report.fits
    assert "48 of 78 layers" in report.reasons[0]


def test_the_469b_and_744b_figures_stay_distinct_checkpoints() -> None:
    findings = audit_claims(GLM52_NVFP4)
    assert any("744B" in f and "469B" in f and "distinct" in f for f in findings)


def test_nvfp4_needs_blackwell_tensor_cores() -> None:
    report = size(
        request_for(PROFILES["h200-sxm-8"], GLM52_NVFP4, VllmSettings(tensor_parallel_size=8))
    )
    assert not report.fits
    assert any("NVFP4" in r for r in report.reasons)


def test_smallest_setup_for_fp8_glm52_is_8x_h200() -> None:
    setup = smallest_setup(request_for(PROFILES["h100-sxm-4"], GLM52_FP8, VllmSettings()))
    assert setup is not None
    assert (setup.profile_id, setup.tensor_parallel, setup.expert_parallel) == (
        "h200-sxm-8",
        8,
        True,
    )


def test_mla_kv_cache_is_replicated_across_tensor_parallel_ranks_but_gqa_is_split() -> None:
    mla, gqa = GLM52_FP8.architecture, GLM45_AIR_FP8.architecture
    assert mla is not None and gqa is not None
    assert mla.kv_bytes_per_token_per_gpu(1, tp=8, pp=1) == mla.kv_bytes_per_token(1)
    assert gqa.kv_bytes_per_token_per_gpu(2, tp=8, pp=1) == gqa.kv_bytes_per_token(2) / 8


def test_a_longer_context_than_the_kv_cache_holds_does_not_fit() -> None:
    settings = VllmSettings(tensor_parallel_size=4, max_model_len=10_000_000)
    report = size(request_for(PROFILES["h100-sxm-4"], GLM45_AIR_FP8, settings))
    assert not report.fits
    assert "KV cache holds" in report.reasons[0]
