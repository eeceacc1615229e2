"""2 nodes of 8×H200 over RoCE v2 (8×400G), composed from parts: no preset names this setup.
GLM-5.2-FP8 (755.6 GB) on 2.26 TB of HBM, TP 8 inside a node, PP 2 across, expert parallel.

    metalserve plan inventories/h200-roce.py
    pyinfra inventories/h200-roce.py deploy/serve.py
"""

_HARDWARE = {
    "gpu": "h200-sxm",
    "gpus_per_node": 8,
    "nodes": 2,
    "interconnect": "nvswitch",
    "fabric": "roce_v2",
    "fabric_rate_gbps": 400,
    "nics_per_node": 8,
    "host_ram_gb": 2048,
}
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
    "max_model_len": 131072,
    "trust_remote_code": True,
    "host": "0.0.0.0",
    "port": 8000,
}

hosts = [
    (
        f"h200-roce-0{rank + 1}.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "hardware": _HARDWARE,
                "model": {"checkpoint": "zai-org/GLM-5.2-FP8", "served_name": "glm-5.2"},
                "engine": _ENGINE,
                "fabric": _FABRIC,
                "cluster": {
                    "name": "h200-roce",
                    "node_rank": rank,
                    "address": f"192.0.2.4{rank + 1}",
                },
            },
        },
    )
    for rank in range(2)
]
