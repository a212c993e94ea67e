"""Tokenizer windows -> training examples: the runtime's exact prompt and vision inputs, the rendered answer, labels
on the answer only.

Prompt ids come from ``processor.prepare_inputs`` and pixels from ``processor.vision_inputs`` (the calls
``VlmRuntime`` makes), so a change in the prompt or vision layout reaches training unchanged. An ``Example`` keeps
its window (uint8 canvases) and patchifies when batched.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ov2_ros.codec.types import CodecWindow
from ov2_ros.model.processor import model_groups, prepare_inputs, vision_inputs
from ov2_ros.train.targets import prompt_instruction

IGNORE = -100


@dataclass(frozen=True)
class Example:
    input_ids: np.ndarray            # (L,) int64: prompt + answer + eos
    labels: np.ndarray               # (L,) int64: IGNORE on the prompt
    window: CodecWindow
    task: str
    text: str                        # the query text (after the task prefix)
    answer: str
    aux: np.ndarray | None = None    # (tokens, classes, 3) float32 per-token (fraction, cx, cy), synthetic data only
    query_xy: np.ndarray | None = None   # (2,) the queried object's mean centroid in the window, 0-1 (synthetic)
    query_class: int = -1                # the queried object's index in synth.OBJECT_NAMES (synthetic; -1: none)
    query_moving: np.ndarray | None = None   # (frames,) 1.0 where the queried object moves, per window frame

    @property
    def answer_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


def model_positions(window: CodecWindow) -> np.ndarray:
    """(P, 3) absolute (t, h, w) of the patches the model sees, in the order of its vision tokens."""
    return np.concatenate([c.positions for g in model_groups(window) for c in g]).astype(np.int64)


def encode_example(tokenizer, window: CodecWindow, task: str, text: str, answer: str,
                   aux: np.ndarray | None = None, query_xy: np.ndarray | None = None,
                   query_class: int = -1, query_moving: np.ndarray | None = None) -> Example:
    """The prompt ``VlmRuntime.prepare`` builds for ``task: text`` on ``window``, followed by ``answer`` + eos."""
    p_ids = prepare_inputs(window, prompt_instruction(task, text), tokenizer).input_ids[0].tolist()
    a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = np.asarray(p_ids + a_ids, np.int64)
    labels = np.asarray([IGNORE] * len(p_ids) + a_ids, np.int64)
    return Example(ids, labels, window, task, text, answer, aux, query_xy, query_class, query_moving)


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; the vision rows of all examples concatenated in order (placeholders fill row-major)."""
    n = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.int64)
    labels = torch.full((len(examples), n), IGNORE, dtype=torch.int64)
    mask = torch.zeros((len(examples), n), dtype=torch.int64)
    for i, e in enumerate(examples):
        ids[i, :len(e.input_ids)] = torch.from_numpy(e.input_ids)
        labels[i, :len(e.labels)] = torch.from_numpy(e.labels)
        mask[i, :len(e.input_ids)] = 1
    vis = [vision_inputs(e.window) for e in examples]
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask,
             "pixel_values_videos": torch.cat([v.pixel_values_videos for v in vis]),
             "video_grid_thw": torch.cat([v.video_grid_thw for v in vis]),
             "patch_positions": torch.cat([v.patch_positions for v in vis])}
    if all(e.aux is not None for e in examples):
        from ov2_ros.codec.packing import CanvasGrid
        from ov2_ros.train.aux import token_centres

        batch["aux"] = torch.from_numpy(np.concatenate([e.aux for e in examples])).float()
        batch["aux_where"] = torch.from_numpy(np.concatenate([
            token_centres(model_positions(e.window), CanvasGrid(*e.window.canvas_size, e.window.patch_size))
            for e in examples]))
        batch["aux_valid"] = torch.from_numpy(np.concatenate([v.token_frames >= 0 for v in vis]))
    if any(e.query_xy is not None for e in examples):
        batch["query_xy"] = torch.tensor(np.stack([e.query_xy if e.query_xy is not None else np.full(2, np.nan)
                                                   for e in examples]), dtype=torch.float32)
        batch["query_class"] = torch.tensor([e.query_class for e in examples], dtype=torch.int64)
    if any(e.query_moving is not None for e in examples):
        from ov2_ros.train.aux import MOVE_FRAMES

        moving = np.full((len(examples), MOVE_FRAMES), np.nan, np.float32)
        for i, e in enumerate(examples):
            if e.query_moving is not None:
                m = e.query_moving[:MOVE_FRAMES]
                moving[i, :len(m)] = m
        batch["query_moving"] = torch.from_numpy(moving)
    return batch
