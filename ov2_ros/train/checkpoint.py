"""Atomic model folders and resumable checkpoints.

Everything is written into a sibling temporary folder and moved into place with one ``os.replace``: a full disk or
an interrupted run leaves the previous checkpoint (or nothing), never a half-written one. The model folder is the
HF layout ``ov2_ros.model.loading`` reads, plus ``ov2_tokenizer.json``: the ``TokenizerConfig`` fields the model
was trained with, which the node, replay and demo apply when that model is chosen.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from ov2_ros.codec.types import TokenizerConfig
from ov2_ros.model.loading import TOKENIZER_SETTINGS
from ov2_ros.train.errors import CheckpointWriteError

RUNTIME_ONLY = ("decoder_threads", "thread_count")     # how the decoder runs, not what the model sees


def atomic_dir(final: Path, write) -> Path:
    """Run ``write(tmp_dir)`` then move ``tmp_dir`` to ``final`` (replacing it); on any OSError nothing is left."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    old = final.with_name(f".{final.name}.old")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, SafetensorError) as exc:          # safetensors reports I/O errors as its own type
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        why = getattr(exc, "strerror", None) or exc
        raise CheckpointWriteError(f"cannot write {final}: {why} (nothing was left half-written)") from exc
    return final


def tokenizer_settings(config: TokenizerConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in RUNTIME_ONLY}


def save_model(model, tokenizer, out: Path, tokenizer_config: TokenizerConfig, extra: dict | None = None) -> Path:
    """The HF folder (config.json, model.safetensors, tokenizer files) + the tokenizer settings, atomically."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        doc = {"tokenizer": tokenizer_settings(tokenizer_config), **(extra or {})}
        (tmp / TOKENIZER_SETTINGS).write_text(json.dumps(doc, indent=2) + "\n")
    return atomic_dir(out, write)


def save_checkpoint(ckpt: Path, model, tokenizer, tokenizer_config: TokenizerConfig, aux_head, optimizer,
                    state: dict) -> Path:
    """Model folder + aux head + optimizer + loop state (step, losses, RNG), atomically."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / TOKENIZER_SETTINGS).write_text(json.dumps({"tokenizer": tokenizer_settings(tokenizer_config)}))
        torch.save({"optimizer": optimizer.state_dict(),
                    "aux_head": aux_head.state_dict() if aux_head is not None else None,
                    "torch_rng": torch.get_rng_state()}, tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps(state))
    return atomic_dir(ckpt, write)


def load_checkpoint_state(ckpt: Path) -> tuple[dict, dict] | None:
    """(state.json, trainer.pt contents) of a complete checkpoint, or None if there is none."""
    if not (ckpt / "state.json").is_file() or not (ckpt / "trainer.pt").is_file():
        return None
    return json.loads((ckpt / "state.json").read_text()), torch.load(ckpt / "trainer.pt", weights_only=False)
