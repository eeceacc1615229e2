"""NCCL diagnostic on every host of an inventory: build nccl-tests, run, judge, report.

    pyinfra inventories/h200-ib.py deploy/diagnose.py

Reports land on the control host in ``diag-reports/<date>/<host>/`` (``metalserve.diag.reports_dir``);
a FAIL verdict fails the host. Multi-node profiles need passwordless SSH from node 0 to the others.
"""

from roles import base, nccl_diag

base.run_phases([nccl_diag])
