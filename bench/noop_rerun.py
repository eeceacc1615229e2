"""How a no-op re-run of the serve deploy scales: 1 host vs 8 hosts, in one sandbox, one run.

    sudo .venv/bin/python bench/noop_rerun.py [--hosts 8] [--repeat 3]

Brings up a fresh sandbox of --hosts hosts, deploys once to all (with warm caches: the ccache and
wheel caches of an earlier run make this minutes, not an hour), then times the second run limited
to one host and the second run on all hosts, alternating --repeat times. Prints the medians and
the ratio N-host/1-host (the goal: at most 1.5). A report, not a pass/fail test; it tears the
sandbox down at the end unless --keep.
"""

from __future__ import annotations

import argparse
import statistics

from _sandbox import fresh_sandbox

from metalserve.io.runner import run_pyinfra
from metalserve.sandbox import down
from metalserve.sandbox.demo import INVENTORY, SERVE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up")
    args = parser.parse_args()

    state = fresh_sandbox(args.hosts)
    first = run_pyinfra(INVENTORY, SERVE)
    if first.returncode != 0:
        raise SystemExit(f"first deploy failed:\n{first.output[-2000:]}")
    print(f"first deploy on {args.hosts} hosts: {first.elapsed:.1f} s")

    one, many = [], []
    for _ in range(args.repeat):
        single = run_pyinfra(INVENTORY, SERVE, limit=state.hosts[0].name)
        every = run_pyinfra(INVENTORY, SERVE)
        for run in (single, every):
            if run.returncode != 0 or run.totals.changed:
                raise SystemExit(f"a re-run was not a no-op:\n{run.output[-2000:]}")
        one.append(single.elapsed)
        many.append(every.elapsed)
    t1, tn = statistics.median(one), statistics.median(many)
    print(f"no-op re-run, 1 host:  {t1:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in one)})")
    print(
        f"no-op re-run, {args.hosts} hosts: {tn:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in many)})"
    )
    print(f"ratio {args.hosts}-host/1-host: {tn / t1:.2f}  (goal: <= 1.5)")
    if not args.keep:
        down(progress=lambda _: None)


if __name__ == "__main__":
    main()
