"""Re-provision after a driver change: drain and stop the engine, install and load the pinned
driver (reboot where needed), verify, rebuild what links CUDA, start the engine, wait for /health.
A failed verification leaves the engine stopped. Preflight runs first, less the driver checks this
deploy brings to the pins; a FAIL stops the host before the engine is drained.

    pyinfra inventories/h200.py deploy/reprovision.py
"""

from metalserve.preflight import Purpose
from roles import preflight
from roles.base import current_plan
from roles.nvidia_driver import reprovision

plan = current_plan()
preflight.first(plan, Purpose.REPROVISION)
reprovision.run_steps(plan)
