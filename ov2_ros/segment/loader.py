"""Load a SAM2 video model: ``tiny-random`` (seeded, for tests), a local checkpoint directory, or a cached HF id.

Nothing is ever downloaded: HF ids are read with ``local_files_only=True``; fetch them first (see models/README.md).
"""
from __future__ import annotations

import pathlib

import torch

from ov2_ros.model.checkpoints import models_dir
from ov2_ros.segment.errors import SegmentModelError

TINY_RANDOM = "tiny-random"
DEFAULT_CHECKPOINT = "facebook/sam2.1-hiera-tiny"
TINY_RANDOM_SEED = 0
PRESENCE_BIAS = 4.0


def tiny_random_dir() -> pathlib.Path:
    return models_dir() / "sam2-tiny-random"


def resolve_shipped(model: str) -> pathlib.Path:
    """A SAM2 model shipped in models/ (``sam2-toy``) by name, else the path as given."""
    shipped = models_dir() / model
    if "/" not in model and (shipped / "config.json").is_file():
        return shipped
    return pathlib.Path(model).expanduser()


def seeded_random_model(config, seed: int = TINY_RANDOM_SEED):
    """``Sam2VideoModel`` with weights drawn from ``seed``, scaled so every path carries signal.

    The release's init (std 0.02, zero memory embeddings, 1e-6 layer scales) makes a random model ignore its memory
    bank, so objects and re-prompts would be indistinguishable in tests; fan-in scaled normals keep them apart.
    """
    from transformers import Sam2VideoModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Sam2VideoModel(config)
        with torch.no_grad():
            for name, param in net.named_parameters():
                if param.dim() >= 2:
                    param.normal_(0.0, param[0].numel() ** -0.5)
                elif name.endswith(".scale"):
                    param.fill_(1.0)
            # present by default: a random presence head calls objects absent half the time, and SAM2 then blanks
            # the mask to a constant, which would leave nothing to compare (lost state is tested via the threshold)
            net.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(PRESENCE_BIAS)
            # one random-Fourier matrix encodes image positions and prompt points (SAM2's single pe_layer; the
            # released checkpoints hold it twice, equal). Drawn apart, a point's code matches no image position,
            # and a model trained from this init learns to ignore its prompts and mask every shape.
            net.prompt_encoder.shared_embedding.positional_embedding.copy_(
                net.shared_image_embedding.positional_embedding)
    return net


def load_sam2(model=TINY_RANDOM, device: str = "cpu", dtype: torch.dtype | None = None):
    """Return ``Sam2VideoModel`` in eval mode on ``device``.

    ``model``: ``"tiny-random"`` (config from models/sam2-tiny-random, weights drawn from a fixed seed), a model
    shipped in models/ by name (``sam2-toy``, trained by ``ov2_ros.train.sam2``), a directory
    holding ``config.json`` (+ ``model.safetensors``, the released layout; without weights the seeded random init is
    used), an HF id already in the local cache, or a ``Sam2VideoModel`` instance (moved, not copied).
    """
    from transformers import Sam2VideoConfig, Sam2VideoModel

    if isinstance(model, Sam2VideoModel):
        return model.to(device=device, dtype=dtype or torch.float32).eval()

    path = tiny_random_dir() if model == TINY_RANDOM else resolve_shipped(str(model))
    try:
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise SegmentModelError(f"SAM2 model directory {path} has no config.json")
            has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
            if has_weights:
                net = Sam2VideoModel.from_pretrained(str(path))
            else:
                net = seeded_random_model(Sam2VideoConfig.from_pretrained(str(path)))
        elif model == TINY_RANDOM:
            raise SegmentModelError(f"tiny-random SAM2 config not found at {path}")
        else:
            net = Sam2VideoModel.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError) as exc:
        if isinstance(exc, SegmentModelError):
            raise
        raise SegmentModelError(
            f"cannot load SAM2 model {model!r} (looked for a directory with config.json, then the local HF cache; "
            f"nothing is downloaded: run `hf download {model}` first or pass a checkpoint directory): {exc}") from exc
    return net.to(device=device, dtype=dtype or torch.float32).eval()
