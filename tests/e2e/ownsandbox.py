"""A sandbox of a test module's own, beside the shared one (another prefix, subnet, port and run
directory: see ``SandboxLayout``), for tests that need fresh hosts or more of them.

Example::

    layout = SandboxLayout(prefix="mf", subnet="10.79.0.0/24", http_port=8083, run_dir=d / "mf")
    with own_sandbox(layout, 3) as state:
        ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from metalserve.sandbox import down, up
from metalserve.sandbox.layout import SandboxLayout
from metalserve.sandbox.state import SandboxState


@contextlib.contextmanager
def own_sandbox(layout: SandboxLayout, hosts: int) -> Iterator[SandboxState]:
    """``hosts`` fresh hosts of ``layout`` (whatever an interrupted session left behind removed
    first), brought down again whatever happens."""
    down(layout, progress=lambda _: None)
    state = up(hosts, layout=layout, progress=print)
    try:
        yield state
    finally:
        down(layout, progress=lambda _: None)
