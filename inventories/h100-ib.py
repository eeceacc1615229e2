"""2 nodes of 8×H100 over InfiniBand NDR (8×400G), composed from parts: GLM-5.2-FP8 (755.6 GB) on
1.28 TB of HBM, TP 8 inside a node, PP 2 across. HCA mlx5_8 (the storage/management port on many
HGX builds) is excluded in NCCL's own syntax.

    metalserve plan inventories/h100-ib.py
"""

_HARDWARE = {
    "gpu": "h100-sxm",
    "gpus_per_node": 8,
    "nodes": 2,
    "interconnect": "nvswitch",
    "fabric": "infiniband",
    "fabric_rate_gbps": 400,
    "nics_per_node": 8,
    "host_ram_gb": 2048,
}
_FABRIC = {"socket_ifname": "ib0", "ib_hca": "^=mlx5_8"}
_ENGINE = {
    "name": "vllm",
    "tensor_parallel_size": 8,
    "pipeline_parallel_size": 2,
    "kv_cache_dtype": "fp8",
    "max_model_len": 32000,
    "trust_remote_code": True,
    "host": "0.0.0.0",
    "port": 8000,
}

hosts = [
    (
        f"h100-ib-0{rank + 1}.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "hardware": _HARDWARE,
                "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
                "engine": _ENGINE,
                "fabric": _FABRIC,
                "cluster": {
                    "name": "h100-ib",
                    "node_rank": rank,
                    "address": f"192.0.2.5{rank + 1}",
                },
            },
        },
    )
    for rank in range(2)
]
