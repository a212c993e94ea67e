"""The training loop: seeded, deterministic, resumable, loss on answer tokens only (+ the optional aux head).

A run writes ``OUT/checkpoint/`` (model, aux head, optimizer, state) every ``checkpoint_every`` steps and at the
end, ``OUT/loss.json`` + ``OUT/loss.png``, and the final model folder ``OUT/model/`` (HF layout). Running it again
with the same ``OUT`` resumes from the checkpoint: the example order is a function of (seed, step), so a resumed run
sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ov2_ros.codec.types import TokenizerConfig
from ov2_ros.train.aux import AuxHead
from ov2_ros.train.checkpoint import load_checkpoint_state, save_checkpoint, save_model
from ov2_ros.train.errors import CheckpointWriteError, TrainDataError
from ov2_ros.train.examples import Example, collate


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 500
    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 30
    weight_decay: float = 0.01
    aux_weight: float = 1.0           # 0: no aux head
    locate_weight: float = 0.0        # the aux head's text-side "where is the queried object" loss (0: off)
    name_weight: float = 0.0          # ... and its "which object is asked about" loss (needs locate_weight > 0)
    move_weight: float = 0.0          # ... and its "is the queried object moving, per frame" loss (ditto)
    move_tasks: tuple[str, ...] = ("point", "track", "ground")   # the examples the motion loss applies to
    vmove_weight: float = 0.0         # the aux head's vision-side "which shape covers this token while it moves"
    aux_warmup: int = 0               # steps before ``steps`` that train a new aux head alone (model frozen), so
                                      # its random start does not push noise into trained weights
    aux_warmup_lr: float = 1e-2       # constant, for the head alone (a linear probe: it can take a large step)
    seed: int = 0
    checkpoint_every: int = 100
    threads: int = 1
    grad_clip: float = 1.0
    bf16: bool = True                 # autocast on CUDA only


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The model's schedule; ``step`` counts from the end of the aux warm-up (negative: inside it)."""
    if step < 0:
        return cfg.aux_warmup_lr
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, frac)))


def batch_indices(n: int, step: int, batch: int, seed: int) -> np.ndarray:
    """The examples of ``step``: epoch-wise permutations drawn from (seed, epoch), so resuming is exact."""
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[k * batch:(k + 1) * batch]


def loss_of(model, batch: dict, aux_head: AuxHead | None, aux_weight: float,
            locate_weight: float = 0.0, name_weight: float = 0.0,
            move_weight: float = 0.0, vmove_weight: float = 0.0) -> tuple[torch.Tensor, float, float]:
    """(total loss, LM loss, aux loss) of one batch; LM loss on answer tokens only (labels elsewhere -100)."""
    vis = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"],
                                         batch["patch_positions"])
    embeds = model.model.embed(batch["input_ids"], video_embeds=vis)
    out = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"])
    total = out.loss
    aux = 0.0
    if aux_head is not None and "aux" in batch and aux_weight > 0:
        la = aux_head.loss(vis, batch["aux"], batch["aux_valid"], batch.get("aux_where"), vmove_weight)
        if locate_weight > 0 and "query_xy" in batch:
            la = la + locate_weight * aux_head.locate_loss(out.last_hidden_state, batch["labels"], batch["query_xy"],
                                                           batch.get("query_class"), name_weight,
                                                           batch.get("query_moving"), move_weight)
        total = total + aux_weight * la
        aux = float(la.detach())
    return total, float(out.loss.detach()), aux


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def train(model, tokenizer, examples: list[Example], out: Path, cfg: TrainConfig, tokenizer_config: TokenizerConfig,
          aux_state: dict | None = None, progress: bool = True, trainable=None, model_extra: dict | None = None,
          merge: bool = False) -> dict:
    """Train ``model`` in place on ``examples``; returns the run's summary (also in ``OUT/loss.json``).

    ``aux_state``: a previous stage's aux-head weights (warm start). ``trainable``: parameters to optimise
    (default all; LoRA passes the adapters); ``merge``: fold LoRA adapters in before the final save."""
    if cfg.steps < 1:
        raise TrainDataError(f"--steps must be at least 1 (got {cfg.steps}): a 0-step run would save the start "
                             "weights with a NaN loss")
    if not examples:
        raise TrainDataError("no training examples (every clip was empty or fitted no window)")
    examples = [e if e.task in cfg.move_tasks else replace(e, query_moving=None) for e in examples]
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    device = next(model.parameters()).device
    width = model.config.text_config.hidden_size
    aux_head = AuxHead(width).to(device) if cfg.aux_weight > 0 and examples[0].aux is not None else None
    if aux_head is not None and aux_state:
        missing, unexpected = aux_head.load_state_dict(aux_state, strict=False)
        added_later = ("locate.", "name.", "move.", "vmove.")     # older stages' heads lack them
        if unexpected or any(not k.startswith(added_later) for k in missing):
            raise TrainDataError(f"aux-head state does not fit: missing {missing}, unexpected {unexpected}")
    params = list(trainable if trainable is not None else model.parameters())
    if aux_head is not None:
        params += list(aux_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    ckpt = out / "checkpoint"
    history: dict = {"step": [], "loss": [], "lm": [], "aux": []}
    start = 0
    resumed = load_checkpoint_state(ckpt)
    if resumed is not None:
        state, blobs = resumed
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=False)
        opt.load_state_dict(blobs["optimizer"])
        if aux_head is not None and blobs["aux_head"] is not None:
            aux_head.load_state_dict(blobs["aux_head"])
        torch.set_rng_state(blobs["torch_rng"])
        start, history = state["step"], state["history"]
    model.train()
    pad = tokenizer.pad_token_id
    autocast = device.type == "cuda" and cfg.bf16
    warmup = cfg.aux_warmup if aux_head is not None else 0     # no head to fit: no warm-up
    total = warmup + cfg.steps
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
    t0, tokens = time.perf_counter(), 0
    model_params = [p for p in model.parameters() if p.requires_grad] if warmup else []
    for step in range(start, total):
        if step in (start, warmup):     # no grad -> AdamW skips them (no update, no decay) and backward is cheap
            for p in model_params:
                p.requires_grad_(step >= warmup)
        batch = collate([examples[i] for i in batch_indices(len(examples), step, cfg.batch_size, cfg.seed)], pad)
        for g in opt.param_groups:
            g["lr"] = lr_at(step - warmup, cfg)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss, lm, aux = loss_of(model, _to(batch, device), aux_head, cfg.aux_weight, cfg.locate_weight,
                                    cfg.name_weight, cfg.move_weight, cfg.vmove_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        tokens += int(batch["attention_mask"].sum())
        history["step"].append(step + 1)
        history["loss"].append(float(loss.detach()))
        history["lm"].append(lm)
        history["aux"].append(aux)
        if bar is not None:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lm=f"{lm:.3f}", aux=f"{aux:.3f}",
                            tok_s=f"{tokens / max(1e-6, time.perf_counter() - t0):.0f}")
            bar.update(1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
            state = {"step": step + 1, "history": history, "config": asdict(cfg)}
            save_checkpoint(ckpt, model, tokenizer, tokenizer_config, aux_head, opt, state)
    if bar is not None:
        bar.close()
    model.eval()
    summary = {"config": asdict(cfg), "examples": len(examples), "final_loss": _tail_mean(history["loss"]),
               "final_lm_loss": _tail_mean(history["lm"]), "final_aux_loss": _tail_mean(history["aux"]),
               "history": history}
    _write_json(out / "loss.json", summary)
    plot_loss(history, out / "loss.png")
    if merge:
        from ov2_ros.train.lora import merge_lora

        model = merge_lora(model)
    save_model(model, tokenizer, out / "model", tokenizer_config, model_extra)
    return summary


def aux_state_of(run_dir: Path) -> dict | None:
    """The aux-head weights a finished run left in its checkpoint (for the next stage's warm start)."""
    got = load_checkpoint_state(Path(run_dir) / "checkpoint")
    return got[1]["aux_head"] if got else None


def _tail_mean(values: list[float], n: int = 20) -> float:
    return float(np.mean(values[-n:])) if values else float("nan")


def _write_json(path: Path, doc: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise CheckpointWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


def plot_loss(history: dict, path: Path, title: str = "training loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = np.asarray(history["step"])
    for key, label in (("lm", "answer tokens (CE)"), ("aux", "aux head")):
        vals = np.asarray(history[key], float)
        if len(vals) and np.any(vals):
            k = max(1, len(vals) // 50)
            smooth = np.convolve(vals, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise CheckpointWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
