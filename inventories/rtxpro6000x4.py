"""4×RTX PRO 6000 Blackwell (PCIe): 384 GB cannot hold GLM-5.2-NVFP4 (465 GB); GLM-4.5-Air-FP8 fits."""

hosts = [
    (
        "rtxpro4-01.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "profile": "rtxpro6000-4",
                "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
                "engine": {
                    "name": "vllm",
                    "tensor_parallel_size": 4,
                    "enable_expert_parallel": True,
                    "kv_cache_dtype": "fp8",
                    "max_model_len": 65536,
                    "host": "0.0.0.0",
                    "port": 8000,
                },
            },
        },
    ),
]
