"""Wall time of each stage of the serve deploy, and of the whole, on one fresh sandbox host.

    sudo .venv/bin/python bench/stages.py [--keep]

Stages are the roles' @deploy names (Packages, Layout, llama.cpp, Weights, GGUF, Service …), timed
from pyinfra's own "Starting operation" lines. Caches on the control host (rootfs, apt repository,
wheelhouse, ccache) are used as they are: run it twice to see cold vs warm. A report, not a test.
"""

from __future__ import annotations

import argparse

from _sandbox import fresh_sandbox

from metalserve.io.runner import run_pyinfra
from metalserve.sandbox import down
from metalserve.sandbox.demo import INVENTORY, SERVE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up")
    args = parser.parse_args()
    fresh_sandbox(1)
    run = run_pyinfra(INVENTORY, SERVE)
    if run.returncode != 0:
        raise SystemExit(f"deploy failed:\n{run.output[-2000:]}")
    stages = run.stage_seconds()
    width = max(len(s) for s in stages)
    for stage, seconds in stages.items():
        print(f"{stage:<{width}}  {seconds:8.1f} s  {100 * seconds / run.elapsed:5.1f} %")
    print(f"{'whole deploy':<{width}}  {run.elapsed:8.1f} s")
    again = run_pyinfra(INVENTORY, SERVE)
    print(f"{'no-op re-run':<{width}}  {again.elapsed:8.1f} s  ({again.totals.changed} changed)")
    if not args.keep:
        down(progress=lambda _: None)


if __name__ == "__main__":
    main()
