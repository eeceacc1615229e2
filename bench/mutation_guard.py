"""A few minutes of mutation testing that keeps the pure core's score from falling.

Draws a fixed sample of the core's mutants (``--seed``, ``--count``) from those not recorded as
equivalent in bench/mutation-survivors.txt, runs mutmut on the sample only, and fails if any of
them survives: every such mutant was killed when the full run (bench/mutation.py) was last brought
to its score, so a survivor means a test lost its grip or new code arrived without one. The same
seed draws the same sample until the core's functions change.

    .venv/bin/python bench/mutation_guard.py                 # 40 mutants, seed 15
    .venv/bin/python bench/mutation_guard.py --count 80 --seed 3
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutation import (  # noqa: E402  (bench/ is not a package)
    mutant_results,
    mutated_paths,
    mutmut_missing,
    not_killed,
    read_equivalents,
    run_mutmut,
)

NO_MUTANT = "metalserve.no_such_module_for_the_guard.*"


def all_mutants(paths: list[str]) -> list[str]:
    """Every mutant of ``paths`` in the current code: mutmut generates them (and its map of which
    tests reach which function) on a run that selects none."""
    run_mutmut(paths, 1, [NO_MUTANT], quiet=True)
    return sorted(name for path in paths for name in mutant_results(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--max-children", type=int, default=1)
    args = parser.parse_args(argv)
    if mutmut_missing():
        return 2

    paths = mutated_paths()
    equivalents = read_equivalents()
    candidates = [n for n in all_mutants(paths) if n not in equivalents]
    if not candidates:
        print("no mutants generated: is [tool.mutmut] in pyproject.toml?", file=sys.stderr)
        return 2
    sample = sorted(random.Random(args.seed).sample(candidates, min(args.count, len(candidates))))
    print(f"{len(sample)} of {len(candidates)} mutants (seed {args.seed}):", flush=True)
    run_mutmut(paths, args.max_children, sample)
    results = {name: code for path in paths for name, code in mutant_results(path).items()}
    unrun = [name for name in sample if results.get(name) is None]
    if unrun:
        print(
            f"mutmut ran {len(sample) - len(unrun)} of the {len(sample)} mutants: a test file in "
            "[tool.mutmut] pytest_add_cli_args_test_selection is missing, or the clean test run "
            "failed — run bench/mutation.py for mutmut's own output",
            file=sys.stderr,
        )
        return 2
    left = set(not_killed(paths)) & set(sample)
    if left:
        print(f"{len(left)} sampled mutants were not killed:")
        for name in sorted(left):
            print(f"  {name}")
        print("show one with: mutmut show NAME; kill it with a test, or record it as equivalent")
        return 1
    print(f"all {len(sample)} killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
