"""Bring a GPU host's NVIDIA stack to its pins: driver, fabric manager, CUDA, NCCL, RDMA fabric.

    pyinfra inventories/h200.py deploy/drivers.py --dry

Install everything, then configure, then load, start and verify; a second run changes nothing.
"""

from roles import base, cuda, fabric, fabricmanager, nccl, nvidia_driver

base.run_phases([nvidia_driver, fabricmanager, cuda, nccl, fabric])
