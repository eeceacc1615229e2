"""The three published GLM-5.2 deployment guides metalserve reproduces, cited by the catalogues.

Their engine commands are copied verbatim under ``tests/fixtures/seeds/`` (files ``000-*``, ``003-*``
and ``004-*``, one prefix per guide below), and the golden tests rebuild them flag for flag.
"""

from __future__ import annotations

GLM52_GUIDE = "GLM 5.2 MoE guide (https://glm52-guide.pages.dev/moe-deployment/)"
"""'744B MoE. 8 GPUs. One Endpoint.': a GPU sizing table, vLLM, SGLang and llama-server commands,
and single- and multi-node NCCL settings (fixtures ``000-*``)."""

NVFP4_POST = (
    "GLM-5.2-NVFP4 vLLM post (https://thakicloud.github.io/en/llmops/glm-5.2-nvfp4-vllm-serving/)"
)
"""ThakiCloud's walk-through of NVIDIA's GLM-5.2-NVFP4 model card: the vLLM command validated on
8x RTX PRO 6000 Blackwell and its memory arithmetic (fixture ``003-*``)."""

MODAL_POST = (
    "GLM-5.2-FP8 on Modal post "
    "(https://explore.n1n.ai/blog/deploying-glm-5-2-fp8-modal-h200-2026-06-23)"
)
"""n1n.ai's 'Deploying GLM-5.2-FP8 (700B MoE) on Modal with 8x H200 GPUs': the vLLM command as a
Python list, the checkpoint size and the keep-warm schedule (fixture ``004-*``)."""
