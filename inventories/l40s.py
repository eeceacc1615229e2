"""One 8×L40S box (48 GB GDDR6 each, PCIe, no NVLink), composed from parts: GLM-4.5-Air-FP8
(106 GB) on vLLM with TP 8.

    metalserve plan inventories/l40s.py
"""

hosts = [
    (
        "l40s-01.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "hardware": {
                    "gpu": "l40s",
                    "gpus_per_node": 8,
                    "interconnect": "pcie",
                    "host_ram_gb": 512,
                },
                "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
                "engine": {
                    "name": "vllm",
                    "tensor_parallel_size": 8,
                    "kv_cache_dtype": "fp8",
                    "max_model_len": 65536,
                    "host": "0.0.0.0",
                    "port": 8000,
                },
            },
        },
    ),
]
