"""3× DGX Spark (GB10, 128 GB unified each) over 200G RoCE v2: GLM-4.5-Air-FP8, pipeline parallel
across the three nodes (the GLM-5.2-NVFP4 post: "3x DGX Spark with pipeline parallelism")."""

_FABRIC = {
    "socket_ifname": "enp1s0f0np0",
    "ib_hca": ["rocep1s0f0"],
    "gid_index": 3,
    "traffic_class": 106,
}
_ENGINE = {
    "name": "vllm",
    "pipeline_parallel_size": 3,
    "tensor_parallel_size": 1,
    "kv_cache_dtype": "fp8",
    "max_model_len": 32768,
    "gpu_memory_utilization": 0.85,
    "host": "0.0.0.0",
    "port": 8000,
}

hosts = [
    (
        f"spark-0{rank + 1}.example.internal",
        {
            "ssh_user": "root",
            "metalserve": {
                # the networks allowed to reach the engine (here a documentation range)
                "access": {"clients": ["198.51.100.0/24"]},
                "profile": "dgx-spark-3",
                "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
                "engine": _ENGINE,
                "fabric": _FABRIC,
                "cluster": {"name": "spark", "node_rank": rank, "address": f"192.0.2.1{rank + 1}"},
            },
        },
    )
    for rank in range(3)
]
