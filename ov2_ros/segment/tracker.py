"""Streaming SAM2 mask tracker: decoded frames in one at a time, point prompts per object, masks out.

Built on transformers' ``Sam2VideoModel`` driven through a ``Sam2VideoInferenceSession`` in streaming mode
(``model(inference_session=..., frame=...)``). Pixel preprocessing is done here (see ``imaging``) because the
transformers SAM2 image/video processors need torchvision, which this stack must not install.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ov2_ros.segment.bank import BankSize, bank_size, drop_object, prune_session
from ov2_ros.segment.errors import SegmentError
from ov2_ros.segment.imaging import frame_to_pixel_values, mask_box, masks_to_source, points_to_model
from ov2_ros.segment.loader import TINY_RANDOM, load_sam2


@dataclass(frozen=True, eq=False)
class ObjectMask:
    """One object's result on one frame. ``mask``: (H, W) bool at source resolution (all False when ``lost``)."""

    mask: np.ndarray
    score: float                                  # sigmoid of SAM2's object-presence logit, in [0, 1]
    box: tuple[int, int, int, int] | None         # (x0, y0, x1, y1) pixels, x1/y1 exclusive; None when empty
    lost: bool


@dataclass(frozen=True, eq=False)
class PointPrompt:
    """Points for one object on one source frame: ``points_xy`` (N, 2) pixels, ``labels`` (N,) 1 = on, 0 = off."""

    frame: int
    obj_id: int
    points_xy: np.ndarray
    labels: np.ndarray


class MaskTracker:
    """Track objects from point prompts across a live stream.

    ``max_memory_frames`` bounds how many past tracked frames keep their memory (SAM2 reads at most
    ``num_maskmem - 1`` memories and ``max_object_pointers_in_encoder`` pointers, so the default loses nothing);
    ``max_prompt_frames`` bounds how many prompted frames per object stay as conditioning memories.
    A prompt for a frame that was already pushed is applied on the next pushed frame (VLM answers lag the stream);
    a prompt for a future frame waits for it. Fresh points for a known object re-prompt it.
    """

    def __init__(self, model: str = TINY_RANDOM, device: str = "cpu", dtype: torch.dtype | None = None,
                 max_memory_frames: int | None = None, max_prompt_frames: int = 4, score_threshold: float = 0.5,
                 image_encoder: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None):
        self.model = load_sam2(model, device=device, dtype=dtype)
        # optional replacement for the per-frame image encoder (an onnxruntime or TensorRT engine): pixel_values
        # (1, 3, S, S) -> (high_res_feat0, high_res_feat1, image_embed, image_pos_embed) NCHW, see engines.sam2_parts
        self.image_encoder = image_encoder
        self.device = device
        self.dtype = dtype or torch.float32
        cfg = self.model.config
        needed = max(cfg.num_maskmem, cfg.max_object_pointers_in_encoder)
        self.max_memory_frames = needed if max_memory_frames is None else int(max_memory_frames)
        if self.max_memory_frames < 1 or max_prompt_frames < 1:
            raise SegmentError("max_memory_frames and max_prompt_frames must be >= 1")
        self.max_prompt_frames = int(max_prompt_frames)
        self.score_threshold = float(score_threshold)
        self.image_size = int(cfg.image_size)
        self._session = None
        self._source_hw: tuple[int, int] | None = None
        self._last_frame: int | None = None
        self._pending: dict[tuple[int, int], PointPrompt] = {}   # (obj_id, frame) -> prompt not yet applied

    # prompts ---------------------------------------------------------------------------------------------------
    def add_points(self, frame_index: int, obj_id: int, points_xy, labels) -> None:
        """Queue points for ``obj_id`` at ``frame_index`` (source pixels), replacing unapplied ones for that pair."""
        pts = np.asarray(points_xy, dtype=np.float64)
        lab = np.asarray(labels)
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
            raise SegmentError(f"object {obj_id} frame {frame_index}: points_xy must be (N>=1, 2), got {pts.shape}")
        if lab.shape != (pts.shape[0],) or not np.isin(lab, (0, 1)).all():
            raise SegmentError(f"object {obj_id} frame {frame_index}: labels must be (N,) of 0/1 matching the points")
        if not np.isfinite(pts).all():
            raise SegmentError(f"object {obj_id} frame {frame_index}: points must be finite, got {pts.tolist()}")
        prompt = PointPrompt(int(frame_index), int(obj_id), pts.astype(np.float32), lab.astype(np.int32))
        if self._source_hw is not None:
            self._check_inside(prompt, self._source_hw)
        self._pending[(prompt.obj_id, prompt.frame)] = prompt

    def add_prompt(self, prompt: PointPrompt) -> None:
        self.add_points(prompt.frame, prompt.obj_id, prompt.points_xy, prompt.labels)

    def remove_object(self, obj_id: int) -> bool:
        """Forget an object (its prompts and memories). Returns whether it was known."""
        keys = [k for k in self._pending if k[0] == obj_id]
        for key in keys:
            del self._pending[key]
        pending = bool(keys)
        return (self._session is not None and drop_object(self._session, obj_id)) or pending

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(self._session.obj_ids) if self._session is not None else ()

    # frames ----------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def push(self, frame_index: int, rgb: np.ndarray) -> dict[int, ObjectMask]:
        """Track every object on this frame. ``rgb``: (H, W, 3) uint8. Returns obj_id -> ObjectMask.

        Frames must come in increasing index order and keep one resolution. Before any prompt, returns {}.
        """
        hw = self._check_frame(frame_index, rgb)
        due = self._due_prompts(frame_index)
        for prompt in due:   # validate first: a bad prompt is dropped, the frame is not consumed (push it again)
            try:
                self._check_inside(prompt, hw)
            except SegmentError:
                del self._pending[(prompt.obj_id, prompt.frame)]
                raise
        self._last_frame = frame_index
        if self._session is None:
            if not due:
                return {}
            self._open_session(hw)
        for prompt in due:
            self._apply(prompt, frame_index)
        self._pending = {k: p for k, p in self._pending.items() if p.frame > frame_index}
        if not self._session.obj_ids:
            return {}
        pixels = frame_to_pixel_values(rgb, self.image_size, self.dtype)
        if self.image_encoder is not None:
            self._cache_external_features(frame_index, pixels)
        out = self.model(inference_session=self._session, frame=pixels, frame_idx=frame_index)
        prune_session(self._session, frame_index, self.max_memory_frames, self.max_prompt_frames)
        return self._results(out, hw)

    def bank_size(self) -> BankSize:
        """Per-frame state held right now (bounded by the caps above)."""
        if self._session is None:
            return BankSize(0, 0, 0, 0, 0)
        return bank_size(self._session)

    def close(self) -> None:
        """Drop the session and the weights."""
        self._session = None
        self._pending.clear()
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> MaskTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # internals -------------------------------------------------------------------------------------------------
    def _check_frame(self, frame_index: int, rgb: np.ndarray) -> tuple[int, int]:
        if self.model is None:
            raise SegmentError("MaskTracker is closed")
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
            raise SegmentError(f"frame {frame_index}: expected (H, W, 3) uint8 RGB, got "
                               f"{getattr(rgb, 'shape', type(rgb))} {getattr(rgb, 'dtype', '')}")
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise SegmentError(f"frame {frame_index}: frame indices must increase (last was {self._last_frame})")
        hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        if self._source_hw is not None and hw != self._source_hw:
            raise SegmentError(f"frame {frame_index}: resolution changed from {self._source_hw} to {hw}; "
                               "start a new MaskTracker")
        self._source_hw = hw
        return hw

    @staticmethod
    def _check_inside(prompt: PointPrompt, hw: tuple[int, int]) -> None:
        h, w = hw
        x, y = prompt.points_xy[:, 0], prompt.points_xy[:, 1]
        outside = (x < 0) | (x >= w) | (y < 0) | (y >= h)
        if outside.any():
            bad = prompt.points_xy[outside].tolist()
            raise SegmentError(f"object {prompt.obj_id} frame {prompt.frame}: points {bad} lie outside the "
                               f"{w}x{h} frame")

    def _open_session(self, hw: tuple[int, int]) -> None:
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        self._session = Sam2VideoInferenceSession(
            video_height=hw[0], video_width=hw[1], inference_device=self.device,
            inference_state_device=self.device, video_storage_device=self.device, dtype=self.dtype)

    def _apply(self, prompt: PointPrompt, frame_index: int) -> None:
        session = self._session
        obj_idx = session.obj_id_to_idx(prompt.obj_id)
        session.add_point_inputs(obj_idx, frame_index, {
            "point_coords": points_to_model(prompt.points_xy, self._source_hw, self.image_size),
            "point_labels": torch.from_numpy(prompt.labels)[None, None],
        })
        session.remove_mask_inputs(obj_idx, frame_index)
        if prompt.obj_id not in session.obj_with_new_inputs:
            session.obj_with_new_inputs.append(prompt.obj_id)

    def _cache_external_features(self, frame_index: int, pixels: torch.Tensor) -> None:
        """Put the external encoder's maps where the model looks first (the session's vision-feature cache), in
        its (HW, B, C) layout; only the lowest-resolution position encoding is ever read, so the others stay None."""
        feat0, feat1, embed, pos = (torch.as_tensor(t).to(self.device, self.dtype) for t in
                                    self.image_encoder(pixels[None]))
        flat = [t.flatten(2).permute(2, 0, 1) for t in (feat0, feat1, embed, pos)]
        self._session.cache.cache_vision_features(
            frame_index, {"vision_feats": flat[:3], "vision_pos_embeds": [None, None, flat[3]]})

    def _due_prompts(self, frame_index: int) -> list[PointPrompt]:
        """The newest prompt per object whose frame has come; older ones for the same object are superseded."""
        newest: dict[int, PointPrompt] = {}
        for (obj_id, frame), prompt in sorted(self._pending.items(), key=lambda kv: kv[0][1]):
            if frame <= frame_index:
                newest[obj_id] = prompt
        return list(newest.values())

    def _results(self, out, hw: tuple[int, int]) -> dict[int, ObjectMask]:
        masks = masks_to_source(out.pred_masks, hw)
        scores = torch.sigmoid(out.object_score_logits.float().reshape(-1)).cpu().numpy()
        results: dict[int, ObjectMask] = {}
        for i, obj_id in enumerate(out.object_ids):
            score = float(scores[i])
            lost = score < self.score_threshold
            mask = np.zeros(hw, dtype=bool) if lost else masks[i]
            results[int(obj_id)] = ObjectMask(mask=mask, score=score, box=mask_box(mask), lost=lost)
        return results
