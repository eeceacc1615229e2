"""Bring a GPU host's NVIDIA stack to its pins: driver, fabric manager, CUDA, NCCL, RDMA fabric.

    pyinfra inventories/h200.py deploy/drivers.py --dry

Install everything, then configure, then load, start and verify; a second run changes nothing.
On a mirror or bundle site, ``packages`` first points apt at the site's flat repository, which
must carry the NVIDIA packages.
"""

from roles import base
from roles.nvidia_driver.stack import ROLES

base.run_phases(ROLES)
