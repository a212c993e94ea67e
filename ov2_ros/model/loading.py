"""Load LLaVA-OV-2 weights and tokenizer: ``tiny-random`` (offline, seeded), a local directory, or an HF id.

A local directory is checked before transformers sees it, so a bad checkpoint fails with a message naming the file
and the offending keys instead of a stack trace from deep inside ``from_pretrained``:
missing dir / config / weights -> ``CheckpointNotFoundError``; wrong ``model_type`` -> ``WrongModelTypeError``;
unreadable safetensors -> ``CorruptCheckpointError``; missing, unexpected or mis-shaped keys -> ``CheckpointKeyError``.
HF ids resolve through the local HF cache; a download happens only when ``allow_download`` is set.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

# re-exported: callers load and resolve checkpoints through one module
from ov2_ros.model.checkpoints import (RELEASED_ID, TINY, TOKENIZER_SETTINGS, apply_model_tokenizer,  # noqa: F401
                                      model_tokenizer_settings, models_dir, resolve_checkpoint)
from ov2_ros.model.configuration import LlavaOnevision2Config
from ov2_ros.model.errors import (CheckpointKeyError, CheckpointNotFoundError, CorruptCheckpointError,
                                  WrongModelTypeError)
from ov2_ros.model.modeling import LlavaOnevision2ForConditionalGeneration

_LIST_AT_MOST = 5


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def read_config(model_dir: Path) -> LlavaOnevision2Config:
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise CheckpointNotFoundError(f"no config.json in {model_dir}")
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CorruptCheckpointError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if raw.get("model_type") != LlavaOnevision2Config.model_type:
        raise WrongModelTypeError(f"{cfg_path}: model_type is {raw.get('model_type')!r}, "
                                  f"expected {LlavaOnevision2Config.model_type!r}")
    return LlavaOnevision2Config.from_pretrained(model_dir)


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as exc:
            raise CorruptCheckpointError(f"{index} is not a valid safetensors index: {exc}") from exc
        files = [model_dir / n for n in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointNotFoundError(f"{model_dir}: shards listed in the index are missing: {missing}")
        return files
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise CheckpointNotFoundError(f"no model.safetensors or model.safetensors.index.json in {model_dir}")


def read_weight_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape over every shard, reading headers only."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for f in _weight_files(model_dir):
        try:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():
                    shapes[key] = tuple(fh.get_slice(key).get_shape())
        except Exception as exc:  # safetensors raises its own error type, or OSError / ValueError on bad headers
            raise CorruptCheckpointError(f"cannot read safetensors file {f}: {exc}") from exc
    return shapes


def expected_shapes(config: LlavaOnevision2Config) -> dict[str, tuple[int, ...]]:
    """The architecture's state-dict key -> shape, computed on the meta device (no memory)."""
    with torch.device("meta"):
        model = LlavaOnevision2ForConditionalGeneration(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_keys(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], where: Path) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    bad_shape = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    if not (missing or unexpected or bad_shape):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:_LIST_AT_MOST])})")
    if bad_shape:
        parts.append(f"{len(bad_shape)} with wrong shape (e.g. " + ", ".join(
            f"{k}: {found[k]} vs {expected[k]}" for k in bad_shape[:_LIST_AT_MOST]) + ")")
    raise CheckpointKeyError(f"weights in {where} do not match LlavaOnevision2: " + "; ".join(parts))


def build_tiny_random(seed: int = 0, attn_implementation: str = "eager") -> LlavaOnevision2ForConditionalGeneration:
    """The tiny architecture from ``models/tiny-random/config.json`` with weights drawn from ``seed``."""
    config = read_config(models_dir() / TINY)
    config._attn_implementation = attn_implementation
    config.vision_config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlavaOnevision2ForConditionalGeneration(config).eval()


def load_model(name_or_path: str = TINY, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
               attn_implementation: str = "eager", allow_download: bool = False,
               seed: int = 0) -> LlavaOnevision2ForConditionalGeneration:
    """The model in eval mode on ``device`` in ``dtype`` (default: bf16/fp16 on CUDA, fp32 on CPU).

    ``attn_implementation``: ``eager`` (the reference), ``sdpa``, or ``flash_attention_2`` (CUDA only).
    """
    dtype = dtype or default_dtype(device)
    if name_or_path == TINY:
        model = build_tiny_random(seed, attn_implementation)
    else:
        model_dir = resolve_checkpoint(name_or_path, allow_download)
        config = read_config(model_dir)
        check_keys(read_weight_shapes(model_dir), expected_shapes(config), model_dir)
        model = LlavaOnevision2ForConditionalGeneration.from_pretrained(
            model_dir, dtype=dtype, attn_implementation=attn_implementation)
        model.config.vision_config._attn_implementation = attn_implementation
    return model.to(device=device, dtype=dtype).eval()


def load_tokenizer(name_or_path: str = TINY, allow_download: bool = False):
    """The checkpoint's tokenizer (the tiny byte-level one for ``tiny-random``), with its chat template."""
    from transformers import AutoTokenizer

    model_dir = resolve_checkpoint(name_or_path, allow_download)
    if not (model_dir / "tokenizer.json").is_file() and not (model_dir / "tokenizer_config.json").is_file():
        raise CheckpointNotFoundError(f"no tokenizer.json / tokenizer_config.json in {model_dir}")
    return AutoTokenizer.from_pretrained(model_dir)
