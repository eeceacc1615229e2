"""8×H200 SXM (NVSwitch): GLM-5.2-FP8 on vLLM, the Modal 8x H200 post's command, kept warm every 14
minutes (metalserve/catalog/guides.py).

pyinfra inventories/h200.py deploy/serve.py
metalserve plan inventories/h200.py
"""

hosts = [
    (
        "h200-01.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "profile": "h200-sxm-8",
                "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
                "engine": {
                    "name": "vllm",
                    "served_model_name": "glm-5.2-fp8",
                    "host": "0.0.0.0",
                    "port": 8000,
                    "tensor_parallel_size": 8,
                    "kv_cache_dtype": "fp8",
                    "max_model_len": 131072,
                    "gpu_memory_utilization": 0.92,
                    "trust_remote_code": True,
                    "speculative_config": {"method": "mtp", "num_speculative_tokens": 5},
                    "safetensors_load_strategy": "prefetch",
                    "enable_prefix_caching": True,
                    "enforce_eager": True,
                },
                "env": {"HF_XET_HIGH_PERFORMANCE": "1", "VLLM_LOG_STATS_INTERVAL": "1"},
                "secrets": {"hf_token_file": "~/.config/metalserve/hf_token"},
                "service": {"keep_warm_minutes": 14},
            },
        },
    ),
]
