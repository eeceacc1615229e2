"""Edge: read a checkpoint's ``config.json`` and safetensors index from a local directory.

The pure parsing is in ``metalserve.architecture``; this module only opens the files.
"""

from __future__ import annotations

from pathlib import Path

from metalserve.architecture import architecture_from_config, weight_bytes_from_index
from metalserve.checkpoint import Checkpoint, WeightFormat, quant_method, storage_bits_per_weight
from metalserve.errors import MetalserveError, SpecError
from metalserve.io.textfiles import missing, read_json_file, regular_file_problem
from metalserve.spec import HostSpec
from metalserve.types import printable

INDEX = "model.safetensors.index.json"


def _read_json(path: Path) -> object:
    expected = "a Hugging Face checkpoint's JSON file"
    fix = "point metalserve.model.local_dir at a Hugging Face checkpoint directory"
    if missing(path):
        raise SpecError(f"{path}: not found — is this a Hugging Face checkpoint directory?")
    try:
        return read_json_file(path, expected, fix)
    except MetalserveError as exc:
        raise SpecError(str(exc)) from None


def checkpoint_from_dir(directory: str | Path, repo_id: str | None = None) -> Checkpoint:
    """A ``Checkpoint`` for a local HF checkpoint: shape from config.json, bytes from the index
    (or the size of a single ``model.safetensors``)."""
    root = Path(directory).expanduser()
    config = _read_json(root / "config.json")
    arch = architecture_from_config(config)
    if not missing(root / INDEX):
        weight_bytes = weight_bytes_from_index(_read_json(root / INDEX))
        source = f"{root / INDEX} metadata.total_size"
    else:
        shards = sorted(root.glob("*.safetensors"))
        if not shards:
            raise SpecError(
                f"{root}: no {INDEX} and no *.safetensors — not a safetensors checkpoint"
            )
        weight_bytes = sum(s.stat().st_size for s in shards if regular_file_problem(s) is None)
        source = f"sum of {len(shards)} safetensors files in {root}"
    dtype = config.get("torch_dtype") if isinstance(config, dict) else None
    method = quant_method(config)
    return Checkpoint(
        id=repo_id or root.name,
        repo_id=repo_id,
        family=arch.model_type,
        format=WeightFormat.SAFETENSORS,
        weight_dtype=method or str(dtype or "unknown"),
        bits_per_weight=storage_bits_per_weight(config),
        quant_method=method,
        weight_bytes=weight_bytes,
        weight_bytes_source=source,
        architecture=arch,
    )


def checkpoint_for_spec(spec: HostSpec) -> Checkpoint | None:
    """The checkpoint of a spec whose model lies in a local directory; None otherwise."""
    if not spec.model.local_dir:
        return None
    try:
        return checkpoint_from_dir(spec.model.local_dir, spec.model.repo_id)
    except MetalserveError as exc:
        raise SpecError(f"host {spec.host}: metalserve.model.local_dir: {exc}") from None
    except (OSError, RuntimeError) as exc:  # a name too long, no such ~user, not readable
        found = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(
            f"host {spec.host}: metalserve.model.local_dir: expected a readable checkpoint "
            f"directory, found {printable(found.lower())} — fix: point it at one"
        ) from None
