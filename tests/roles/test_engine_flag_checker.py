"""The host-side flag checker, run as the role runs it (JSON on stdin, engine name as argument),
against small stand-in engine packages that expose the same import paths and parser calls."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKER = REPO / "roles" / "engine_venv" / "files" / "check_engine_flags.py"
REAL_FIXTURE = REPO / "tests" / "fixtures" / "engines" / "vllm-0.33.0-flag-check.json"
REAL_VLLM = {case["case"]: case for case in json.loads(REAL_FIXTURE.read_text())["cases"]}
"""The checker's answers from the real vLLM 0.33.0 (installed from its lock on this machine)."""

STAND_INS = {
    # vllm/entrypoints/common/cli_args.py: make_arg_parser adds the positional model_tag and the
    # flags; validate_parsed_serve_args raises before loading (vLLM 0.33.0 raises this TypeError)
    "vllm/entrypoints/common/cli_args.py": """
        def make_arg_parser(parser):
            parser.add_argument("model_tag", nargs="?")
            parser.add_argument("--tensor-parallel-size", type=int)
            parser.add_argument("--enable-auto-tool-choice", action="store_true")
            parser.add_argument("--tool-call-parser")
            return parser

        def validate_parsed_serve_args(args):
            if args.enable_auto_tool_choice and not args.tool_call_parser:
                raise TypeError("Error: --enable-auto-tool-choice requires --tool-call-parser")
    """,
    "vllm/utils/argparse_utils.py": """
        import argparse

        class FlexibleArgumentParser(argparse.ArgumentParser):
            pass
    """,
    "sglang/srt/server_args.py": """
        class ServerArgs:
            @staticmethod
            def add_cli_args(parser):
                parser.add_argument("--model-path", required=True)
                parser.add_argument("--tp-size", type=int)
    """,
}


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engines")
    for name, source in STAND_INS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        for package in path.relative_to(root).parents:
            if package != Path("."):
                (root / package / "__init__.py").touch()
    return root


def run(engines: Path, engine: str, args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), engine],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(engines), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_accepted_flags_pass_silently(engines: Path) -> None:
    done = run(engines, "vllm", ["/models/m", "--tensor-parallel-size", "8"])
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = run(engines, "sglang", ["--model-path", "/models/m", "--tp-size", "8"])
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize(
    ("engine", "args", "said"),
    [
        (
            "vllm",
            ["/models/m", "--tensor-parallel-sise", "8"],
            REAL_VLLM["a misspelt flag"]["message"].split(": ", 1)[1],
        ),
        (
            "vllm",
            ["/models/m", "--tensor-parallel-size", "eight"],
            "vllm serve: error: argument --tensor-parallel-size: invalid int value: 'eight'",
        ),
        (
            "vllm",
            ["/models/m", "--enable-auto-tool-choice"],
            REAL_VLLM["auto tool choice without a tool call parser"]["message"].split(": ", 1)[1],
        ),
        (
            "sglang",
            ["--model-path", "/models/m", "--tp", "8", "--mem-fraction", "0.9"],
            "sglang serve: error: unrecognized arguments: --mem-fraction 0.9",
        ),
    ],
)
def test_a_rejected_flag_fails_with_the_engines_own_message_on_one_line(
    engines: Path, engine: str, args: list[str], said: str
) -> None:
    done = run(engines, engine, args)
    assert done.returncode == 1
    assert done.stderr == f"{engine} rejects the unit's flags: {said}\n"


@pytest.mark.parametrize(("engine", "stdin"), [("llamacpp", []), ("vllm", {"a": 1})])
def test_misuse_is_a_usage_error(engines: Path, engine: str, stdin: object) -> None:
    done = run(engines, engine, stdin)
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_the_real_vllm_accepted_the_rendered_argv_and_refused_the_wrong_ones() -> None:
    """What the fixture recorded: the h200 inventory's unit arguments pass vLLM's own parser; a
    misspelt flag and a missing companion flag are refused in one line each."""
    assert REAL_VLLM["the rendered argv of inventories/h200.py"]["returncode"] == 0
    for case in ("a misspelt flag", "auto tool choice without a tool call parser"):
        assert REAL_VLLM[case]["returncode"] == 1
        assert REAL_VLLM[case]["message"].startswith("vllm rejects the unit's flags: ")


def test_an_engine_that_cannot_build_its_parser_fails_in_one_line(tmp_path: Path) -> None:
    """vLLM 0.33.0 builds its parser's defaults from the platform; without VLLM_TARGET_DEVICE=cpu
    (which the checker sets) a driverless host raised 'Failed to infer device type' here."""
    package = tmp_path / "vllm" / "entrypoints" / "common"
    package.mkdir(parents=True)
    (tmp_path / "vllm" / "utils").mkdir()
    for init in ("vllm", "vllm/entrypoints", "vllm/entrypoints/common", "vllm/utils"):
        (tmp_path / init / "__init__.py").touch()
    (tmp_path / "vllm" / "utils" / "argparse_utils.py").write_text(
        "import argparse\nclass FlexibleArgumentParser(argparse.ArgumentParser): pass\n"
    )
    (package / "cli_args.py").write_text(
        "import os\n"
        "def make_arg_parser(parser):\n"
        "    if os.environ.get('VLLM_TARGET_DEVICE') != 'cpu':\n"
        "        raise RuntimeError('Failed to infer device type')\n"
        "    raise RuntimeError('broken build')\n"
        "def validate_parsed_serve_args(args): pass\n"
    )
    done = run(tmp_path, "vllm", ["/models/m"])
    assert done.returncode == 1
    assert done.stderr == (
        "vllm rejects the unit's flags: could not build its parser: RuntimeError: broken build\n"
    )
