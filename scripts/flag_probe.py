"""Dump an installed engine's real argument parser as JSON (run by extract_engine_flags.py).

This file runs inside a throwaway venv that holds the engine release, so it imports only the
standard library and the engine itself. It prints one JSON object on stdout::

    /tmp/flagvenvs/vllm-0.33.0/bin/python scripts/flag_probe.py vllm
    {"actions": [{"options": ["--api-key"], "nargs": "+", "choices": null, ...}], "registries": {...},
     "case_insensitive": [...]}

Each action lists every option string the parser accepts for it, hidden spellings included
(vLLM registers ``--no-X`` forms that ``--help`` does not show), its ``nargs`` and ``choices``,
and whether the source marks it deprecated (the ``deprecated=`` keyword, or its help text).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEPRECATION_WORDS = ("deprecated", "[deprecated]")


def _nargs_code(action: argparse.Action) -> str:
    """argparse's nargs as one short code: "0" (a switch), "1", "?", "*", "+" or a count."""
    if action.nargs is None:
        return "1"
    return str(action.nargs)


def _deprecation_note(action: argparse.Action, deprecated_actions: set[argparse.Action]) -> str:
    """The source's own words when it marks an option deprecated, else ""."""
    help_text = " ".join((action.help or "").split())
    marked = (
        action in deprecated_actions
        or getattr(action, "deprecated", False)
        or type(action).__name__.startswith("Deprecated")
    )
    if not marked and not help_text.lower().startswith(DEPRECATION_WORDS):
        if "deprecated" not in help_text.lower():
            return ""
        # Only a help text that says the option itself is deprecated counts, not one that
        # mentions some other deprecated thing.
        lead = help_text.lower().split(".")[0]
        if "deprecated" not in lead:
            return ""
    return help_text[:200] if help_text else "deprecated"


def dump_parser(parser: argparse.ArgumentParser) -> list[dict[str, Any]]:
    """Every action of ``parser`` with all the option strings that reach it."""
    by_action: dict[int, list[str]] = {}
    for option, action in parser._option_string_actions.items():
        by_action.setdefault(id(action), []).append(option)
    deprecated_actions: set[argparse.Action] = set(getattr(parser, "_deprecated", set()))
    dumped = []
    for action in parser._actions:
        options = sorted(set(by_action.get(id(action), [])) | set(action.option_strings))
        choices = None
        if action.choices is not None:
            choices = sorted(str(c) for c in action.choices if c is not None)
        dumped.append(
            {
                "options": options,
                "dest": action.dest,
                "nargs": _nargs_code(action),
                "choices": choices,
                "deprecated": _deprecation_note(action, deprecated_actions),
                # SGLang's Deprecated*Action classes carry the replacement, or an error
                # message when the flag was retired with no translation.
                "replacement": getattr(action, "new_flag", None),
                "removed": getattr(action, "error_message", None),
            }
        )
    return dumped


def probe_vllm() -> dict[str, Any]:
    """vLLM: ``make_arg_parser`` plus the registries argparse does not check (parsers, KV dtype)."""
    from typing import get_args

    from vllm.config import load as load_config
    from vllm.config.cache import KV_CACHE_DTYPES
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    return {
        "actions": dump_parser(parser),
        "registries": {
            "--kv-cache-dtype": sorted(KV_CACHE_DTYPES),
            "--tool-call-parser": sorted(ToolParserManager.list_registered()),
            "--reasoning-parser": sorted(ReasoningParserManager.list_registered()),
            "--safetensors-load-strategy": sorted(get_args(load_config.SafetensorsLoadStrategy)),
        },
        "case_insensitive": [],
    }


def probe_sglang() -> dict[str, Any]:
    """SGLang: ``ServerArgs.add_cli_args`` on a plain ArgumentParser, as launch_server does."""
    from sglang.srt.server_args import ServerArgs
    from sglang.srt.speculative import spec_registry
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    # SpeculativeAlgorithm.from_string upper-cases the name (so the flag is case-insensitive),
    # then tries the enum, the reserved
    # aliases (NEXTN -> EAGLE) and the plugin registry; NONE is what "no flag" means.
    speculative = {m.name for m in SpeculativeAlgorithm if m.name != "NONE"}
    speculative |= set(spec_registry._RESERVED_ALIASES) | set(spec_registry._REGISTRY)
    return {
        "actions": dump_parser(parser),
        "registries": {"--speculative-algorithm": sorted(speculative)},
        "case_insensitive": ["--speculative-algorithm"],
    }


PROBES = {"vllm": probe_vllm, "sglang": probe_sglang}

if __name__ == "__main__":
    json.dump(PROBES[sys.argv[1]](), sys.stdout, sort_keys=True)
