"""The sandbox hosts made by `metalserve sandbox up -n 2` as one cluster: llama.cpp's RPC backend,
`rpc-server` on the workers, `llama-server --rpc` on the head, one model served from two hosts.

Usage: `pyinfra inventories/sandbox-cluster.py deploy/serve.py -y`, then
`pyinfra inventories/sandbox-cluster.py deploy/health.py -y` for the cluster's health.
"""

import sys

from metalserve.sandbox.demo import load_inputs
from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.inventory import cluster_inventory_hosts
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.state import load_state

try:
    layout = default_layout()
    sandbox = cluster_inventory_hosts(load_state(layout.state_file), load_inputs(layout.run_dir))
except SandboxError as err:
    print(f"error: {err.message}", file=sys.stderr)
    sys.exit(2)
