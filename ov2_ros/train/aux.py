"""The training-only auxiliary head on the merged vision tokens (the recipe that broke the "average path" plateau).

Plain next-token loss on answers lets a from-scratch toy model learn the format and ignore the image. This head
asks each merged vision token, for every named object class, what fraction of its area the object covers (BCE)
and where the object's centroid sits inside it (MSE, only where the object is present), so the vision features
must encode which named shape is where. It is never saved: the checkpoint stays the released architecture.

With 2-3 shapes in view that is not enough: the vision tokens say which shape is where, but the answer's digits
are a weak signal for *which* of them the query names. ``AuxHead.locate_loss`` asks the language model's last
hidden state at every answer position for the queried object's centroid in the window (MSE): to answer it, the
text side must attend to the tokens of the named shape, which is the binding the answer needs.

Knowing where the shape is does not say whether it moved: ``when:`` answers stayed near chance while tracks got
good. With ``move_weight`` the same positions also predict, per window frame, whether the queried object is moving
there (BCE), which is what a span answer is read from. That text-side flag alone can be learnt from "something
moves" without saying *what* moves, and it cost the named-shape binding. ``vmove_weight`` asks the vision tokens
too, per named class, for the fraction of the token covered by that object *while it moves* (BCE; a fourth target
channel, ``moving_stats``), so the features the answer reads carry motion bound to a shape.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ov2_ros.codec.packing import CanvasGrid
from ov2_ros.codec.synth import OBJECT_NAMES

PRESENT = 0.05          # token fraction above which the centroid target counts
MOVE_FRAMES = 8         # window frames the motion target covers (longer windows: the first 8)


class AuxHead(nn.Module):
    def __init__(self, width: int, classes: int = len(OBJECT_NAMES)):
        super().__init__()
        self.classes = classes
        self.proj = nn.Linear(width, classes * 3 + 2)
        self.locate = nn.Linear(width, 2)       # text side: the queried object's centroid (x, y) in [0, 1]
        self.name = nn.Linear(width, classes)   # text side: which named object the query asks about
        self.move = nn.Linear(width, MOVE_FRAMES)   # text side: is the queried object moving at window frame i
        self.vmove = nn.Linear(width, classes)      # vision side: per class, the token's cover by it while moving

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.proj(tokens)
        return out[:, :-2].view(len(tokens), self.classes, 3), out[:, -2:]

    def loss(self, tokens: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
             where: torch.Tensor | None = None, vmove_weight: float = 0.0) -> torch.Tensor:
        """tokens (N, D), target (N, classes, 3 or 4) = (fraction, cx, cy[, fraction while moving]) in [0, 1], valid
        (N,) bool (not padding), ``where`` (N, 2): the token's own centre in the frame (x, y in [0, 1]). The RoPE'd ViT
        only knows relative positions; asking for the absolute one puts "where am I" into the feature the LLM reads
        coordinates from. ``vmove_weight``: the weight of the fourth channel's BCE (needs it in ``target``)."""
        tokens, target = tokens.float(), target[valid]
        per_class, pos = self(tokens)
        out, tgt = per_class[valid], target[..., :3]
        moving = (vmove_weight * F.binary_cross_entropy_with_logits(self.vmove(tokens[valid]), target[..., 3])
                  if vmove_weight > 0 and target.shape[-1] > 3 else 0.0)
        bce = F.binary_cross_entropy_with_logits(out[..., 0], tgt[..., 0])
        present = tgt[..., 0] > PRESENT
        mse = (F.mse_loss(torch.sigmoid(out[..., 1:])[present], tgt[..., 1:][present]) if present.any()
               else out.sum() * 0.0)
        if where is not None:
            mse = mse + F.mse_loss(torch.sigmoid(pos[valid]), where[valid])
        return bce + mse + moving


    def locate_loss(self, hidden: torch.Tensor, labels: torch.Tensor, query_xy: torch.Tensor,
                    query_class: torch.Tensor | None = None, name_weight: float = 0.0,
                    query_moving: torch.Tensor | None = None, move_weight: float = 0.0) -> torch.Tensor:
        """hidden (B, L, D) last LM hidden states, labels (B, L) (-100 off the answer), query_xy (B, 2) the queried
        object's mean centroid over the window (NaN: not visible). MSE at every position that predicts an answer
        token; with ``name_weight``, plus the CE of the queried object's name there (``query_class`` (B,), -1:
        none): the tiny tokenizer spells names letter by letter, and the answer must first know which one it is.
        With ``move_weight``, plus the BCE of ``query_moving`` (B, MOVE_FRAMES) per-frame moving flags (NaN: no
        such frame)."""
        predicts = torch.zeros_like(labels, dtype=torch.bool)
        predicts[:, :-1] = labels[:, 1:] != -100
        located = predicts & torch.isfinite(query_xy).all(dim=1)[:, None]
        loss = hidden.sum() * 0.0
        if located.any():
            xy = torch.sigmoid(self.locate(hidden[located].float()))
            loss = loss + F.mse_loss(xy, query_xy[:, None, :].expand(-1, labels.shape[1], -1)[located])
        if name_weight > 0 and query_class is not None:
            named = predicts & (query_class >= 0)[:, None]
            if named.any():
                target = query_class[:, None].expand(-1, labels.shape[1])[named]
                loss = loss + name_weight * F.cross_entropy(self.name(hidden[named].float()), target)
        if move_weight > 0 and query_moving is not None:
            rows, frames = torch.nonzero(predicts, as_tuple=True)
            target = query_moving[rows]
            known = torch.isfinite(target)
            if known.any():
                logits = self.move(hidden[rows, frames].float())
                loss = loss + move_weight * F.binary_cross_entropy_with_logits(logits[known], target[known])
        return loss


def block_stats(mask: np.ndarray, grid: CanvasGrid) -> np.ndarray:
    """(H_src, W_src) bool mask -> (block_rows, block_cols, 3): covered fraction and centroid (0-1) per 2x2 block."""
    import cv2

    m = cv2.resize(mask.astype(np.float32), (grid.width, grid.height), interpolation=cv2.INTER_AREA)
    s = 2 * grid.patch
    blocks = m.reshape(grid.block_rows, s, grid.block_cols, s).transpose(0, 2, 1, 3)
    mass = blocks.sum(axis=(2, 3))
    ramp = (np.arange(s, dtype=np.float32) + 0.5) / s
    cx = (blocks * ramp[None, None, None, :]).sum(axis=(2, 3)) / np.maximum(mass, 1e-6)
    cy = (blocks * ramp[None, None, :, None]).sum(axis=(2, 3)) / np.maximum(mass, 1e-6)
    return np.stack([mass / (s * s), cx, cy], axis=-1)


def moving_stats(stats: np.ndarray, moving: bool) -> np.ndarray:
    """``block_stats`` plus the fourth target channel: the covered fraction while the object moves (else 0)."""
    return np.concatenate([stats, stats[..., :1] * float(moving)], axis=-1)


def token_centres(positions: np.ndarray, grid: CanvasGrid) -> np.ndarray:
    """(P, 3) patch positions -> (P / 4, 2) each merged token's block centre (x, y) in [0, 1] of the frame."""
    pos = positions.reshape(-1, 4, 3)
    br, bc = pos[:, :, 1].min(axis=1) // 2, pos[:, :, 2].min(axis=1) // 2
    return np.stack([(bc + 0.5) / grid.block_cols, (br + 0.5) / grid.block_rows], axis=1).astype(np.float32)


def token_targets(positions: np.ndarray, frame_stats: dict[int, dict[int, np.ndarray]],
                  classes: int = len(OBJECT_NAMES)) -> np.ndarray:
    """Per merged token (every 4 patch rows) the (classes, C) targets of its frame and block; zeros for padding.

    ``frame_stats``: frame -> {class index: ``block_stats`` (C = 3) or ``moving_stats`` (C = 4) array}."""
    pos = positions.reshape(-1, 4, 3)
    channels = next((s.shape[-1] for f in frame_stats.values() for s in f.values()), 3)
    out = np.zeros((len(pos), classes, channels), np.float32)
    for k, rows in enumerate(pos):
        t = int(rows[0, 0])
        if t < 0 or t not in frame_stats:
            continue
        br, bc = int(rows[:, 1].min()) // 2, int(rows[:, 2].min()) // 2
        for c, stats in frame_stats[t].items():
            out[k, c] = stats[br, bc]
    return out
