"""Pixel and coordinate conversions between source frames and SAM2's square input, without torchvision.

SAM2 sees the frame stretched to ``image_size`` x ``image_size`` (no letterbox), rescaled to [0, 1] and normalised
with the ImageNet mean/std, as the released image processor does; points scale by the same per-axis factors.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frame_to_pixel_values(rgb: np.ndarray, image_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, image_size, image_size) normalised float (antialiased bilinear resize)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x / 255.0 - mean) / std)[0].to(dtype)


def points_to_model(points_xy: np.ndarray, source_hw: tuple[int, int], image_size: int) -> torch.Tensor:
    """(N, 2) source pixels -> (1, 1, N, 2) float32 in SAM2 input pixels (the layout the session stores)."""
    h, w = source_hw
    scale = np.array([image_size / w, image_size / h], dtype=np.float32)
    return torch.from_numpy(points_xy.astype(np.float32) * scale)[None, None]


def masks_to_source(mask_logits: torch.Tensor, source_hw: tuple[int, int]) -> np.ndarray:
    """(num_obj, 1, h, w) low-res logits -> (num_obj, H, W) bool at source resolution (logit > 0)."""
    up = F.interpolate(mask_logits.float(), size=source_hw, mode="bilinear", align_corners=False)
    return (up[:, 0] > 0).cpu().numpy()


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight (x0, y0, x1, y1) box of a bool mask, x1/y1 exclusive; None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
