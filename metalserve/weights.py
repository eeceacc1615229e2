"""Which files of a checkpoint repository a host fetches, and how the fetch runs.

Decided here, carried out by ``roles.weights`` (``files/fetch_weights.py`` in a transient systemd
unit started at the beginning of the serve deploy, waited for before the GGUF conversion and the
engine need the files):

* ``allow_patterns`` / ``ignore_patterns``, matched as ``huggingface_hub.snapshot_download``
  matches them: with ``fnmatch`` against each file's path in the repo (``utils/_paths.py
  filter_repo_objects``: ``*`` crosses ``/``). A safetensors checkpoint: its shards, their index, the config, tokenizer and
  remote-code files — not the ``*.bin``/``*.pth`` twins or ``original/`` copies some repos also
  carry. A GGUF repository: the one chosen file, or every split of it;
* the unit's name, one per repo, revision and folder, so a re-run finds the download it started;
* how many files download at once.

Example::

    allow_patterns(WeightFormat.SAFETENSORS)   # ('*.safetensors', '*.safetensors.index.json', ...)
    gguf_patterns("Q4_K_M/GLM-5.2-Q4_K_M-00001-of-00005.gguf")
    # ('Q4_K_M/GLM-5.2-Q4_K_M-[0-9][0-9][0-9][0-9][0-9]-of-00005.gguf',)
"""

from __future__ import annotations

import hashlib
import re

from metalserve.checkpoint import WeightFormat
from metalserve.gguf import GGUF_SPLIT, split_path

SAFETENSORS_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",  # config.json, generation_config.json, tokenizer.json, tokenizer_config.json, ...
    "*.py",  # configuration_*.py / modeling_*.py read with --trust-remote-code
    "*.jinja",  # chat_template.jinja
    "*.txt",  # merges.txt, vocab.txt
    "*.tiktoken",
    "tokenizer.model",
)
"""What a safetensors checkpoint is served and converted from (vLLM's loader takes ``*.safetensors``
and the index; transformers' ``AutoConfig``/``AutoTokenizer`` read the small files)."""

SAFETENSORS_IGNORED = ("original/*",)
"""Copies of the weights in another layout (Meta's ``original/consolidated.*.pth`` and params);
vLLM leaves them out the same way (``DEFAULT_IGNORE_PATTERNS`` / ``original/**/*``)."""

DOWNLOAD_WORKERS = 16
"""Files fetched at once, at most (as ``snapshot_download(max_workers=)``, 8 by default in
huggingface_hub 2.4): the fetcher downloads each in a process of its own
(``fetch_weights.download_processes``; through ``hf_hub_download``, behind a proxy, no more of them
than the host's CPUs, as a Python download keeps one core busy). Each is one stream, so a fast
link wants more of them; 16 per host keeps a 4-node cluster within a ``metalserve mirror serve``
(32 workers and 32 waiting by default)."""

PROGRESS_EVERY_S = 10
"""How often the download reports its bytes, total and rate (journal, progress file, deploy)."""

STALL_S = 900
"""A download whose bytes have not grown for this long is taken as stuck and fails the deploy."""


def allow_patterns(fmt: WeightFormat, gguf_file: str | None = None) -> tuple[str, ...]:
    """The files of the repo the host needs, as ``snapshot_download(allow_patterns=)``."""
    if fmt is WeightFormat.GGUF:
        if gguf_file is None:
            raise ValueError("a GGUF repository needs the file to fetch (model.gguf_file)")
        return gguf_patterns(gguf_file)
    return SAFETENSORS_PATTERNS


def ignore_patterns(fmt: WeightFormat) -> tuple[str, ...]:
    return () if fmt is WeightFormat.GGUF else SAFETENSORS_IGNORED


def gguf_patterns(gguf_file: str) -> tuple[str, ...]:
    """The chosen GGUF, or every part of it when it is the first of a split."""
    split = GGUF_SPLIT.fullmatch(gguf_file)
    if split is None:
        return (gguf_file,)
    if int(split["index"]) != 1:
        first = split_path(split["prefix"], 1, int(split["count"]))
        raise ValueError(f"llama-server is given the first part of a split GGUF, i.e. {first}")
    return (f"{split['prefix']}-{'[0-9]' * 5}-of-{split['count']}.gguf",)


def quant_problem(gguf_file: str, quant: str) -> str | None:
    """The chosen file must be the checkpoint's quantization: its name carries the type as the
    GGUF repositories write it (``Q4_K_M``), whatever the case."""
    name = gguf_file.rsplit("/", 1)[-1].upper()
    if re.search(rf"(?<![A-Z0-9]){re.escape(quant.upper())}(?![A-Z0-9])", name) is None:
        return f"a {quant.upper()} file (the checkpoint's quantization)"
    return None


def unit_name(repo_id: str, revision: str, local_dir: str) -> str:
    """The transient unit of one download: a re-run finds it by name (running, failed or gone)."""
    digest = hashlib.sha256(f"{repo_id}@{revision}:{local_dir}".encode()).hexdigest()[:12]
    return f"metalserve-weights-{digest}"
