"""CodecWindow (or uniform frames) -> model inputs laid out as the released LLaVA-OV-2 expects them.

What is the release's (``transformers_impl/llavaonevision2`` of EvolvingLMMs-Lab/LLaVA-OneVision-2, its training
task encoder, and the official codec helper ``codec_video_prep.integrations.llava_onevision``):
- Pixels: each canvas is cut into 14-px patches in 2x2-block order (``ov2_ros.codec.packing.patchify``, the
  layout the canvases and their ``positions`` already follow), scaled to [0, 1] and normalised with the CLIP
  mean/std of the release's Qwen2-VL image processor; rows are flattened channel-first, (C, p, p), as that
  processor does with ``temporal_patch_size = 1``.
- Codec canvases go through the release's *image* path: ``pixel_values`` / ``image_grid_thw`` /
  ``patch_positions`` (``ModelInputs.as_kwargs``) and one ``<|image_pad|>`` placeholder per merged token, which the
  forward fills (``config.image_token_id``).
- Prompt: the merged tokens are walked in order; each run of tokens from the same source frame becomes
  ``<{t:.1f} seconds><|vision_start|><|image_pad|>*n<|vision_end|>\n``, the runs replace the chat template's vision
  placeholder, and the instruction follows the last run's newline. The chat template is the release's Qwen2-VL one
  (system prompt "You are a helpful assistant.").
- Padding canvases (every position t = -1) are dropped, never fed, as the official helper drops them. Padding
  tokens inside a canvas (t = -1) join the run before them (or the first run), so every vision token sits in exactly
  one run and the placeholder count matches the features.

The project's choices:
- Attention windows: ``image_grid_thw`` holds one row per codec group, ``[canvases, H/p, W/p]``, so each group
  (4 canvases) is one ``frame_windows_size`` attention window, as in the release's training (its task encoder feeds
  one ``[N, H, W]`` row that the encoder cuts into 4-canvas windows). The official HF helper instead passes one
  ``[1, H, W]`` row per canvas, which makes its attention per canvas; we follow training.
- Bounded time (``ov2_ros.model.timebase``): the positions' ``t`` and the ``<t seconds>`` tags count from a time
  origin, the start of the ``TIME_EPOCH_S`` epoch the window starts in. So they stay within [0, epoch + window
  span) however long the stream has run, like the training clips (0 to about 15 minutes). Offline files shorter
  than an epoch keep the official tool's numbers (seconds since the start of the video). ``t`` is
  ``round((time - origin) * fps)``, the frame count since the origin, so ``t / fps`` equals the tag as in training.
  ``parsers.parse_answer`` adds the origin back.
- Why epochs and not a per-window origin: the release's vision RoPE is not relative. It concatenates the angle
  vector with itself and rotates interleaved pairs, so the two halves of a pair turn by different angles, and q.k
  depends on absolute (t, h, w), not only on differences (``test_processor.py`` measures it on tiny-random). A
  group's ViT output therefore changes when its ``t`` shifts; rebasing every window to 0 would re-encode every
  group on every slide. With an epoch origin a group keeps its positions while it stays in the window, so the
  vision cache re-encodes only the new group, and the whole window once per epoch when the origin moves.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ov2_ros.codec.packing import CanvasGrid, pack_frame, patchify
from ov2_ros.codec.types import Canvas, CodecWindow, FrameGroup
from ov2_ros.model.errors import ProcessorError
from ov2_ros.model.timebase import TimeBase, time_origin

# OpenAI CLIP statistics, the defaults of the Qwen2-VL image processor the release ships.
IMAGE_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
IMAGE_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

VISION_START, VISION_END, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"


@dataclass(frozen=True)
class VisionInputs:
    """Vision-tower inputs of one window.

    ``pixel_values_videos`` (P, 3 * p * p) float32; ``video_grid_thw`` (G, 3) int64, one row per group;
    ``patch_positions`` (P, 3) int64, ``t`` in frames since the window's origin (-1 for padding); ``token_frames``
    (P / 4,) int64: absolute source frame of each merged token (-1 for padding). The forward takes the first three as
    the release's image-path ``pixel_values`` / ``image_grid_thw`` / ``patch_positions``.
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
        """The release's codec inputs (what the official helper returns): the image path."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "pixel_values": self.vision.pixel_values_videos,
                "image_grid_thw": self.vision.video_grid_thw, "patch_positions": self.vision.patch_positions}


def normalise(patches: torch.Tensor) -> torch.Tensor:
    """(P, 3, p, p) uint8 patches -> (P, 3 * p * p) float32, scaled to [0, 1] and CLIP-normalised, on the patches'
    device (so the runtime ships uint8, a quarter of the bytes, and normalises on the GPU)."""
    mean = torch.from_numpy(IMAGE_MEAN).to(patches.device)[:, None, None]
    std = torch.from_numpy(IMAGE_STD).to(patches.device)[:, None, None]
    return ((patches.to(torch.float32) * (1.0 / 255.0) - mean) / std).reshape(len(patches), -1)


def time_base(window: CodecWindow) -> TimeBase:
    """The window's ``TimeBase`` (``ov2_ros.model.timebase``)."""
    return TimeBase(time_origin(window.frame_times), float(window.fps))


def model_positions(positions: np.ndarray, frame_times: dict[int, float], base: TimeBase) -> np.ndarray:
    """(P, 3) source positions (t = absolute frame) -> the positions the model sees: ``t`` = frames since the
    origin (``TimeBase.model_t``); padding rows keep t = -1. int64."""
    out = positions.astype(np.int64, copy=True)
    real = out[:, 0] >= 0
    frames, inverse = np.unique(out[real, 0], return_inverse=True)
    missing = [int(f) for f in frames if int(f) not in frame_times]
    if missing:
        raise ProcessorError(f"frames {missing[:5]} are on a canvas but have no time in the window's frame_times")
    out[real, 0] = np.array([base.model_t(frame_times[int(f)]) for f in frames], dtype=np.int64)[inverse]
    return out


def is_padding(canvas: Canvas) -> bool:
    """A canvas with no source patch at all (every t = -1)."""
    return not bool((canvas.positions[:, 0] >= 0).any())


def model_groups(window: CodecWindow) -> list[tuple[Canvas, ...]]:
    """The canvases the model sees, per group: padding canvases dropped, emptied groups skipped."""
    groups = [tuple(c for c in g.canvases if not is_padding(c)) for g in window.groups]
    groups = [g for g in groups if g]
    if not groups:
        raise ProcessorError("the window holds no canvas with a source patch")
    return groups


def raw_patches(canvases: tuple[Canvas, ...] | list[Canvas], patch: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Canvases of one size -> (P, 3, p, p) uint8 patches (2x2-block order) and their (P, 3) int64 positions as
    the canvases hold them (absolute frames; ``model_positions`` counts them from the origin)."""
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


def window_arrays(window: CodecWindow) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The model's view of a window without torch: (P, 3, p, p) uint8 patches, (P, 3) int64 model positions,
    (G, 3) int64 grid rows (one per group) and (P / 4,) int64 absolute source frame per merged token. Training
    batches reuse it (``vision_inputs`` is the same as tensors)."""
    groups = model_groups(window)
    canvases = [c for g in groups for c in g]
    pixels, positions = raw_patches(canvases, window.patch_size)
    h, w = canvases[0].pixels.shape[:2]
    grid = np.array([[len(g), h // window.patch_size, w // window.patch_size] for g in groups], dtype=np.int64)
    times = window.frame_times
    return pixels, model_positions(positions, times, time_base(window)), grid, positions[::4, 0].copy()


def vision_inputs(window: CodecWindow | tuple[Canvas, ...], patch: int | None = None,
                  device: torch.device | str = "cpu", frame_times: dict[int, float] | None = None,
                  base: TimeBase | None = None) -> VisionInputs:
    """The vision-tower inputs of a window (``window_arrays``), or of a run of its canvases (one grid row; with the
    window's ``frame_times`` and ``time_base`` their ``t`` are counted from its origin, else fed as held), as tensors
    on ``device`` (normalised there)."""
    if isinstance(window, CodecWindow):
        pixels, positions, grid, frames = window_arrays(window)
    else:
        canvases = tuple(window)
        pixels, absolute = raw_patches(canvases, patch or 14)
        h, w = canvases[0].pixels.shape[:2]
        grid = np.array([[len(canvases), h // (patch or 14), w // (patch or 14)]], dtype=np.int64)
        positions = absolute if frame_times is None or base is None else model_positions(absolute, frame_times, base)
        frames = absolute[::4, 0].copy()
    return VisionInputs(normalise(torch.from_numpy(pixels).to(device)), torch.from_numpy(grid).to(device),
                        torch.from_numpy(positions).to(device), frames)


def token_frames(window: CodecWindow) -> np.ndarray:
    """(tokens,) absolute source frame of each merged token the model sees (-1 for padding), without touching
    pixels."""
    if not window.groups or not window.canvases:
        raise ProcessorError("the window holds no canvases")
    return np.concatenate([c.positions[::4, 0] for g in model_groups(window) for c in g]).astype(np.int64)


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
    """The prompt's vision part: ``<t seconds><|vision_start|><|image_pad|>*n<|vision_end|>`` and a newline per
    run, ``t`` in seconds since the window's origin (``time_origin``)."""
    origin_s = time_origin(frame_times)
    parts = []
    for frame, count in frame_runs(token_frames):
        if frame not in frame_times:
            raise ProcessorError(f"frame {frame} is on a canvas but has no time in the window's frame_times")
        parts.append(f"<{frame_times[frame] - origin_s:.1f} seconds>{VISION_START}{IMAGE_PAD * count}{VISION_END}\n")
    return "".join(parts)


def build_prompt(tokenizer, vision_part: str, instruction: str) -> str:
    """Chat-template prompt: the vision runs (each ending in a newline), then the task instruction; the generation
    prompt appended."""
    messages = [{"role": "user", "content": f"{vision_part}{instruction}"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_text(window: CodecWindow, instruction: str, tokenizer) -> str:
    """The whole prompt for ``instruction`` on ``window`` (what ``prepare_inputs`` tokenizes; training reuses it)."""
    return build_prompt(tokenizer, vision_text(token_frames(window), window.frame_times), instruction)


def prepare_inputs(window: CodecWindow, instruction: str, tokenizer) -> ModelInputs:
    """A window and a task instruction -> ``ModelInputs`` (tokens for the prompt, tensors for the vision tower)."""
    prompt = prompt_text(window, instruction, tokenizer)
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
