"""2 nodes of 8×H200 over InfiniBand NDR: GLM-5.2 BF16 (1.49 TB), TP 8 inside a node, PP 2 across."""

_FABRIC = {
    "socket_ifname": "ib0",
    "ib_hca": [f"mlx5_{i}" for i in range(8)],
}
_ENGINE = {
    "name": "vllm",
    "tensor_parallel_size": 8,
    "pipeline_parallel_size": 2,
    "enable_expert_parallel": True,
    "kv_cache_dtype": "fp8",
    "max_model_len": 65536,
    "trust_remote_code": True,
    "host": "0.0.0.0",
    "port": 8000,
}

hosts = [
    (
        f"h200-ib-0{rank + 1}.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "profile": "h200-sxm-8x2-ib",
                "model": {"checkpoint": "zai-org/GLM-5.2"},
                "engine": _ENGINE,
                "fabric": _FABRIC,
                "cluster": {
                    "name": "h200-ib",
                    "node_rank": rank,
                    "address": f"192.0.2.2{rank + 1}",
                },
            },
        },
    )
    for rank in range(2)
]
