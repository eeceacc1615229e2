"""4×H100 SXM (NVLink, no NVSwitch). The GLM 5.2 MoE guide's table says GLM-5.2-FP8 fits here; it
does not (755.6 GB of weights, 320 GB of GPU memory — see `metalserve audit`). GLM-4.5-Air-FP8
does."""

hosts = [
    (
        "h100x4-01.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "profile": "h100-sxm-4",
                "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
                "engine": {
                    "name": "vllm",
                    "tensor_parallel_size": 4,
                    "enable_expert_parallel": True,
                    "kv_cache_dtype": "fp8",
                    "max_model_len": 65536,
                    "enable_prefix_caching": True,
                    "host": "0.0.0.0",
                    "port": 8000,
                },
            },
        },
    ),
]
