"""Health of every serving cluster, read-only: the head reaches each worker, answers /health and
one completion. Nothing is started or changed; a failure names what is down.

    pyinfra inventories/sandbox.py deploy/health.py
"""

from roles import base, service

base.run_phases([service], phases=("check_health",))
