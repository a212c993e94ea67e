"""CodecWindow (or uniform frames) -> model inputs exactly as the released LLaVA-OV-2 expects.

- Pixels: each canvas is cut into 14-px patches in 2x2-block order (``ov2_ros.codec.packing.patchify``, the
  layout the canvases and their ``positions`` already follow), scaled to [0, 1] and normalised with the CLIP
  mean/std of the release's Qwen2-VL image processor; rows are flattened channel-first, (C, p, p), as that
  processor does with ``temporal_patch_size = 1``.
- ``video_grid_thw`` = [[N canvases, H/p, W/p]], so the vision tower's ``frame_windows_size`` windows are the
  codec groups (4 canvases each by default).
- ``patch_positions``: the window's (t, h, w) rows, ``t`` the absolute source frame index. The release's video
  processor feeds the real frame index of the source video as ``t`` too, and the prompt's ``<t seconds>`` tags
  are seconds since the start of the source, so absolute indices / seconds since stream start keep both
  conventions. It also keeps a group's positions fixed while the window slides, so its ViT output can be cached.
- Prompt: the merged tokens are walked in order; each run of tokens from the same source frame becomes
  ``<{t:.1f} seconds><|vision_start|><|video_pad|>*n<|vision_end|>``. Padding tokens (t = -1) join the run
  before them (or the first run), so every vision token sits in exactly one run and counts match the features.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ov2_ros.codec.packing import CanvasGrid, pack_frame, patchify
from ov2_ros.codec.types import Canvas, CodecWindow, FrameGroup
from ov2_ros.model.errors import ProcessorError

# OpenAI CLIP statistics, the defaults of the Qwen2-VL image processor the release ships.
IMAGE_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
IMAGE_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

VISION_START, VISION_END, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"


@dataclass(frozen=True)
class VisionInputs:
    """Vision-tower inputs of one window.

    ``pixel_values_videos`` (P, 3 * p * p) float32; ``video_grid_thw`` (1, 3) int64; ``patch_positions`` (P, 3)
    int64; ``token_frames`` (P / 4,) int64: source frame of each merged token (-1 for padding).
    """

    pixel_values_videos: torch.Tensor
    video_grid_thw: torch.Tensor
    patch_positions: torch.Tensor
    token_frames: np.ndarray


@dataclass(frozen=True)
class ModelInputs:
    """Everything ``forward`` needs for one query: ``input_ids``/``attention_mask`` (1, L) and, computed on first
    use, the window's vision inputs (the runtime's per-window cache patchifies only the windows it misses)."""

    window: CodecWindow
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt: str

    @cached_property
    def vision(self) -> VisionInputs:
        return vision_inputs(self.window)

    def as_kwargs(self) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "pixel_values_videos": self.vision.pixel_values_videos,
                "video_grid_thw": self.vision.video_grid_thw, "patch_positions": self.vision.patch_positions}


def normalise(patches: torch.Tensor) -> torch.Tensor:
    """(P, 3, p, p) uint8 patches -> (P, 3 * p * p) float32, scaled to [0, 1] and CLIP-normalised, on the patches'
    device (so the runtime ships uint8, a quarter of the bytes, and normalises on the GPU)."""
    mean = torch.from_numpy(IMAGE_MEAN).to(patches.device)[:, None, None]
    std = torch.from_numpy(IMAGE_STD).to(patches.device)[:, None, None]
    return ((patches.to(torch.float32) * (1.0 / 255.0) - mean) / std).reshape(len(patches), -1)


def raw_patches(canvases: tuple[Canvas, ...] | list[Canvas], patch: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Canvases of one size -> (P, 3, p, p) uint8 patches (2x2-block order) and (P, 3) int64 positions."""
    if not canvases:
        raise ProcessorError("no canvases to encode")
    size = canvases[0].pixels.shape
    for i, c in enumerate(canvases):
        if c.pixels.shape != size or c.pixels.dtype != np.uint8:
            raise ProcessorError(f"canvas {i} is {c.pixels.shape} {c.pixels.dtype}; "
                                 f"expected {size} uint8 like canvas 0")
        if c.positions.shape != (size[0] // patch * (size[1] // patch), 3):
            raise ProcessorError(f"canvas {i} has {c.positions.shape[0]} position rows for a "
                                 f"{size[0]}x{size[1]} canvas of {patch}-px patches")
    pixels = np.concatenate([patchify(c.pixels, patch).transpose(0, 3, 1, 2) for c in canvases])
    positions = np.concatenate([c.positions for c in canvases]).astype(np.int64)
    return np.ascontiguousarray(pixels), positions


def normalise_patches(pixels: np.ndarray, patch: int = 14) -> np.ndarray:
    """(H, W, 3) uint8 canvas -> (H/p * W/p, 3 * p * p) float32, 2x2-block order, channel-first rows."""
    return normalise(torch.from_numpy(np.ascontiguousarray(patchify(pixels, patch).transpose(0, 3, 1, 2)))).numpy()


def vision_inputs(window: CodecWindow | tuple[Canvas, ...], patch: int | None = None,
                  device: torch.device | str = "cpu") -> VisionInputs:
    """The vision-tower inputs of a window, or of a run of its canvases (see the module docstring); tensors on
    ``device`` (normalised there)."""
    canvases = window.canvases if isinstance(window, CodecWindow) else tuple(window)
    patch = patch or (window.patch_size if isinstance(window, CodecWindow) else 14)
    pixels, positions = raw_patches(canvases, patch)
    h, w = canvases[0].pixels.shape[:2]
    grid = torch.tensor([[len(canvases), h // patch, w // patch]], dtype=torch.int64, device=device)
    return VisionInputs(normalise(torch.from_numpy(pixels).to(device)), grid, torch.from_numpy(positions).to(device),
                        positions[::4, 0].copy())


def token_frames(window: CodecWindow) -> np.ndarray:
    """(tokens,) source frame of each merged token (-1 for padding), without touching pixels."""
    if not window.groups or not window.canvases:
        raise ProcessorError("the window holds no canvases")
    return np.concatenate([c.positions[::4, 0] for c in window.canvases]).astype(np.int64)


def frame_runs(token_frames: np.ndarray) -> list[tuple[int, int]]:
    """Merged-token frames -> [(frame, token count)] runs in order; padding (-1) joins the run before it."""
    runs: list[tuple[int, int]] = []
    leading_pad = 0
    for f in token_frames.tolist():
        if f < 0:
            if runs:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                leading_pad += 1
        elif runs and runs[-1][0] == f:
            runs[-1] = (f, runs[-1][1] + 1)
        else:
            runs.append((f, 1))
    if not runs:
        raise ProcessorError("the window has only padding tokens (no source frame on any canvas)")
    runs[0] = (runs[0][0], runs[0][1] + leading_pad)
    return runs


def vision_text(token_frames: np.ndarray, frame_times: dict[int, float]) -> str:
    """The prompt's vision part: one ``<t seconds><|vision_start|>...<|vision_end|>`` block per run."""
    parts = []
    for frame, count in frame_runs(token_frames):
        if frame not in frame_times:
            raise ProcessorError(f"frame {frame} is on a canvas but has no time in the window's frame_times")
        parts.append(f"<{frame_times[frame]:.1f} seconds>{VISION_START}{VIDEO_PAD * count}{VISION_END}")
    return "".join(parts)


def build_prompt(tokenizer, vision_part: str, instruction: str) -> str:
    """Chat-template prompt: the vision runs, a newline, then the task instruction; generation prompt appended."""
    messages = [{"role": "user", "content": f"{vision_part}\n{instruction}"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prepare_inputs(window: CodecWindow, instruction: str, tokenizer) -> ModelInputs:
    """A window and a task instruction -> ``ModelInputs`` (tokens for the prompt, tensors for the vision tower)."""
    prompt = build_prompt(tokenizer, vision_text(token_frames(window), window.frame_times), instruction)
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], dtype=torch.int64)
    return ModelInputs(window, ids, torch.ones_like(ids), prompt)


def window_from_frames(frames: list[np.ndarray], frame_indices: list[int], fps: float,
                       canvases_per_group: int = 4, max_pixels: int = 150_000, patch: int = 14,
                       stamps: list | None = None) -> CodecWindow:
    """Uniform sampling as a window: each RGB frame (H, W, 3) uint8 becomes one whole-frame canvas, groups of
    ``canvases_per_group`` frames, so uniform frames take the same path and token budget as codec canvases."""
    import cv2

    if not frames or len(frames) != len(frame_indices):
        raise ProcessorError(f"need one frame index per frame, got {len(frames)} frames, {len(frame_indices)} indices")
    src_h, src_w = frames[0].shape[:2]
    grid = CanvasGrid.for_source(src_h, src_w, patch, max_pixels)
    stamps = stamps if stamps is not None else [None] * len(frames)
    groups = []
    for g, start in enumerate(range(0, len(frames), canvases_per_group)):
        idx = list(range(start, min(start + canvases_per_group, len(frames))))
        canvases = []
        for i in idx:
            if frames[i].shape[:2] != (src_h, src_w):
                raise ProcessorError(f"frame {frame_indices[i]} is {frames[i].shape[:2]}, frame 0 is {(src_h, src_w)}")
            img = cv2.resize(frames[i], (grid.width, grid.height), interpolation=cv2.INTER_AREA)
            pixels, positions = pack_frame(int(frame_indices[i]), img, grid)
            canvases.append(Canvas("I", pixels, positions, g))
        first, last = frame_indices[idx[0]], frame_indices[idx[-1]]
        groups.append(FrameGroup(
            index=g, start_frame=int(first), end_frame=int(last) + 1,
            frame_bits=np.zeros(int(last) + 1 - int(first), dtype=np.int64), threshold=0.0,
            canvases=tuple(canvases), frame_times={int(frame_indices[i]): frame_indices[i] / fps for i in idx},
            frame_stamps={int(frame_indices[i]): stamps[i] for i in idx}))
    return CodecWindow(groups=tuple(groups), canvas_size=grid.size, source_size=(src_h, src_w), fps=fps,
                       patch_size=patch)
