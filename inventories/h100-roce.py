"""2 nodes of 8×H100 over RoCE v2: GLM-5.2-FP8 (755.6 GB) on 1.28 TB, TP 8 × PP 2 with expert
parallelism."""

_FABRIC = {
    "socket_ifname": "bond0",
    "ib_hca": [f"mlx5_{i}" for i in range(8)],
    "gid_index": 3,
    "traffic_class": 106,
}
_ENGINE = {
    "name": "vllm",
    "tensor_parallel_size": 8,
    "pipeline_parallel_size": 2,
    "enable_expert_parallel": True,
    "kv_cache_dtype": "fp8",
    "max_model_len": 32000,
    "trust_remote_code": True,
    "host": "0.0.0.0",
    "port": 8000,
}

hosts = [
    (
        f"h100-roce-0{rank + 1}.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "profile": "h100-sxm-8x2-roce",
                "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
                "engine": _ENGINE,
                "fabric": _FABRIC,
                "cluster": {
                    "name": "h100-roce",
                    "node_rank": rank,
                    "address": f"192.0.2.3{rank + 1}",
                },
            },
        },
    )
    for rank in range(2)
]
