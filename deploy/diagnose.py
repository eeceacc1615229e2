"""NCCL diagnostic on every host of an inventory: build nccl-tests, run, judge, report.

    pyinfra inventories/h200-ib.py deploy/diagnose.py

Reports land on the control host in ``diag-reports/<date>/<host>/`` (``metalserve.diag.reports_dir``);
a FAIL verdict fails the host. Preflight runs first: a host that fails it is not diagnosed.
Multi-node profiles need passwordless SSH from node 0 to the others.
"""

from metalserve.preflight import Purpose
from roles import base, nccl_diag, preflight

plan = base.current_plan()
preflight.first(plan, Purpose.DIAGNOSE)
base.run_phases([nccl_diag], plan)
