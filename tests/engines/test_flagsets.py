"""Engine flag sets: what each pinned release accepts, and the errors an operator sees.

The flag sets are generated from each release's own parser or source by
scripts/extract_engine_flags.py; these tests read the published guides' commands (the "seed"
fixtures, tests/fixtures/seeds/README.md) and known breakages against
them. Re-deriving the modules needs the release artifacts (PyPI), so that test skips without them.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from metalserve.catalog.pins import ENGINE_PINS
from metalserve.engines import LlamaCppSettings, SglangSettings, VllmSettings, flagsets
from metalserve.engines.flagsets import (
    KNOWN_REPLACEMENTS,
    check_argv,
    deprecation_notes,
    flagset,
    pinned_flagset,
    pinned_versions,
    scan_argv,
)
from metalserve.errors import PlanError

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "tests" / "fixtures" / "seeds"  # verbatim copies of the guides' commands
SCRIPT = REPO / "scripts" / "extract_engine_flags.py"

VLLM = flagset("vllm", "0.33.0")
SGLANG = flagset("sglang", "0.5.23")
LLAMACPP = flagset("llamacpp", "0c1e57098")

# What each guide's launcher is followed by; the launcher itself is not the engine's argv.
LAUNCHERS = {
    "vllm serve": VLLM,
    "python -m sglang.launch_server": SGLANG,
    "llama-server": LLAMACPP,
}


def _shell_commands(text: str) -> list[tuple[str, list[str]]]:
    """(launcher, argv) of every engine command written as a shell block in a guide."""
    commands = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        launcher = next((k for k in LAUNCHERS if k in line), None)
        if launcher is None or not line.rstrip().endswith("\\"):
            continue
        block = [line.rstrip()[:-1]]
        for more in lines[n + 1 :]:
            block.append(more.rstrip().removesuffix("\\"))
            if not more.rstrip().endswith("\\"):
                break
        words = shlex.split(" ".join(block))
        start = next(i for i, w in enumerate(words) if w.endswith(launcher.split()[-1]))
        commands.append((launcher, words[start + 1 :]))
    return commands


def _python_list_commands(text: str) -> list[tuple[str, list[str]]]:
    """(launcher, argv) of a ``cmd = ["vllm", "serve", ...]`` list in a guide."""
    commands = []
    for match in re.finditer(r"cmd = (\[.*?\])", text, re.S):
        with warnings.catch_warnings():
            # the Modal post (004) writes '\{' inside a Python string; Python keeps the backslash.
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            words = ast.literal_eval(match.group(1))
        if words[:2] == ["vllm", "serve"]:
            commands.append(("vllm serve", words[2:]))
    return commands


def seed_commands() -> list[tuple[str, str, list[str]]]:
    if not SEEDS.is_dir():
        return []
    found = []
    for seed in sorted(SEEDS.glob("*.txt")):
        text = seed.read_text()
        for launcher, argv in _shell_commands(text) + _python_list_commands(text):
            found.append((seed.name[:3], launcher, argv))
    return found


SEED_COMMANDS = seed_commands()


def test_the_seeds_hold_the_five_engine_commands():
    if not SEEDS.is_dir():
        pytest.skip(f"no seeds at {SEEDS}")
    found = sorted((seed, launcher) for seed, launcher, _ in SEED_COMMANDS)
    assert found == [
        ("000", "llama-server"),
        ("000", "python -m sglang.launch_server"),
        ("000", "vllm serve"),
        ("003", "vllm serve"),
        ("004", "vllm serve"),
    ]


@pytest.mark.parametrize(
    ("seed", "launcher", "argv"),
    SEED_COMMANDS,
    ids=[f"{s}-{launcher.split()[-1]}" for s, launcher, _ in SEED_COMMANDS],
)
def test_every_seed_command_uses_only_flags_its_pinned_release_has(seed, launcher, argv):
    fs = LAUNCHERS[launcher]
    check_argv(fs, argv)
    used = scan_argv(fs, argv)
    assert len(used) >= 6, f"seed {seed}: expected a full command, read {used}"


def test_seed_004_vllm_command_reads_flag_by_flag():
    argv = next(a for s, launcher, a in SEED_COMMANDS if s == "004") if SEED_COMMANDS else None
    if argv is None:
        pytest.skip(f"no guide commands at {SEEDS}")
    used = {u.option: u.values for u in scan_argv(VLLM, argv)}
    assert used["--kv-cache-dtype"] == ("fp8",)
    assert used["--safetensors-load-strategy"] == ("prefetch",)
    assert used["--enforce-eager"] == ()
    assert used["--served-model-name"] == ("glm-5.2-fp8",)


# --- removed and renamed flags -------------------------------------------------------------


def test_llamacpp_mlock_is_removed_and_the_error_names_load_mode():
    with pytest.raises(PlanError) as err:
        check_argv(LLAMACPP, ["-m", "glm.gguf", "--mlock"])
    assert str(err.value) == "llama.cpp 0c1e57098 removed --mlock; use --load-mode mlock"


def test_llamacpp_no_mmap_is_removed_and_load_mode_none_replaces_it():
    with pytest.raises(PlanError, match=r"removed --no-mmap; use --load-mode none$"):
        check_argv(LLAMACPP, ["-m", "glm.gguf", "--no-mmap"])


@pytest.mark.parametrize(("engine_option", "replacement"), KNOWN_REPLACEMENTS.items())
def test_every_known_replacement_is_valid_in_the_pinned_release(engine_option, replacement):
    engine, option = engine_option
    for version in pinned_versions(engine):
        fs = flagset(engine, version)
        assert option not in fs.options, f"{fs.label} still has {option}: drop the replacement"
        check_argv(fs, shlex.split(replacement.use))


def test_llamacpp_bare_fa_swallows_the_next_flag_and_says_so():
    with pytest.raises(PlanError) as err:
        check_argv(LLAMACPP, ["-m", "glm.gguf", "-fa", "--port", "8000"])
    message = str(err.value)
    assert message.startswith("llama.cpp 0c1e57098 -fa takes a value (")
    assert "followed by --port" in message
    assert "\n" not in message


def test_llamacpp_fa_with_a_value_passes_and_a_trailing_fa_fails():
    check_argv(LLAMACPP, ["-m", "glm.gguf", "-fa", "on", "--port", "8000"])
    with pytest.raises(PlanError, match="-fa needs 1 value but is the last argument"):
        check_argv(LLAMACPP, ["-m", "glm.gguf", "-fa"])


def test_llamacpp_flags_the_source_marks_removed_fail_with_the_sources_advice():
    with pytest.raises(PlanError) as err:
        check_argv(LLAMACPP, ["--draft-max", "16"])
    assert str(err.value) == (
        "llama.cpp 0c1e57098 removed --draft-max: use --spec-draft-n-max or --spec-ngram-mod-n-max"
    )


def test_sglang_has_no_plain_fp8_kv_cache_dtype():
    with pytest.raises(PlanError) as err:
        check_argv(SGLANG, ["--model-path", "m", "--kv-cache-dtype", "fp8"])
    message = str(err.value)
    assert message.startswith("SGLang 0.5.23 --kv-cache-dtype has no value 'fp8' (valid: auto, ")
    assert "fp8_e4m3" in message and "fp8_e5m2" in message
    assert message.endswith("; did you mean fp8_e4m3 or fp8_e5m2?")


def test_sglang_enable_dp_attention_is_accepted_with_a_deprecation_note():
    argv = ["--model-path", "m", "--dp-size", "8", "--enable-dp-attention"]
    check_argv(SGLANG, argv)
    assert deprecation_notes(SGLANG, argv) == [
        "SGLang 0.5.23 marks --enable-dp-attention deprecated: use --attn-dp-size <dp-size> instead"
    ]
    with pytest.raises(PlanError, match="--enable-dp-attention deprecated"):
        check_argv(SGLANG, argv, allow_deprecated=False)


def test_a_flag_of_another_engine_is_an_error():
    with pytest.raises(PlanError, match=r"^vLLM 0\.33\.0 has no flag --mem-fraction-static"):
        check_argv(VLLM, ["m", "--mem-fraction-static", "0.9"])
    with pytest.raises(PlanError, match=r"^SGLang 0\.5\.23 has no flag --gpu-memory-utilization"):
        check_argv(SGLANG, ["--gpu-memory-utilization", "0.9"])


# --- typos and values ----------------------------------------------------------------------


def test_a_typo_gets_the_nearest_real_flag():
    with pytest.raises(PlanError) as err:
        check_argv(VLLM, ["m", "--tensor-paralel-size", "8"])
    assert str(err.value) == (
        "vLLM 0.33.0 has no flag --tensor-paralel-size; did you mean --tensor-parallel-size?"
    )


def test_nothing_close_gets_no_suggestion():
    with pytest.raises(PlanError) as err:
        check_argv(VLLM, ["m", "--zzzz-qqqq"])
    assert str(err.value) == "vLLM 0.33.0 has no flag --zzzz-qqqq"


def test_vllm_parser_names_come_from_its_registries():
    check_argv(VLLM, ["m", "--reasoning-parser", "glm45", "--tool-call-parser", "glm47"])
    with pytest.raises(PlanError, match="--kv-cache-dtype has no value 'fp9'"):
        check_argv(VLLM, ["m", "--kv-cache-dtype", "fp9"])
    with pytest.raises(PlanError, match="--tool-call-parser has no value 'glm99'"):
        check_argv(VLLM, ["m", "--tool-call-parser", "glm99"])
    assert {"lazy", "eager", "prefetch", "torchao"} == VLLM.choices["--safetensors-load-strategy"]


def test_sglang_glm_parsers_and_speculative_algorithms():
    check_argv(SGLANG, ["--reasoning-parser", "glm45", "--tool-call-parser", "glm47"])
    with pytest.raises(PlanError, match="--reasoning-parser has no value 'glm47'"):
        check_argv(SGLANG, ["--reasoning-parser", "glm47"])
    # SpeculativeAlgorithm.from_string upper-cases the name; NEXTN is an alias of EAGLE.
    check_argv(SGLANG, ["--speculative-algorithm", "eagle", "--speculative-num-steps", "3"])
    check_argv(SGLANG, ["--speculative-algorithm", "NEXTN"])
    with pytest.raises(PlanError, match="--speculative-algorithm has no value 'MEDUSA'"):
        check_argv(SGLANG, ["--speculative-algorithm", "MEDUSA"])


def test_llamacpp_value_lists_read_from_arg_cpp():
    assert LLAMACPP.choices["-ctk"] == {
        "f32",
        "f16",
        "bf16",
        "q8_0",
        "q4_0",
        "q4_1",
        "iq4_nl",
        "q5_0",
        "q5_1",
    }
    assert LLAMACPP.choices["--split-mode"] == {"none", "layer", "row", "tensor"}
    assert LLAMACPP.choices["-lm"] == {"auto", "none", "mmap", "mlock", "mmap+mlock", "dio"}
    assert {"on", "off", "auto"} <= LLAMACPP.choices["--flash-attn"]


def test_takes_value_follows_each_parser():
    assert VLLM.takes_value("-tp") and not VLLM.takes_value("--enable-prefix-caching")
    assert VLLM.nargs["--served-model-name"] == "+"
    assert SGLANG.takes_value("--served-model-name") and SGLANG.nargs["--api-key"] == "1"
    assert LLAMACPP.takes_value("-fa") and not LLAMACPP.takes_value("--jinja")
    with pytest.raises(PlanError, match="has no flag --nope"):
        VLLM.takes_value("--nope")


def test_vllm_spellings_its_flexible_parser_accepts():
    check_argv(VLLM, ["m", "--max_model_len", "4096", "--port=8000", "--no-enable-prefix-caching"])
    check_argv(VLLM, ["m", "--compilation-config.mode", "3", "--optimization-level", "3"])
    with pytest.raises(PlanError, match="--enforce-eager takes no value"):
        check_argv(VLLM, ["m", "--enforce-eager=1"])


def test_sglang_does_not_read_underscores_as_dashes():
    with pytest.raises(PlanError, match="has no flag --tp_size; did you mean --tp-size"):
        check_argv(SGLANG, ["--tp_size", "8"])


def test_positional_arguments_are_counted():
    check_argv(VLLM, ["zai-org/GLM-5.2-FP8", "-tp", "8"])
    with pytest.raises(PlanError, match="takes 1 positional argument"):
        check_argv(VLLM, ["zai-org/GLM-5.2-FP8", "extra"])
    with pytest.raises(PlanError, match="takes 0 positional argument"):
        check_argv(SGLANG, ["zai-org/GLM-5.2-FP8"])


def test_a_valued_argparse_flag_followed_by_a_flag_is_an_error():
    with pytest.raises(PlanError, match="--port needs 1 value but is followed by --host"):
        check_argv(SGLANG, ["--port", "--host", "0.0.0.0"])
    with pytest.raises(PlanError, match="--served-model-name needs at least one value"):
        check_argv(VLLM, ["m", "--served-model-name", "--port", "1"])


def test_an_unknown_version_lists_the_pinned_ones():
    with pytest.raises(PlanError) as err:
        flagset("vllm", "0.10.0")
    assert str(err.value).startswith("vLLM 0.10.0 has no flag set (pinned: 0.33.0)")
    with pytest.raises(PlanError, match=r"^SGLang 0\.4\.0 has no flag set \(pinned: 0\.5\.23\)"):
        flagset("sglang", "0.4.0")


def test_flag_counts_match_the_parsers_seen_by_hand():
    # vLLM 0.33.0 (pip --no-deps, CPU torch, VLLM_TARGET_DEVICE=cpu): `vllm serve --help=all`
    # listed 435 option strings; the parser also
    # registers 50 hidden --no-X spellings, and -h/--help is left out here: 435 + 50 - 2.
    assert len(VLLM.options) == 483
    assert "--no-enable-expert-parallel" in VLLM.options
    # SGLang 0.5.23 (pip --no-deps, CPU torch): ServerArgs.add_cli_args(argparse.ArgumentParser())
    # produced 532 actions; they carry 561 option
    # strings, less -h/--help.
    assert len(SGLANG.options) == 559
    assert len(LLAMACPP.options) == 412


def test_each_engine_pin_has_its_flag_set():
    for engine, pin in ENGINE_PINS.items():
        assert pinned_flagset(engine).version == pin.version  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "engine"),
    [(VllmSettings, "vllm"), (SglangSettings, "sglang"), (LlamaCppSettings, "llamacpp")],
)
def test_every_flag_the_command_builders_can_write_exists_in_the_pinned_release(settings, engine):
    fs = pinned_flagset(engine)
    written = set()
    for field in settings.model_fields.values():
        meta = field.json_schema_extra
        if isinstance(meta, dict):
            written |= {str(meta[k]) for k in ("flag", "negative") if k in meta}
    assert written, f"{settings.__name__} declares no flags"
    assert sorted(written - fs.options) == []


# --- the generated modules and the script ----------------------------------------------------

GENERATED = sorted(
    p for p in (REPO / "metalserve" / "engines" / "flagsets").glob("*.py") if p.stem != "__init__"
)


@pytest.mark.parametrize("module", GENERATED, ids=[p.stem for p in GENERATED])
def test_generated_modules_name_their_artifact_and_checksum(module):
    text = module.read_text()
    header = re.search(
        r"generated by scripts/extract_engine_flags\.py from (\S+) sha256:([0-9a-f]{64}); do not edit",
        text,
    )
    assert header, f"{module.name}: header missing"
    loaded = importlib.import_module(f"{flagsets.__name__}.{module.stem}")
    named = f"{header.group(1)} sha256:{header.group(2)}"
    assert named == loaded.SOURCE
    assert flagset(loaded.ENGINE, loaded.VERSION).source == loaded.SOURCE


def _load_script():
    spec = importlib.util.spec_from_file_location("extract_engine_flags", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EXTRACT = _load_script()


def test_every_release_the_script_pins_has_a_module():
    for release in EXTRACT.RELEASES:
        assert (REPO / "metalserve" / "engines" / "flagsets" / f"{release.module_name}.py").exists()
        assert release.version in pinned_versions(release.engine)


ARG_CPP_SNIPPET = r"""
bool common_arg_utils::is_truthy(const std::string & value) {
    return value == "on" || value == "1";
}
const std::vector<ggml_type> kv_cache_types = { GGML_TYPE_F16, GGML_TYPE_Q8_0, };
common_params_context common_params_parser_init(common_params & params, llama_example ex) {
    add_opt(common_arg(
        {"-x", "--example"}, "[on|off]", "help, with (parens) and a \"quote\"",
        [](common_params & params, const std::string & value) {
            if (is_truthy(value)) { params.x = 1; }
            else if (value == "off") { params.x = 0; }
            else { throw std::invalid_argument("bad"); }
        }
    ).set_env("LLAMA_ARG_X"));
    add_opt(common_arg(
        {"-cb", "--cont-batching"}, {"-nocb", "--no-cont-batching"},
        "continuous batching", // a comment with add_opt(common_arg(
        [](common_params & params, bool value) { params.cb = value; }
    ));
    add_opt(common_arg(
        {"-ctk"}, "TYPE", "cache type",
        [](common_params & params, const std::string & value) {
            params.k = kv_cache_type_from_str(value);
        }
    ));
    add_opt(common_arg(
        {"-p", "--prompt"}, "PROMPT", "not for the server",
        [](common_params & params, const std::string & value) { params.prompt = value; }
    ).set_excludes({LLAMA_EXAMPLE_SERVER}));
    add_opt(common_arg(
        {"--old"}, "N", "gone",
        [](common_params &, int) { arg_removed("use --new"); }
    ).set_examples({LLAMA_EXAMPLE_SERVER}));
    return ctx_arg;
}
"""
GGML_C_SNIPPET = """
    [GGML_TYPE_F16] = { .type_name = "f16", },
    [GGML_TYPE_Q8_0] = { .type_name = "q8_0", },
"""


def test_arg_cpp_reader_on_a_small_tree(monkeypatch):
    monkeypatch.setattr(EXTRACT, "LLAMACPP_REQUIRED_CHOICES", ("-x", "-ctk"))
    table = EXTRACT.table_from_arg_cpp(ARG_CPP_SNIPPET, GGML_C_SNIPPET)
    assert table.options == {
        "-x": "1",
        "--example": "1",
        "-cb": "0",
        "--cont-batching": "0",
        "-nocb": "0",
        "--no-cont-batching": "0",
        "-ctk": "1",
        "--old": "1",
    }
    assert table.choices["--example"] == ["1", "off", "on"]
    assert table.choices["-ctk"] == ["f16", "q8_0"]
    assert table.removed == {"--old": "use --new"}


def _cached(release) -> bool:
    if EXTRACT.find_artifact(release, EXTRACT.DEFAULT_CACHE) is None:
        return False
    if release.engine == "llamacpp":
        return True
    venv = EXTRACT.DEFAULT_VENVS / f"{release.engine}-{release.version}"
    return (venv / ".metalserve-ready").exists()


@pytest.mark.parametrize("release", EXTRACT.RELEASES, ids=lambda r: r.module_name)
def test_check_mode_rederives_each_module_byte_for_byte(release):
    if not _cached(release):
        pytest.skip(
            f"{release.requirement} not cached in {EXTRACT.DEFAULT_CACHE}: run"
            f" scripts/extract_engine_flags.py -e {release.engine} once online"
        )
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--offline", "-e", release.engine],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"same: {release.module_name}.py")
