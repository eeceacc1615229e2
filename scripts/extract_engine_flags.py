"""Derive each pinned engine release's flag set from that release's own source.

For every pinned release this fetches the artifact from PyPI (``pip download``), reads the
flags out of it and writes ``metalserve/engines/flagsets/<engine>_<version>.py``:

- vLLM and SGLang: the wheel is installed with ``--no-deps`` into a throwaway venv next to a CPU
  torch and only the packages its parser imports, and ``scripts/flag_probe.py`` dumps the real
  argparse parser (``make_arg_parser`` / ``ServerArgs.add_cli_args``) and the name registries
  argparse does not check.
- llama.cpp: the tree vendored in the llama-cpp-python sdist is read, not built: every
  ``common_arg`` in ``common/arg.cpp`` that ``llama-server`` registers, with its spellings, whether
  its handler takes a value, and the values an exhaustive handler accepts.

Examples::

    python scripts/extract_engine_flags.py                   # all releases, rewrite the modules
    python scripts/extract_engine_flags.py -e llamacpp       # one engine
    python scripts/extract_engine_flags.py --check --offline # re-derive from the cache, compare

The output holds no timestamps and is sorted, so re-running reproduces it byte for byte.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from metalserve.artefacts.cache import sha256_file  # noqa: E402
from metalserve.catalog import pins  # noqa: E402

FLAGSETS_DIR = REPO / "metalserve" / "engines" / "flagsets"
PROBE = REPO / "scripts" / "flag_probe.py"
DEFAULT_CACHE = Path(
    os.environ.get(
        "METALSERVE_FLAG_CACHE", Path.home() / ".cache" / "metalserve" / "engine-releases"
    )
)
DEFAULT_VENVS = Path(os.environ.get("METALSERVE_FLAG_VENVS", "/tmp/flagvenvs"))

# The CPU build of torch that lies on this project's machines; the engines pin newer CUDA builds,
# which their argument parsers do not need.
CPU_TORCH = next(p for p in pins.CONVERTER_REQUIREMENTS if p.name == "torch").requirement

# What `import vllm...make_arg_parser` pulls in on Python 3.11, found by importing until nothing
# was missing. Installed with --no-deps so the venv stays small and nothing drags in CUDA.
VLLM_IMPORTS = [
    "aiohappyeyeballs==2.7.1",
    "aiohttp==3.14.5",
    "aiosignal==1.4.0",
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "apache-tvm-ffi==0.1.15.post2",
    "attrs==26.1.0",
    "cachetools==8.0.1",
    "cbor2==6.3.0",
    "certifi==2026.10.18",
    "charset-normalizer==3.5.2",
    "click==8.5.1",
    "cloudpickle==3.1.2",
    "fastapi==0.165.0",
    "filelock==4.2.12",
    "frozenlist==1.8.0",
    "fsspec==2026.9.0",
    "h11==0.16.0",
    "hf-xet==1.8.0",
    "httpcore2==2.16.2",
    "httpx2==2.16.2",
    "huggingface_hub==2.4.0",
    "idna==3.20",
    "Jinja2==3.1.6",
    "jiter==0.19.0",
    "llguidance==1.9.1",
    "markdown-it-py==4.3.0",
    "MarkupSafe==3.0.4",
    "mdurl==0.1.2",
    "mpmath==1.3.0",
    "msgspec==0.22.0",
    "multidict==7.2.1",
    "networkx==3.6.1",
    "numpy==2.4.6",
    "openai==3.54.0",
    "openai-harmony==0.0.8",
    "opentelemetry-api==1.45.2",
    "packaging==26.3",
    "partial-json-parser==0.2.1.1.post7",
    "pillow==13.0.0",
    "prometheus_client==0.26.0",
    "propcache==0.5.4",
    "psutil==7.2.2",
    "py-cpuinfo==9.0.0",
    "pybase64==1.5.1",
    "pydantic==2.14.3",
    "pydantic_core==2.50.4",
    "Pygments==2.21.0",
    "PyYAML==6.0.3",
    "pyzmq==27.3.0",
    "regex==2026.11.15",
    "requests==2.34.2",
    "rich==15.0.0",
    "safetensors==0.8.0",
    "shellingham==1.5.4",
    "sniffio==1.3.1",
    "starlette==1.10.0",
    "sympy==1.14.0",
    "tokenizers==0.23.3",
    "tqdm==4.70.1",
    "transformers==5.23.0",
    "triton==3.9.0",
    "truststore==0.10.5",
    "typer==0.29.2",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
    "uvloop==0.23.0",
    "xgrammar==0.2.8",
    "yarl==1.25.1",
]

# The same for `ServerArgs.add_cli_args` of SGLang (it imports IPython through a debug helper).
SGLANG_IMPORTS = [
    "aiohappyeyeballs==2.7.1",
    "aiohttp==3.14.5",
    "aiosignal==1.4.0",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "asttokens==3.0.2",
    "attrs==26.1.0",
    "certifi==2026.10.18",
    "charset-normalizer==3.5.2",
    "executing==2.3.0",
    "filelock==4.2.12",
    "frozenlist==1.8.0",
    "fsspec==2026.9.0",
    "idna==3.20",
    "ipython==9.18.1",
    "ipython_pygments_lexers==1.1.1",
    "jedi==0.20.1",
    "Jinja2==3.1.6",
    "MarkupSafe==3.0.4",
    "matplotlib-inline==0.2.2",
    "mpmath==1.3.0",
    "msgspec==0.22.0",
    "multidict==7.2.1",
    "networkx==3.6.1",
    "numpy==2.4.6",
    "orjson==3.13.0",
    "packaging==26.3",
    "parso==0.8.7",
    "pexpect==4.9.0",
    "pillow==13.0.0",
    "prompt_toolkit==3.0.53",
    "propcache==0.5.4",
    "psutil==7.2.2",
    "ptyprocess==0.7.0",
    "pure_eval==0.2.4",
    "pybase64==1.5.1",
    "pydantic==2.14.3",
    "pydantic_core==2.50.4",
    "Pygments==2.21.0",
    "pyzmq==27.3.0",
    "requests==2.34.2",
    "stack-data==0.6.3",
    "starlette==1.10.0",
    "sympy==1.14.0",
    "tqdm==4.70.1",
    "traitlets==5.16.1",
    "triton==3.9.0",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
    "wcwidth==0.9.4",
    "yarl==1.25.1",
]


@dataclasses.dataclass(frozen=True)
class Syntax:
    """How a release's parser reads argv; facts about its parser code, with their source.

    underscores: ``--max_model_len`` is read as ``--max-model-len``.
    equals: ``--port=8000`` is accepted.
    dotted_keys: ``--compilation-config.level 3`` sets one key of a JSON option.
    value_always_next: the token after a valued option is its value even if it starts with "-"
    (llama.cpp: a bare ``-fa`` swallows the next flag).
    """

    source: str
    underscores: bool = False
    equals: bool = True
    dotted_keys: bool = False
    value_always_next: bool = False


@dataclasses.dataclass(frozen=True)
class Release:
    """One pinned engine release and the PyPI artifact its flags are read from.

    ``engine`` names the flag set (``pins.ENGINE_PINS``); ``package`` is what PyPI ships it
    in, which for llama.cpp is the llama-cpp-python sdist that vendors the tree.
    """

    engine: str
    package: pins.Pin
    syntax: Syntax
    imports: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    @property
    def version(self) -> str:
        return pins.ENGINE_PINS[self.engine].version

    @property
    def requirement(self) -> str:
        return self.package.requirement

    @property
    def sdist(self) -> bool:
        return self.engine == "llamacpp"

    @property
    def artifact_glob(self) -> str:
        stem = f"{self.package.name.replace('-', '_')}-{self.package.version}"
        return f"{stem}.tar.gz" if self.sdist else f"{stem}-*.whl"

    @property
    def module_name(self) -> str:
        return f"{self.engine}_{self.version.replace('.', '_')}"


RELEASES = (
    Release(
        engine="vllm",
        package=pins.VLLM,
        syntax=Syntax(
            "vllm/utils/argparse_utils.py FlexibleArgumentParser.parse_args",
            underscores=True,
            dotted_keys=True,
        ),
        imports=tuple(VLLM_IMPORTS),
        env=(("VLLM_TARGET_DEVICE", "cpu"),),
    ),
    Release(
        engine="sglang",
        package=pins.SGLANG,
        syntax=Syntax("sglang/srt/server_args.py prepare_server_args: argparse.ArgumentParser"),
        imports=tuple(SGLANG_IMPORTS),
    ),
    Release(
        engine="llamacpp",
        package=pins.LLAMA_CPP_PYTHON,
        syntax=Syntax(
            "common/arg.cpp common_params_parse_ex",
            underscores=True,
            equals=False,
            value_always_next=True,
        ),
    ),
)


class ExtractError(Exception):
    """A release whose flags could not be read; the message says what to do."""


# --------------------------------------------------------------------------------------------
# artifacts and venvs (the only network use: pip, against PyPI)
# --------------------------------------------------------------------------------------------


def find_artifact(release: Release, cache: Path) -> Path | None:
    found = sorted((cache / "artifacts").glob(release.artifact_glob))
    return found[0] if found else None


def fetch_artifact(release: Release, cache: Path, offline: bool) -> Path:
    """The release's wheel or sdist in ``cache/artifacts``, downloaded with pip if missing."""
    found = find_artifact(release, cache)
    if found is not None:
        return found
    if offline:
        raise ExtractError(
            f"{release.requirement}: no {release.artifact_glob} in {cache / 'artifacts'}"
            " — run without --offline to download it"
        )
    sdist = release.sdist
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache / "artifacts")]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    subprocess.run([*cmd, release.requirement], check=True)
    found = find_artifact(release, cache)
    if found is None:
        raise ExtractError(f"{release.requirement}: pip download left no {release.artifact_glob}")
    return found


def ensure_venv(release: Release, artifact: Path, venvs: Path, offline: bool) -> Path:
    """A venv holding CPU torch, the parser's imports and the release itself (no deps)."""
    venv = venvs / f"{release.engine}-{release.version}"
    ready = venv / ".metalserve-ready"
    python = venv / "bin" / "python"
    if ready.exists() and ready.read_text() == artifact.name:
        return python
    if offline:
        raise ExtractError(
            f"{release.requirement}: no ready venv at {venv} — run without --offline to build it"
        )
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, CPU_TORCH, *release.imports], check=True)
    subprocess.run([*pip, str(artifact)], check=True)
    ready.write_text(artifact.name)
    return python


def run_probe(release: Release, python: Path) -> dict:
    env = {**os.environ, **dict(release.env)}
    done = subprocess.run(
        [str(python), str(PROBE), release.engine],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise ExtractError(f"{release.requirement}: the parser probe failed: {tail[0]}")
    return json.loads(done.stdout)


# --------------------------------------------------------------------------------------------
# argparse engines: the probe's dump -> flag table
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FlagTable:
    """What a generated module holds, before it is written out."""

    options: dict[str, str] = dataclasses.field(default_factory=dict)
    choices: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    case_insensitive: set[str] = dataclasses.field(default_factory=set)
    deprecated: dict[str, str] = dataclasses.field(default_factory=dict)
    removed: dict[str, str] = dataclasses.field(default_factory=dict)
    positionals: int = 0


def table_from_probe(probe: dict) -> FlagTable:
    """Turn flag_probe.py's JSON into the table, with the registries as choice lists."""
    table = FlagTable()
    positional_dests = set()
    registries: dict[str, list[str]] = probe["registries"]
    for action in probe["actions"]:
        if not action["options"]:
            positional_dests.add(action["dest"])
            continue
        if action["dest"] == "help":
            continue
        registry = next((registries[o] for o in action["options"] if o in registries), None)
        for option in action["options"]:
            table.options[option] = action["nargs"]
            values = registry if registry is not None else action["choices"]
            if values:
                table.choices[option] = sorted(values)
            if action["removed"]:
                table.removed[option] = action["removed"]
            elif action["deprecated"] or action["replacement"]:
                note = action["deprecated"]
                if action["replacement"]:
                    note = f"use {action['replacement']} instead"
                table.deprecated[option] = note
    table.case_insensitive.update(probe["case_insensitive"])
    table.positionals = len(positional_dests)
    return table


# --------------------------------------------------------------------------------------------
# llama.cpp: common/arg.cpp read as text
# --------------------------------------------------------------------------------------------

SERVER_EXAMPLE = "LLAMA_EXAMPLE_SERVER"
COMMON_EXAMPLE = "LLAMA_EXAMPLE_COMMON"
STRING_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def skip_literal(source: str, i: int) -> int:
    """Index of the quote closing the string or char literal opened at ``source[i]``."""
    quote, j = source[i], i + 1
    while source[j] != quote:
        j += 2 if source[j] == "\\" else 1
    return j


def strip_comments(source: str) -> str:
    """C++ source with // and /* */ comments blanked, string and char literals kept."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in "\"'":
            j = skip_literal(source, i)
            out.append(source[i : j + 1])
            i = j + 1
        elif source.startswith("//", i):
            i = source.find("\n", i)
            i = n if i < 0 else i
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_close(source: str, start: int) -> int:
    """Index of the bracket closing the one at ``start``, skipping string literals."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    stack = [pairs[source[start]]]
    i = start + 1
    while stack:
        c = source[i]
        if c in "\"'":
            i = skip_literal(source, i)
        elif c in pairs:
            stack.append(pairs[c])
        elif c == stack[-1]:
            stack.pop()
        i += 1
    return i - 1


def split_top_level(source: str) -> list[str]:
    """Split a C++ argument list on the commas that are not nested or quoted."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(source):
        c = source[i]
        if c in "\"'":
            i = skip_literal(source, i)
        elif c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(source[start:i].strip())
            start = i + 1
        i += 1
    parts.append(source[start:].strip())
    return parts


def literals(source: str) -> list[str]:
    return STRING_LITERAL.findall(source)


@dataclasses.dataclass(frozen=True)
class CommonArg:
    """One ``add_opt(common_arg(...))`` of arg.cpp."""

    args: tuple[str, ...]
    args_neg: tuple[str, ...]
    handler_params: tuple[str, ...]
    handler_body: str
    examples: frozenset[str]
    excludes: frozenset[str]
    preset_only: bool

    @property
    def in_server(self) -> bool:
        """arg.cpp's add_opt filter, for ``ex == LLAMA_EXAMPLE_SERVER``."""
        wanted = SERVER_EXAMPLE in self.examples or COMMON_EXAMPLE in self.examples
        return wanted and SERVER_EXAMPLE not in self.excludes and not self.preset_only

    @property
    def value_count(self) -> int:
        """How many argv tokens follow the option: the handler's non-``params`` parameters."""
        kinds = self.handler_params[1:]
        return 0 if kinds in ((), ("bool",)) else len(kinds)


def parse_handler(lambda_src: str) -> tuple[tuple[str, ...], str]:
    """A ``[](common_params & params, const std::string & value) {...}`` lambda's parameter
    kinds (``params``, ``string``, ``int``, ``bool``) and its body."""
    open_paren = lambda_src.index("(")
    close_paren = matching_close(lambda_src, open_paren)
    kinds = []
    for param in split_top_level(lambda_src[open_paren + 1 : close_paren]):
        if "common_params" in param:
            kinds.append("params")
        elif "std::string" in param:
            kinds.append("string")
        elif re.match(r"(int|bool)\b", param):
            kinds.append(param.split()[0])
        else:
            raise ExtractError(f"arg.cpp: handler parameter not understood: {param!r}")
    body_open = lambda_src.index("{", close_paren)
    return tuple(kinds), lambda_src[body_open : matching_close(lambda_src, body_open) + 1]


def parse_chain(chain: str) -> tuple[frozenset[str], frozenset[str], bool]:
    """``.set_examples({...}).set_excludes({...}).set_preset_only()`` after a common_arg."""

    def listed(method: str) -> frozenset[str] | None:
        match = re.search(rf"\.{method}\(\{{([^}}]*)\}}\)", chain)
        if match is None:
            return None
        return frozenset(x.strip() for x in match.group(1).split(",") if x.strip())

    return (
        listed("set_examples") or frozenset({COMMON_EXAMPLE}),
        listed("set_excludes") or frozenset(),
        ".set_preset_only()" in chain,
    )


def parse_common_args(arg_cpp: str) -> list[CommonArg]:
    """Every ``add_opt(common_arg(...))`` in ``common_params_parser_init``, in source order."""
    source = strip_comments(arg_cpp)
    start = source.index("common_params_context common_params_parser_init(")
    end = source.index("return ctx_arg;", start)
    found = []
    for match in re.finditer(r"add_opt\(\s*common_arg\(", source[start:end]):
        add_open = start + match.start() + len("add_opt")
        arg_open = start + match.end() - 1
        arg_close = matching_close(source, arg_open)
        parts = split_top_level(source[arg_open + 1 : arg_close])
        args = tuple(literals(parts[0]))
        args_neg = tuple(literals(parts[1])) if parts[1].startswith("{") else ()
        params, body = parse_handler(parts[-1])
        examples, excludes, preset_only = parse_chain(
            source[arg_close + 1 : matching_close(source, add_open)]
        )
        found.append(CommonArg(args, args_neg, params, body, examples, excludes, preset_only))
    if not found:
        raise ExtractError(
            "arg.cpp: no add_opt(common_arg(...)) found in common_params_parser_init"
        )
    return found


def predicate_values(arg_cpp: str) -> dict[str, list[str]]:
    """``is_truthy`` and friends: the literals each ``common_arg_utils::is_*`` compares with."""
    found = {}
    for match in re.finditer(
        r"bool common_arg_utils::(\w+)\(const std::string & value\)\s*\{([^}]*)\}", arg_cpp
    ):
        found[match.group(1)] = literals(match.group(2))
    return found


def kv_cache_type_names(arg_cpp: str, ggml_c: str) -> list[str]:
    """The names ``kv_cache_type_from_str`` accepts: ``kv_cache_types`` through ggml's table."""
    match = re.search(r"kv_cache_types = \{([^}]*)\}", arg_cpp)
    if match is None:
        raise ExtractError("arg.cpp: kv_cache_types list not found")
    names = []
    for ggml_type in re.findall(r"GGML_TYPE_\w+", match.group(1)):
        entry = re.search(rf"\[{ggml_type}\]\s*=\s*\{{\s*\.type_name\s*=\s*\"([^\"]+)\"", ggml_c)
        if entry is None:
            raise ExtractError(f"ggml.c: no type_name for {ggml_type}")
        names.append(entry.group(1))
    return names


def handler_choices(
    body: str, predicates: dict[str, list[str]], resolvers: dict[str, list[str]]
) -> list[str] | None:
    """The values a handler accepts, when it rejects every other value; else None.

    A handler is exhaustive when it maps its value through a lookup that throws on a miss (one
    of ``resolvers``), or when its if-chain of ``value == "x"`` / ``is_truthy(value)`` tests
    ends in ``else { throw ... }``.
    """
    for function, names in resolvers.items():
        if re.search(rf"\b{function}\(value\)", body):
            return names
    if not re.search(r"\belse\s*\{?\s*throw\b", body):
        return None
    values = re.findall(r'\bvalue\s*==\s*"([^"]+)"', body)
    for predicate, accepted in predicates.items():
        if re.search(rf"\b{predicate}\(value\)", body):
            values.extend(accepted)
    return values or None


def handler_note(body: str, marker: str) -> str | None:
    """The message of an ``arg_removed("...")`` call or a ``LOG_WRN("DEPRECATED: ...")``."""
    match = re.search(rf"{marker}\(\s*\"((?:[^\"\\]|\\.)*)\"", body)
    if match is None:
        return None
    return match.group(1).replace("\\n", " ").strip()


# The value lists the flag check relies on; an arg.cpp in which they cannot be read is an error.
LLAMACPP_REQUIRED_CHOICES: tuple[str, ...] = (
    "--flash-attn",
    "--cache-type-k",
    "--cache-type-v",
    "--split-mode",
    "--load-mode",
)


def table_from_arg_cpp(arg_cpp: str, ggml_c: str) -> FlagTable:
    """The ``llama-server`` flag table of one llama.cpp tree."""
    table = FlagTable()
    predicates = predicate_values(arg_cpp)
    resolvers = {"kv_cache_type_from_str": kv_cache_type_names(arg_cpp, ggml_c)}
    for arg in parse_common_args(arg_cpp):
        if not arg.in_server:
            continue
        values = handler_choices(arg.handler_body, predicates, resolvers)
        removed = handler_note(arg.handler_body, "arg_removed")
        deprecated = handler_note(arg.handler_body, "LOG_WRN")
        for option in arg.args:
            table.options[option] = str(arg.value_count)
            if values:
                table.choices[option] = sorted(set(values))
            if removed:
                table.removed[option] = removed
            elif deprecated and "DEPRECATED" in deprecated:
                table.deprecated[option] = deprecated.removeprefix("DEPRECATED:").strip()
        for option in arg.args_neg:
            table.options[option] = "0"
    missing = [o for o in LLAMACPP_REQUIRED_CHOICES if o not in table.choices]
    if missing:
        raise ExtractError(f"arg.cpp: no value list found for {', '.join(missing)}")
    return table


def read_sdist_members(artifact: Path, wanted: Iterable[str]) -> dict[str, str]:
    """Text of the sdist members whose path ends with each of ``wanted``."""
    wanted = tuple(wanted)
    found: dict[str, str] = {}
    with tarfile.open(artifact, "r:gz") as tar:
        for member in tar:
            for suffix in wanted:
                if member.name.endswith(suffix) and suffix not in found:
                    fh = tar.extractfile(member)
                    if fh is not None:
                        found[suffix] = fh.read().decode("utf-8")
    missing = [w for w in wanted if w not in found]
    if missing:
        raise ExtractError(f"{artifact.name}: missing {', '.join(missing)}")
    return found


def vendored_llamacpp_commit(changelog: str) -> str:
    """The llama.cpp commit the newest CHANGELOG entry of llama-cpp-python names."""
    match = re.search(r"llama\.cpp@([0-9a-f]{7,40})", changelog)
    if match is None:
        raise ExtractError("CHANGELOG.md names no llama.cpp commit")
    return match.group(1)


# --------------------------------------------------------------------------------------------
# writing the module
# --------------------------------------------------------------------------------------------


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)


def _block(opening: str, entries: list[str], closing: str) -> list[str]:
    """A literal one entry per line, or on one line when empty, as ruff format writes it."""
    if not entries:
        return [opening + closing, ""]
    return [opening, *(f"    {e}" for e in entries), closing, ""]


def _tuple(prefix: str, items: list[str], indent: str, tail: str) -> list[str]:
    """A tuple literal as ruff format writes it: a lone item stays on one line."""
    if len(items) <= 1:
        return [f"{prefix}({''.join(f'{_q(i)},' for i in items)}){tail}"]
    return [f"{prefix}(", *(f"{indent}    {_q(i)}," for i in items), f"{indent}){tail}"]


def _choice_entry(options: list[str], values: list[str]) -> list[str]:
    """``(options...): (values...),`` in CHOICES, laid out as ruff format leaves it."""
    key = _tuple("    ", options, "    ", "")
    value = _tuple("", values, "    ", ",")
    key[-1] += f": {value[0]}"
    return key + value[1:]


def render_module(release: Release, artifact: Path, digest: str, table: FlagTable) -> str:
    """The generated module's text; formatted as ``ruff format`` leaves it."""
    source = f"{artifact.name} sha256:{digest}"
    lines = [
        f'"""Flag set of {release.engine} {release.version} (PyPI {release.requirement}).',
        "",
        f"generated by scripts/extract_engine_flags.py from {source}; do not edit",
        '"""',
        "",
        f"ENGINE = {_q(release.engine)}",
        f"VERSION = {_q(release.version)}",
        f"SOURCE = {_q(source)}",
        f"SYNTAX_SOURCE = {_q(release.syntax.source)}",
        f"UNDERSCORES = {release.syntax.underscores}",
        f"EQUALS = {release.syntax.equals}",
        f"DOTTED_KEYS = {release.syntax.dotted_keys}",
        f"VALUE_ALWAYS_NEXT = {release.syntax.value_always_next}",
        f"POSITIONALS = {table.positionals}",
        "",
        '# option string -> argparse nargs: "0" a switch, "1" one value, "?", "*", "+", or a count',
        "OPTIONS: dict[str, str] = {",
        *(f"    {_q(o)}: {_q(table.options[o])}," for o in sorted(table.options)),
        "}",
        "",
        "# the option strings that share one value list -> that list",
        "CHOICES: dict[tuple[str, ...], tuple[str, ...]] = {",
    ]
    sharing: dict[tuple[str, ...], list[str]] = {}
    for option in sorted(table.choices):
        sharing.setdefault(tuple(table.choices[option]), []).append(option)
    for values, options in sorted(sharing.items(), key=lambda item: item[1]):
        lines += _choice_entry(options, list(values))
    lines += ["}", ""]
    lines += [
        *_tuple("CASE_INSENSITIVE: tuple[str, ...] = ", sorted(table.case_insensitive), "", ""),
        "",
    ]
    for name, notes in (("DEPRECATED", table.deprecated), ("REMOVED", table.removed)):
        entries = [f"{_q(o)}: {_q(notes[o])}," for o in sorted(notes)]
        lines += _block(f"{name}: dict[str, str] = {{", entries, "}")
    return "\n".join(lines).rstrip("\n") + "\n"


def derive(release: Release, cache: Path, venvs: Path, offline: bool) -> tuple[str, FlagTable]:
    """The module text for ``release``, read from its artifact."""
    artifact = fetch_artifact(release, cache, offline)
    digest = sha256_file(artifact)
    if release.engine == "llamacpp":
        files = read_sdist_members(
            artifact,
            (
                "/CHANGELOG.md",
                "vendor/llama.cpp/common/arg.cpp",
                "vendor/llama.cpp/ggml/src/ggml.c",
            ),
        )
        commit = vendored_llamacpp_commit(files["/CHANGELOG.md"])
        if not commit.startswith(release.version):
            raise ExtractError(
                f"{artifact.name} vendors llama.cpp@{commit}, not {release.version}"
                " — pin the llama-cpp-python release that vendors it"
            )
        table = table_from_arg_cpp(
            files["vendor/llama.cpp/common/arg.cpp"], files["vendor/llama.cpp/ggml/src/ggml.c"]
        )
    else:
        python = ensure_venv(release, artifact, venvs, offline)
        table = table_from_probe(run_probe(release, python))
    return render_module(release, artifact, digest, table), table


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument(
        "-e", "--engine", action="append", choices=sorted({r.engine for r in RELEASES})
    )
    cli.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="artifacts (PyPI files)")
    cli.add_argument("--venv-dir", type=Path, default=DEFAULT_VENVS, help="throwaway venvs")
    cli.add_argument("--out-dir", type=Path, default=FLAGSETS_DIR)
    cli.add_argument("--offline", action="store_true", help="use only what is already cached")
    cli.add_argument(
        "--check", action="store_true", help="re-derive and compare with the modules, write nothing"
    )
    args = cli.parse_args(argv)
    stale = []
    for release in RELEASES:
        if args.engine and release.engine not in args.engine:
            continue
        started = time.monotonic()
        try:
            text, table = derive(release, args.cache_dir, args.venv_dir, args.offline)
        except ExtractError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        target = args.out_dir / f"{release.module_name}.py"
        elapsed = time.monotonic() - started
        summary = (
            f"{release.engine} {release.version}: {len(table.options)} option strings,"
            f" {len(table.choices)} with value lists, {len(table.deprecated)} deprecated,"
            f" {len(table.removed)} removed ({elapsed:.1f}s)"
        )
        if args.check:
            same = target.exists() and target.read_text() == text
            print(f"{'same' if same else 'DIFFERS'}: {target.name}: {summary}")
            if not same:
                stale.append(target.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
            print(f"  {summary}")
    if stale:
        print(f"error: {', '.join(stale)} differ from their source — re-run without --check")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
