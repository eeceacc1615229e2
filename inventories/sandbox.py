"""pyinfra inventory of the sandbox hosts made by `metalserve sandbox up`.

Usage: `pyinfra inventories/sandbox.py deploy/serve.py -y`. Hosts are reached over real SSH
through loopback relays into the sandbox (see its ssh_config); host data comes from
`metalserve.sandbox.inventory.host_data`. With `METALSERVE_SANDBOX_BUNDLE=DIR` (a bundle made by
`metalserve bundle build inventories/sandbox.py --out DIR`), every input comes from that bundle.
"""

import os
import sys
from pathlib import Path

from metalserve.sandbox.demo import load_inputs
from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.inventory import inventory_hosts
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.state import load_state

_bundle = os.environ.get("METALSERVE_SANDBOX_BUNDLE")
try:
    layout = default_layout()
    inputs = load_inputs(layout.run_dir)
    if _bundle and inputs is None:
        raise SandboxError(
            "METALSERVE_SANDBOX_BUNDLE: expected the sandbox's inputs (model, keys), found none "
            "— fix: run `metalserve demo` once, then build the bundle and deploy from it"
        )
    sandbox = inventory_hosts(
        load_state(layout.state_file), inputs, Path(_bundle) if _bundle else None
    )
except SandboxError as err:
    print(f"error: {err.message}", file=sys.stderr)
    sys.exit(2)
