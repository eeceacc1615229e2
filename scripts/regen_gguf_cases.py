"""Regenerate the gguf role's op-case commands (run from the worktree root)."""

import json
import sys
from pathlib import Path

from tests.opcases import load_case, run_case

for path in sorted(Path("tests/roles/gguf").glob("*.json")):
    case = load_case(path)
    if "error" in case:
        continue
    case["commands"] = run_case(case)
    again = run_case(case, "second_run_facts") if "second_run_facts" in case else []
    path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
    print(path.name, len(case["commands"]), "commands; second run:", again, file=sys.stderr)
