"""Keep a streaming ``Sam2VideoInferenceSession`` bounded, and remove objects from it.

transformers' session keeps every frame's pixels and every frame's outputs for the whole video (it was built for
clips). Tracking frame t only reads: the current frame's pixels, the memories of the last ``num_maskmem - 1`` tracked
frames, object pointers of the last ``max_object_pointers_in_encoder`` frames, and the conditioning (prompted) frames.
Everything older is dropped here after each frame, so memory stays flat over an endless stream.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# tensors the model only needs while encoding the frame's memory, inside forward()
_TRANSIENT_KEYS = ("high_res_masks",)


@dataclass(frozen=True)
class BankSize:
    """How much per-frame state a session holds (for tests and diagnostics)."""

    pixel_frames: int            # frames whose preprocessed pixels are stored
    cond_frames: int             # prompted frames kept, summed over objects
    non_cond_frames: int         # tracked frames kept, summed over objects
    tracked_marks: int           # frame entries in frames_tracked_per_obj, summed over objects
    tensor_bytes: int            # bytes of all tensors held in per-frame outputs


def prune_session(session, frame_idx: int, keep_frames: int, keep_cond_frames: int) -> None:
    """Drop state older than ``keep_frames`` tracked frames and all but the newest ``keep_cond_frames`` prompts."""
    if session.processed_frames:
        for old in [f for f in session.processed_frames if f != frame_idx]:
            del session.processed_frames[old]
    oldest = frame_idx - keep_frames
    for obj_idx, outputs in session.output_dict_per_obj.items():
        non_cond = outputs["non_cond_frame_outputs"]
        for f in [f for f in non_cond if f <= oldest]:
            del non_cond[f]
        cond = outputs["cond_frame_outputs"]
        for f in sorted(cond)[:-keep_cond_frames]:
            del cond[f]
        for store in (non_cond, cond):
            for out in store.values():
                for key in _TRANSIENT_KEYS:
                    out.pop(key, None)
        tracked = session.frames_tracked_per_obj[obj_idx]
        for f in [f for f in tracked if f <= oldest]:
            del tracked[f]
        points = session.point_inputs_per_obj[obj_idx]
        for f in [f for f in points if f not in cond]:
            del points[f]


def drop_object(session, obj_id: int) -> bool:
    """Remove one object and renumber the rest (the session keys per-object state by a dense index)."""
    if obj_id not in session._obj_id_to_idx:
        return False
    removed = session._obj_id_to_idx[obj_id]
    per_obj = ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj", "frames_tracked_per_obj")
    kept_ids = [i for i in session.obj_ids if i != obj_id]
    old_index = {i: session._obj_id_to_idx[i] for i in kept_ids}
    for name in per_obj:
        store = getattr(session, name)
        store.pop(removed, None)
        setattr(session, name, {new: store[old_index[i]] for new, i in enumerate(kept_ids)})
    session._obj_id_to_idx = OrderedDict((i, new) for new, i in enumerate(kept_ids))
    session._obj_idx_to_id = OrderedDict((new, i) for new, i in enumerate(kept_ids))
    session.obj_ids = kept_ids
    session.obj_with_new_inputs = [i for i in session.obj_with_new_inputs if i != obj_id]
    return True


def bank_size(session) -> BankSize:
    import torch

    def nbytes(store) -> int:
        return sum(v.numel() * v.element_size() for out in store.values() for v in out.values()
                   if isinstance(v, torch.Tensor))

    outputs = session.output_dict_per_obj.values()
    return BankSize(
        pixel_frames=len(session.processed_frames or {}),
        cond_frames=sum(len(o["cond_frame_outputs"]) for o in outputs),
        non_cond_frames=sum(len(o["non_cond_frame_outputs"]) for o in outputs),
        tracked_marks=sum(len(t) for t in session.frames_tracked_per_obj.values()),
        tensor_bytes=sum(nbytes(o["cond_frame_outputs"]) + nbytes(o["non_cond_frame_outputs"]) for o in outputs),
    )
