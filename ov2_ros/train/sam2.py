"""``models/sam2-toy``: a tiny transformers ``Sam2VideoModel`` trained on the synthetic scenes from point prompts.

Training runs the model's own streaming video step (the one ``MaskTracker`` calls, ``Sam2VideoModel.forward``)
with gradients enabled, over short clips: a point on the object's visible part prompts the first frame, the next
frames are tracked through the memory bank, and every frame's mask logits get BCE + Dice against the visible mask
(plus BCE on the object-presence logit). So the prompt encoder, mask decoder, memory encoder and memory attention
all learn the path the tracker runs. Seeded; the weights are saved in the HF layout ``segment.loader`` reads.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ov2_ros.segment.imaging import frame_to_pixel_values, points_to_model
from ov2_ros.segment.loader import tiny_random_dir

# 128 px input (the tiny-random config's 64 px makes 16x16 low-res masks: too coarse for 30-60 px shapes).
SIZE = 128


def toy_sam2_config():
    from transformers import Sam2VideoConfig

    raw = json.loads((tiny_random_dir() / "config.json").read_text())
    raw = copy.deepcopy(raw)
    raw["image_size"] = SIZE
    bb = raw["vision_config"]["backbone_config"]
    bb["image_size"] = [SIZE, SIZE]
    raw["vision_config"]["backbone_feature_sizes"] = [[SIZE // 4] * 2, [SIZE // 8] * 2, [SIZE // 16] * 2]
    raw["prompt_encoder_config"]["image_size"] = SIZE
    raw["memory_attention_rope_feat_sizes"] = [SIZE // 16] * 2
    return Sam2VideoConfig(**raw)


@dataclass(frozen=True)
class Sam2Recipe:
    scenes: int = 120
    steps: int = 800
    clip_frames: int = 4
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1
    init: str = ""                 # warm start from this saved model (a second stage on longer clips)
    seed_offset: int = 0           # scene seeds start at 200_000 + this (a second stage sees new scenes)
    min_objects: int = 1           # only scenes with this many shapes: with one in view, "segment every shape"
                                   # is as good as following the prompt, and the first stages learned just that


def _clips(recipe: Sam2Recipe, seed0: int):
    """(frames (T, H, W, 3), masks (T, H, W)) clips: a random object and start frame of each scene."""
    from ov2_ros.codec.synth import scene_frames

    rng = np.random.default_rng(recipe.seed)
    out = []
    for s in range(seed0, seed0 + recipe.scenes):
        frames, objects, masks, _ = scene_frames(s, num_frames=48)
        if len(objects) < recipe.min_objects:
            continue
        for _ in range(4):
            j = int(rng.integers(len(objects)))
            start = int(rng.integers(0, len(frames) - recipe.clip_frames))
            sl = slice(start, start + recipe.clip_frames)
            if masks[start, j].sum() < 20:
                continue
            out.append((frames[sl], masks[sl, j]))
    return out


def _session(net, hw):
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    return Sam2VideoInferenceSession(video_height=hw[0], video_width=hw[1], inference_device="cpu",
                                     inference_state_device="cpu", video_storage_device="cpu", dtype=torch.float32)


def clip_loss(net, frames: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Prompt frame 0 with a point inside its mask, track the rest with the streaming step, sum the mask losses."""
    hw = frames.shape[1:3]
    session = _session(net, hw)
    ys, xs = np.nonzero(masks[0])
    k = int(rng.integers(len(xs)))
    obj = session.obj_id_to_idx(1)
    session.add_point_inputs(obj, 0, {
        "point_coords": points_to_model(np.array([[xs[k], ys[k]]], np.float32), hw, SIZE),
        "point_labels": torch.ones((1, 1, 1), dtype=torch.int32)})
    session.obj_with_new_inputs.append(1)
    step = type(net).forward.__wrapped__          # the streaming step without its inference_mode decorator
    total = 0.0
    for t in range(len(frames)):
        out = step(net, inference_session=session, frame=frame_to_pixel_values(frames[t], SIZE), frame_idx=t)
        logits = out.pred_masks[:, 0].float()                     # (1, h, w) low-res
        target = F.interpolate(torch.from_numpy(masks[t].astype(np.float32))[None, None], size=logits.shape[-2:],
                               mode="area")[:, 0]
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
        present = torch.tensor([float(masks[t].any())])
        total = total + F.binary_cross_entropy_with_logits(logits, target) + dice + \
            0.2 * F.binary_cross_entropy_with_logits(out.object_score_logits.float().reshape(-1)[:1], present)
    return total / len(frames)


def train_sam2(out: Path, recipe: Sam2Recipe = Sam2Recipe(), progress: bool = True) -> dict:
    from tqdm import tqdm
    from transformers import Sam2VideoModel

    from ov2_ros.segment.loader import seeded_random_model
    from ov2_ros.train.checkpoint import atomic_dir
    from ov2_ros.train.trainer import plot_loss

    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    net: Sam2VideoModel = (Sam2VideoModel.from_pretrained(recipe.init) if recipe.init else
                           seeded_random_model(toy_sam2_config(), recipe.seed))
    net.eval()                      # eval-mode code path (the tracker's); gradients are still on
    clips = _clips(recipe, 200_000 + recipe.seed_offset)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=0.01)
    rng = np.random.default_rng(recipe.seed)
    history = {"step": [], "loss": [], "lm": [], "aux": []}
    bar = tqdm(total=recipe.steps, desc="sam2", disable=not progress)
    t0 = time.perf_counter()
    for step in range(recipe.steps):
        lr = recipe.lr * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / recipe.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        frames, masks = clips[int(rng.integers(len(clips)))]
        loss = clip_loss(net, frames, masks, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        history["step"].append(step + 1)
        history["loss"].append(float(loss))
        history["lm"].append(float(loss))
        history["aux"].append(0.0)
        bar.set_postfix(loss=f"{float(loss):.3f}")
        bar.update(1)
    bar.close()
    out = Path(out)
    atomic_dir(out / "model", lambda tmp: net.save_pretrained(tmp, safe_serialization=True))
    plot_loss(history, out / "loss.png", "sam2-toy training loss (BCE + Dice per frame)")
    summary = {"recipe": asdict(recipe), "clips": len(clips), "seconds": time.perf_counter() - t0,
               "final_loss": float(np.mean(history["loss"][-20:]))}
    (out / "summary.json").write_text(json.dumps({**summary, "history": history}) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="train models/sam2-toy")
    p.add_argument("--out", type=Path, default=Path("build/sam2-toy"))
    p.add_argument("--steps", type=int, default=Sam2Recipe.steps)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clip-frames", type=int, default=Sam2Recipe.clip_frames)
    p.add_argument("--lr", type=float, default=Sam2Recipe.lr)
    p.add_argument("--init", default="", help="warm start from a saved model folder")
    p.add_argument("--scenes", type=int, default=Sam2Recipe.scenes)
    p.add_argument("--min-objects", type=int, default=Sam2Recipe.min_objects)
    p.add_argument("--seed-offset", type=int, help="scene seeds from 200000 + this (default 1000 with --init)")
    p.add_argument("--publish", type=Path, help="copy the model and curve here (make train-toy: models/sam2-toy)")
    a = p.parse_args(argv)
    offset = a.seed_offset if a.seed_offset is not None else (1000 if a.init else 0)
    recipe = Sam2Recipe(steps=a.steps, threads=a.threads, clip_frames=a.clip_frames, lr=a.lr, init=a.init,
                        seed_offset=offset, scenes=a.scenes, min_objects=a.min_objects)
    print(json.dumps(train_sam2(a.out, recipe)))
    if a.publish:
        publish(a.out, a.publish)
    return 0


def publish(run: Path, dest: Path) -> Path:
    """models/sam2-toy: the weights, config, loss curve and summary; the model card already there is kept."""
    import shutil

    from ov2_ros.train.checkpoint import atomic_dir

    card = (dest / "README.md").read_text() if (dest / "README.md").is_file() else None

    def write(tmp: Path) -> None:
        for f in (run / "model").iterdir():
            shutil.copy2(f, tmp / f.name)
        shutil.copy2(run / "loss.png", tmp / "loss_stage2.png")
        summary = json.loads((run / "summary.json").read_text())
        summary.pop("history", None)
        (tmp / "recipe.json").write_text(json.dumps(summary, indent=1) + "\n")
        if card is not None:
            (tmp / "README.md").write_text(card)
    return atomic_dir(dest, write)


if __name__ == "__main__":
    raise SystemExit(main())
