"""The tiny MoE checkpoint looks like a real Mixtral repo and is the same for the same seed."""

from __future__ import annotations

import json

import sentencepiece
from safetensors import safe_open

from metalserve.artefacts.tinymodel import TinyMoeShape, tiny_moe_checkpoint, train_tokenizer


def test_it_has_the_files_of_a_hub_repo() -> None:
    checkpoint = tiny_moe_checkpoint(seed=0)
    assert set(checkpoint.files) >= {
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer.model",
        "tokenizer_config.json",
    }


def test_config_is_a_mixtral_moe_with_k_quant_friendly_sizes() -> None:
    config = json.loads((tiny_moe_checkpoint(seed=0).path / "config.json").read_text())
    assert config["architectures"] == ["MixtralForCausalLM"]
    assert config["hidden_size"] % 256 == 0
    assert config["intermediate_size"] % 256 == 0
    assert (config["num_local_experts"], config["num_experts_per_tok"]) == (4, 2)
    assert config["num_hidden_layers"] == 2


def test_the_index_total_size_is_the_bytes_of_every_tensor() -> None:
    checkpoint = tiny_moe_checkpoint(seed=0)
    index = json.loads((checkpoint.path / "model.safetensors.index.json").read_text())
    total = 0
    seen: set[str] = set()
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(checkpoint.path / shard), framework="numpy") as tensors:
            for name in tensors.keys():  # noqa: SIM118 - safe_open is not a mapping
                assert index["weight_map"][name] == shard
                total += tensors.get_tensor(name).nbytes
                seen.add(name)
    assert index["metadata"]["total_size"] == total == checkpoint.total_size
    assert seen == set(index["weight_map"])
    assert "model.layers.1.block_sparse_moe.experts.3.w2.weight" in seen


def test_the_tokenizer_is_real_and_matches_the_config_vocab() -> None:
    checkpoint = tiny_moe_checkpoint(seed=0)
    config = json.loads((checkpoint.path / "config.json").read_text())
    tokenizer = sentencepiece.SentencePieceProcessor(
        model_file=str(checkpoint.path / "tokenizer.model")
    )
    assert tokenizer.get_piece_size() == config["vocab_size"]
    assert (tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.unk_id()) == (1, 2, 0)
    text = "The server answers health checks. Ünïcode falls back to bytes."
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    first = tiny_moe_checkpoint(seed=0)
    monkeypatch.setenv("METALSERVE_CACHE", str(tmp_path / "other-cache"))
    again = tiny_moe_checkpoint(seed=0)
    other = tiny_moe_checkpoint(seed=1)

    def shard_bytes(checkpoint) -> bytes:  # type: ignore[no-untyped-def]
        return (checkpoint.path / "model-00001-of-00002.safetensors").read_bytes()

    assert again.path != first.path.parent.parent
    assert shard_bytes(first) == shard_bytes(again)
    assert shard_bytes(first) != shard_bytes(other)
    assert (first.path / "tokenizer.model").read_bytes() == (
        other.path / "tokenizer.model"
    ).read_bytes()


def test_tokenizer_training_is_deterministic() -> None:
    assert train_tokenizer(TinyMoeShape().vocab_size) == train_tokenizer(TinyMoeShape().vocab_size)
