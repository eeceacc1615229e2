"""InfiniBand / RoCE fabric: RDMA packages, GPUDirect RDMA (nvidia-peermem), port and GID checks."""
