"""Preflight on every host of an inventory, read-only: driver, pins, holds, Secure Boot, rival
modules, persistence, fabric manager, kernel headers, /dev/shm, room for the weights, RoCE GID index.

    pyinfra inventories/h200-roce.py deploy/preflight.py
    metalserve preflight show ~/.local/state/metalserve/preflight/*.json

Each host's report lands on the control host (``$METALSERVE_PREFLIGHT_DIR``); a FAIL fails the host.
"""

from roles import base, preflight

base.run_phases([preflight], phases=preflight.PHASES)
