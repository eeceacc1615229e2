"""8×H100 SXM (NVSwitch): GLM-5.2-FP8 (755.6 GB) does not fit 8 × 80 GB, so this box serves
GLM-4.7-FP8 (355B) with the GLM 5.2 MoE guide's SGLang settings."""

hosts = [
    (
        "h100-01.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "profile": "h100-sxm-8",
                "model": {"checkpoint": "zai-org/GLM-4.7-FP8"},
                "engine": {
                    "name": "sglang",
                    "entrypoint": "launch_server",
                    "trust_remote_code": True,
                    "tp_size": 8,
                    "mem_fraction_static": 0.90,
                    "context_length": 32000,
                    "enable_mixed_chunk": True,
                    "host": "0.0.0.0",
                    "port": 8000,
                },
            },
        },
    ),
]
