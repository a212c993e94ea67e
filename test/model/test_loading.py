"""Checkpoint problems give ModelError subclasses that name the file and the keys."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ov2_ros.errors import Ov2Error
from ov2_ros.model import (CheckpointKeyError, CheckpointNotFoundError, CorruptCheckpointError, ProcessorError,
                           WrongModelTypeError, load_model, load_tokenizer)
from ov2_ros.model.loading import build_tiny_random, default_dtype


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    build_tiny_random().save_pretrained(path)
    return path


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="not found") as info:
        load_model(str(tmp_path / "nope"))
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, Ov2Error)


def test_missing_weights(tmp_path, saved):
    (tmp_path / "config.json").write_text((saved / "config.json").read_text())
    with pytest.raises(CheckpointNotFoundError, match="model.safetensors"):
        load_model(str(tmp_path))


def test_missing_config(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="config.json"):
        load_model(str(tmp_path))


def test_wrong_model_type(tmp_path, saved):
    raw = json.loads((saved / "config.json").read_text())
    raw["model_type"] = "qwen2_vl"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WrongModelTypeError, match="qwen2_vl"):
        load_model(str(tmp_path))


def test_corrupt_safetensors(tmp_path, saved):
    (tmp_path / "config.json").write_text((saved / "config.json").read_text())
    data = (saved / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 16 + data[16:4096])
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        load_model(str(tmp_path))


def test_missing_and_unexpected_keys_are_listed(tmp_path, saved):
    (tmp_path / "config.json").write_text((saved / "config.json").read_text())
    state = build_tiny_random().state_dict()
    state.pop("lm_head.weight")
    state["model.visual.head.probe"] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointKeyError) as info:
        load_model(str(tmp_path))
    msg = str(info.value)
    assert "1 missing" in msg and "lm_head.weight" in msg and "model.visual.head.probe" in msg
    assert str(tmp_path) in msg


def test_wrong_shape_is_reported(tmp_path, saved):
    (tmp_path / "config.json").write_text((saved / "config.json").read_text())
    state = build_tiny_random().state_dict()
    state["model.visual.merger.ln_q.weight"] = torch.zeros(3)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointKeyError, match="ln_q.weight.*wrong shape|wrong shape.*ln_q.weight"):
        load_model(str(tmp_path))


def test_uncached_hub_id_does_not_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError, match="local Hugging Face cache"):
        load_model("someone/not-a-cached-model")


def test_cpu_dtype_is_float32():
    assert default_dtype("cpu") == torch.float32
    assert next(load_model("tiny-random").parameters()).dtype == torch.float32


def test_placeholder_count_mismatch_is_a_processor_error(windows):
    model = build_tiny_random()
    from ov2_ros.model.processor import prepare_inputs

    inputs = prepare_inputs(windows[0], "hi", load_tokenizer())
    kwargs = inputs.as_kwargs()
    ids = kwargs["input_ids"][0]
    first_pad = int((ids == model.config.image_token_id).nonzero()[0])
    kwargs["input_ids"] = torch.cat([ids[:first_pad], ids[first_pad + 1:]])[None]   # one placeholder short
    with pytest.raises(ProcessorError, match="placeholder"):
        model(**kwargs)
