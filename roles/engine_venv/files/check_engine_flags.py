"""Check the engine arguments a unit will run with, using the installed engine's own parser.

Runs inside the engine's venv on the host and starts nothing: it builds the parser the engine's
command line builds and parses the arguments (a JSON list on stdin, no secret among them)::

    printf '%s' '["/var/lib/metalserve/models/m", "--tensor-parallel-size", "8"]' \\
        | /opt/metalserve/venvs/vllm-0.33.0/bin/python check_engine_flags.py vllm

- vllm: ``make_arg_parser`` on a ``FlexibleArgumentParser``, as ``vllm serve`` builds its subparser
  (vllm/entrypoints/cli/serve.py), then ``validate_parsed_serve_args``, vLLM's own checks that
  "raise prior to loading"; the arguments are what follows ``serve`` (the model, then flags).
- sglang: ``ServerArgs.add_cli_args`` on an ``argparse.ArgumentParser``, as
  ``prepare_server_args`` does (sglang/srt/server_args.py); the arguments start at ``--model-path``.

Exit 0 and print nothing when the engine accepts them; otherwise print the engine's own message on
one line to stderr and exit 1. Standard library only, besides the engine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Callable
from typing import Any

Validate = Callable[[argparse.Namespace], None] | None


# vLLM builds its parser's defaults from the current platform, and a host whose driver is not loaded
# yet has none ("Failed to infer device type"): an explicit CPU target is authoritative
# (vllm/platforms/__init__.py resolve_current_platform_cls_qualname), so the check needs no GPU.
# The flags and their choices do not depend on it. vLLM's own logging is kept to errors.
VLLM_CHECK_ENVIRONMENT = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_LOGGING_LEVEL": "ERROR",
    "VLLM_NO_USAGE_STATS": "1",
}


def vllm_parser() -> tuple[argparse.ArgumentParser, Validate]:
    os.environ.update(VLLM_CHECK_ENVIRONMENT)
    from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve")), validate_parsed_serve_args


def sglang_parser() -> tuple[argparse.ArgumentParser, Validate]:
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="sglang serve")
    ServerArgs.add_cli_args(parser)
    return parser, None


PARSERS: dict[str, Callable[[], tuple[argparse.ArgumentParser, Validate]]] = {
    "vllm": vllm_parser,
    "sglang": sglang_parser,
}


def one_line(text: str) -> str:
    """argparse's ``error:`` line where there is one (after its usage block), else the text."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors[-1] if errors else " ".join(lines))[:500] or "rejected, without a message"


def check(engine: str, argv: list[str]) -> str | None:
    """The engine's message rejecting ``argv``, or None when it accepts them."""
    try:
        parser, validate = PARSERS[engine]()
    except Exception as exc:  # an engine that cannot even build its parser is not checked
        return one_line(f"could not build its parser: {type(exc).__name__}: {exc}")
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            args = parser.parse_args(argv)
            if validate is not None:
                validate(args)
    except SystemExit as exc:
        return None if exc.code in (0, None) else one_line(said.getvalue())
    except Exception as exc:  # the engine's own validation errors (TypeError, ValueError, ...)
        return one_line(f"{type(exc).__name__}: {exc}")
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in PARSERS:
        print(f"usage: check_engine_flags.py {{{','.join(PARSERS)}}} < args.json", file=sys.stderr)
        return 2
    args: Any = json.load(sys.stdin)
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        print("expected a JSON list of strings on stdin", file=sys.stderr)
        return 2
    problem = check(argv[0], args)
    if problem is not None:
        print(f"{argv[0]} rejects the unit's flags: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
