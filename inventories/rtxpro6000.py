"""8×RTX PRO 6000 Blackwell (PCIe): NVIDIA's GLM-5.2-NVFP4 recipe, as the GLM-5.2-NVFP4 post
gives it (metalserve/catalog/guides.py)."""

hosts = [
    (
        "rtxpro-01.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                "profile": "rtxpro6000-8",
                "model": {"checkpoint": "nvidia/GLM-5.2-NVFP4"},
                "engine": {
                    "name": "vllm",
                    "tensor_parallel_size": 8,
                    "enable_expert_parallel": True,
                    "reasoning_parser": "glm45",
                    "tool_call_parser": "glm47",
                    "enable_auto_tool_choice": True,
                    "kv_cache_dtype": "fp8_e4m3",
                    "served_model_name": "glm-5.2-nvfp4",
                },
            },
        },
    ),
]
