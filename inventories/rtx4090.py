"""4×RTX 4090 + 128 GB RAM: the GLM 5.2 MoE guide's llama.cpp "budget option", flag for flag.

`metalserve plan` says plainly that it does not fit: 220 GB of GGUF (itself too small for 744B at
Q4_K_M) exceeds 96 GB of VRAM + 120 GB of usable RAM, and --n-gpu-layers 48 puts ~135 GB on the GPUs.
"""

hosts = [
    (
        "rtx4090-01.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "profile": "rtx4090-4",
                "model": {"checkpoint": "glm52-Q4_K_M.gguf"},
                "engine": {
                    "name": "llamacpp",
                    "n_gpu_layers": 48,
                    "tensor_split": [24, 24, 24, 24],
                    "ctx_size": 8192,
                    "host": "0.0.0.0",
                    "port": 8000,
                },
            },
        },
    ),
]
