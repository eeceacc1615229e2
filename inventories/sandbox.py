"""pyinfra inventory of the sandbox hosts made by `metalserve sandbox up`.

Usage: `pyinfra inventories/sandbox.py deploy/serve.py -y`. Hosts are reached over real SSH
through loopback relays into the sandbox (see its ssh_config); host data comes from
`metalserve.sandbox.inventory.host_data`.
"""

import sys

from metalserve.sandbox.demo import load_inputs
from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.inventory import inventory_hosts
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.state import load_state

try:
    layout = default_layout()
    sandbox = inventory_hosts(load_state(layout.state_file), load_inputs(layout.run_dir))
except SandboxError as err:
    print(f"error: {err.message}", file=sys.stderr)
    sys.exit(2)
