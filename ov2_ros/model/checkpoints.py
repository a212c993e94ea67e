"""Where checkpoints live and what a trained one records, without importing torch.

The pipeline asks which tokenizer settings a model was trained with before (and whether or not) the model loads,
so a tokenize-only pipeline stays free of torch and transformers.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ov2_ros.model.errors import CheckpointNotFoundError, CorruptCheckpointError

TINY = "tiny-random"
TOKENIZER_SETTINGS = "ov2_tokenizer.json"    # the TokenizerConfig fields a trained model expects (ov2-ros train)
RELEASED_ID = "lmms-lab-encoder/LLaVA-OneVision-2-8B-Instruct"


def models_dir() -> Path:
    """``models/`` of a source checkout, else the installed ``share/ov2_ros/models``."""
    here = Path(__file__).resolve().parents[2] / "models"
    return here if here.is_dir() else Path(sys.prefix) / "share" / "ov2_ros" / "models"


def resolve_checkpoint(name_or_path: str, allow_download: bool = False) -> Path:
    """``tiny-random`` -> its config dir; an existing or path-like name -> that dir; else an HF id (cache first)."""
    if name_or_path == TINY:
        return models_dir() / TINY
    shipped = models_dir() / name_or_path
    if "/" not in name_or_path and (shipped / "config.json").is_file():
        return shipped                       # a model shipped in models/ (ov2-toy), selectable by name
    path = Path(name_or_path).expanduser()
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        if not path.is_dir():
            raise CheckpointNotFoundError(f"model directory not found: {path}")
        return path
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(name_or_path, local_files_only=not allow_download))
    except Exception as exc:  # hub raises several unrelated types for "not cached" / offline
        raise CheckpointNotFoundError(
            f"model {name_or_path!r} is neither a local directory nor in the local Hugging Face cache "
            f"(download it first, or load with allow_download=True): {exc}") from exc


def model_tokenizer_settings(name_or_path: str) -> dict:
    """The tokenizer settings a trained model records (``ov2_tokenizer.json``), {} when it records none."""
    try:
        model_dir = resolve_checkpoint(name_or_path)
    except CheckpointNotFoundError:
        return {}
    path = model_dir / TOKENIZER_SETTINGS
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text())["tokenizer"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CorruptCheckpointError(f"{path} is not a valid tokenizer-settings file: {exc}") from exc


def apply_model_tokenizer(config, name_or_path: str):
    """``config`` (a TokenizerConfig) with the model's recorded settings in every field still at its default: a
    model trained at ``max_pixels`` 20000 runs at 20000 unless the user chose a value explicitly."""
    from dataclasses import fields, replace

    settings = model_tokenizer_settings(name_or_path)
    if not settings:
        return config
    defaults = type(config)()
    changes = {f.name: settings[f.name] for f in fields(config)
               if f.name in settings and getattr(config, f.name) == getattr(defaults, f.name)}
    return replace(config, **changes)
