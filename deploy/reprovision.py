"""Re-provision after a driver change: drain and stop the engine, install and load the pinned
driver (reboot where needed), verify, rebuild what links CUDA, start the engine, wait for /health.
A failed verification leaves the engine stopped.

    pyinfra inventories/h200.py deploy/reprovision.py
"""

from roles.base import current_plan
from roles.nvidia_driver import reprovision

reprovision.run_steps(current_plan())
