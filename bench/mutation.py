"""Mutation score of the pure core: mutmut 3 on the modules pyproject's [tool.mutmut] names.

Run from the repository root (mutmut reads ./pyproject.toml and works in ./mutants)::

    .venv/bin/python bench/mutation.py                      # run every module, then the scores
    .venv/bin/python bench/mutation.py sizing architecture  # only these modules
    .venv/bin/python bench/mutation.py --report             # scores of the last run, no run
    .venv/bin/python bench/mutation.py --fresh              # forget earlier results first

mutmut keeps each mutant's result in mutants/*.meta and reruns only mutants of functions that
changed, so a second run is quick. The score is killed / (mutants − recorded equivalents): a
mutant that survives is either killed by a new test or written into bench/mutation-survivors.txt
with why no test can tell it from the original. Timeouts count as killed (the mutant hung the
tests); "no tests" and "not checked" count against the score. Exit 1 when a survivor is not
recorded or the score is under the bar (--min-total, --min-module).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SURVIVORS_FILE = REPO / "bench" / "mutation-survivors.txt"
MUTMUT = Path(sys.executable).with_name("mutmut")

# mutmut 3's exit codes (mutmut/stats.py status_by_exit_code)
KILLED = {1, 3, 24, -24, 36, 152, 255, 37}
"""killed by a test, pytest internal error on the mutant, timeout, caught by the type check."""
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass
class ModuleScore:
    path: str
    killed: int = 0
    survived: list[str] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            self.killed
            + len(self.survived)
            + len(self.untested)
            + len(self.unchecked)
            + len(self.other)
        )

    @property
    def counted(self) -> int:
        return self.total - len(self.equivalent)

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.counted if self.counted else 100.0


def mutated_paths() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def module_name(path: str) -> str:
    """metalserve/diag/judge.py -> diag/judge; the name a user passes on the command line."""
    return path.removeprefix("metalserve/").removesuffix(".py")


def mutant_glob(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".") + ".*"


def read_equivalents() -> dict[str, str]:
    """mutant name -> the mutated line it was recorded for (a renumbered mutant no longer matches)."""
    recorded: dict[str, str] = {}
    if not SURVIVORS_FILE.exists():
        return recorded
    for raw in SURVIVORS_FILE.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        name, _, rest = raw.partition("\t")
        line, _, _why = rest.partition("\t")
        recorded[name.strip()] = line.strip()
    return recorded


_ADDED = re.compile(r"^\+(?!\+\+)(.*)$")


def mutated_line(name: str) -> str:
    """The line the mutant changed, as ``mutmut show`` prints it (first added line)."""
    for _attempt in range(2):  # a run in progress may be rewriting the mutant's .meta file
        shown = subprocess.run(
            [str(MUTMUT), "show", name], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout
        for line in shown.splitlines():
            if m := _ADDED.match(line):
                return m.group(1).strip()
    return ""


def record(name: str, why: str) -> int:
    line = mutated_line(name)
    if not line:
        print(f"{name}: no such mutant (mutmut show printed no change)", file=sys.stderr)
        return 2
    if "\t" in why or "\n" in why:
        print("WHY is one line without tabs", file=sys.stderr)
        return 2
    with SURVIVORS_FILE.open("a", encoding="utf-8") as out:
        out.write(f"{name}\t{line}\t{why}\n")
    print(f"recorded {name}: {line}")
    return 0


def mutant_results(path: str) -> dict[str, int | None]:
    """mutmut's exit code per mutant of ``path`` (None: not run yet), from its last run."""
    meta = REPO / "mutants" / f"{path}.meta"
    if not meta.exists():
        return {}
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return codes


def collect(paths: list[str], equivalents: dict[str, str]) -> list[ModuleScore]:
    scores = []
    for path in paths:
        score = ModuleScore(path=path)
        for name, code in sorted(mutant_results(path).items()):
            if code in KILLED:
                score.killed += 1
            elif code in SURVIVED:
                score.survived.append(name)
            elif code in NO_TESTS:
                score.untested.append(name)
            elif code is None:
                score.unchecked.append(name)
            else:
                score.other.append(name)
        for name in score.survived + score.untested:
            if name in equivalents and mutated_line(name) == equivalents[name]:
                score.equivalent.append(name)
        scores.append(score)
    return scores


def not_killed(paths: list[str]) -> list[str]:
    return [
        name for s in collect(paths, {}) for name in s.survived + s.untested + s.unchecked + s.other
    ]


def mutmut_missing() -> bool:
    if MUTMUT.exists():
        return False
    print(f"{MUTMUT} not found: pip install -e '.[dev]' (mutmut>=3.3,<4)", file=sys.stderr)
    return True


def tree_state() -> str:
    """The commit of the working tree, and whether it has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "an unknown commit"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit} + uncommitted changes" if dirty else commit


def run_mutmut(
    paths: list[str], max_children: int, names: list[str] | None = None, quiet: bool = False
) -> int:
    """mutmut reruns every mutant it is given by name or glob, killed ones included."""
    command = [str(MUTMUT), "run", "--max-children", str(max_children)]
    command += names if names is not None else [mutant_glob(p) for p in paths]
    shown = command if len(command) < 12 else [*command[:6], f"... ({len(command) - 4} mutants)"]
    if not quiet:
        print("+", " ".join(shown), flush=True)
    return subprocess.run(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if quiet else None,
        check=False,
    ).returncode


def report(scores: list[ModuleScore]) -> tuple[float, list[str]]:
    print(f"{'module':<20} {'killed':>7} {'total':>6} {'equiv':>6} {'score':>7}")
    total = Counter()
    unrecorded: list[str] = []
    for s in scores:
        print(
            f"{module_name(s.path):<20} {s.killed:>7} {s.total:>6} {len(s.equivalent):>6} "
            f"{s.score:>6.1f} %"
        )
        total.update(killed=s.killed, total=s.total, equivalent=len(s.equivalent))
        unrecorded += [
            n for n in s.survived + s.untested + s.unchecked + s.other if n not in s.equivalent
        ]
    counted = total["total"] - total["equivalent"]
    overall = 100.0 * total["killed"] / counted if counted else 100.0
    print(
        f"{'pure core':<20} {total['killed']:>7} {total['total']:>6} {total['equivalent']:>6} "
        f"{overall:>6.1f} %"
    )
    return overall, unrecorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="e.g. sizing diag/judge (default: all)")
    parser.add_argument("--report", action="store_true", help="print the last run's scores")
    parser.add_argument("--fresh", action="store_true", help="delete ./mutants first")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="rerun only the mutants the last run did not kill (after adding tests)",
    )
    parser.add_argument(
        "--record",
        nargs=2,
        metavar=("MUTANT", "WHY"),
        help="write MUTANT into the survivors file as equivalent, with its mutated line and WHY",
    )
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("--min-total", type=float, default=85.0)
    parser.add_argument("--min-module", type=float, default=80.0)
    args = parser.parse_args(argv)

    if mutmut_missing():
        return 2
    if args.record:
        return record(*args.record)
    paths = mutated_paths()
    if args.modules:
        wanted = {m.removesuffix(".py") for m in args.modules}
        unknown = wanted - {module_name(p) for p in paths}
        if unknown:
            print(
                f"not in [tool.mutmut] only_mutate: {', '.join(sorted(unknown))} "
                f"(known: {', '.join(module_name(p) for p in paths)})",
                file=sys.stderr,
            )
            return 2
        paths = [p for p in paths if module_name(p) in wanted]
    measured_at = tree_state()  # the tree mutmut copies now, whatever is committed meanwhile
    if args.fresh:
        shutil.rmtree(REPO / "mutants", ignore_errors=True)
    if args.survivors:
        names = not_killed(paths)
        if names:
            run_mutmut(paths, args.max_children, names)
    elif not args.report:
        run_mutmut(paths, args.max_children)

    print(f"mutation score at {measured_at}:")
    scores = collect(paths, read_equivalents())
    overall, unrecorded = report(scores)
    if unrecorded:
        print(f"\n{len(unrecorded)} mutants not killed and not recorded as equivalent:")
        for name in unrecorded:
            print(f"  {name}")
        print("show one with: mutmut show NAME")
    low = [module_name(s.path) for s in scores if s.score < args.min_module]
    if low:
        print(f"under {args.min_module:g} %: {', '.join(low)}")
    if overall < args.min_total:
        print(f"pure core under {args.min_total:g} %")
    return 1 if unrecorded or low or overall < args.min_total else 0


if __name__ == "__main__":
    sys.exit(main())
