"""``ov2-ros train``: fine-tune LLaVA-OV-2 on annotated clips (annotations.json + bags or videos), or train the toy
model from scratch (``--recipe toy``, what ``make train-toy`` runs).

    ov2-ros train --gt annotations.json --data DIR --model ov2-toy --out OUT [--steps N] [--lora] [--heldout GT]
    ov2-ros train --recipe toy --out build/ov2-toy

Windows come from the node's own tokenizer at the model's recorded settings (or the flags); answers are rendered in
the runtime's formats under its prompts; loss is on answer tokens only. OUT/model is the HF folder the loader reads.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "fine-tune a LLaVA-OV-2 checkpoint on annotated bags/videos (or --recipe toy: train models/ov2-toy)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint/, loss.png, model/)")
    parser.add_argument("--recipe", choices=("toy",), help="toy: the two-stage ov2-toy recipe on synthetic scenes")
    parser.add_argument("--gt", type=Path, help="annotations.json (the schema of ov2-ros eval)")
    parser.add_argument("--data", type=Path, help="folder with the bags (NAME/) or videos (NAME.mp4...) it names")
    parser.add_argument("--topic", default="/camera/image/compressed", help="image topic in the bags")
    parser.add_argument("--model", default="ov2-toy", help="checkpoint to start from (name, folder or HF id)")
    parser.add_argument("--mode", choices=("codec", "uniform", "hybrid"), help="tokenization (default: the model's)")
    parser.add_argument("--canvases", type=int, help="window budget in canvases (default: the model's)")
    parser.add_argument("--max-pixels", type=int, help="canvas pixel budget (default: the model's)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device (bf16 autocast on cuda)")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (peft), merged into the saved model")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--heldout", type=Path, help="annotations.json of held-out bags in --heldout-data: scored "
                                                     "at the end through replay + eval")
    parser.add_argument("--heldout-data", type=Path, help="folder of the held-out bags (default: --data)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def tokenizer_config(args: argparse.Namespace):
    from ov2_ros.codec.types import TokenizerConfig
    from ov2_ros.model.loading import apply_model_tokenizer

    flags = {"mode": args.mode, "window_canvases": args.canvases, "max_pixels": args.max_pixels}
    return apply_model_tokenizer(TokenizerConfig(**{k: v for k, v in flags.items() if v is not None}), args.model)


def run(args: argparse.Namespace) -> int:
    import json

    from ov2_ros.train.errors import TrainDataError

    if args.recipe == "toy":
        from ov2_ros.train.toy import ToyRecipe, train_toy

        print(json.dumps(train_toy(args.out, ToyRecipe(threads=args.threads), progress=not args.quiet), indent=1))
        return 0
    if args.gt is None or args.data is None:
        raise TrainDataError("give --gt annotations.json and --data DIR (or --recipe toy)")
    import torch

    from ov2_ros.model.loading import load_model, load_tokenizer
    from ov2_ros.train.annotated import annotated_examples
    from ov2_ros.train.trainer import TrainConfig, train

    torch.set_num_threads(args.threads)
    tok_cfg = tokenizer_config(args)
    tokenizer = load_tokenizer(args.model)
    examples = annotated_examples(args.gt, args.data, tok_cfg, tokenizer, args.topic)
    model = load_model(args.model, device=args.device, dtype=torch.float32,
                       attn_implementation="sdpa" if args.device.startswith("cuda") else "eager")
    trainable = None
    if args.lora:
        from ov2_ros.train.lora import add_lora

        model, trainable = add_lora(model, rank=args.lora_rank)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                      aux_weight=0.0, warmup=min(30, max(1, args.steps // 10)), min_lr=args.lr / 10,
                      checkpoint_every=max(1, min(100, args.steps)))
    summary = train(model, tokenizer, examples, args.out, cfg, tok_cfg, trainable=trainable,
                    progress=not args.quiet, merge=args.lora)
    print(f"trained {args.steps} steps on {len(examples)} windows: loss {summary['final_loss']:.4f} -> "
          f"{args.out / 'model'} (curve: {args.out / 'loss.png'})")
    if args.heldout is not None:
        from ov2_ros.train.heldout import evaluate_model

        held = evaluate_model(str(args.out / "model"), args.heldout, args.heldout_data or args.data,
                              args.out / "heldout", mode=tok_cfg.mode)
        print(json.dumps({k: held[k] for k in ("parse_rate", "tasks")}, indent=1))
    return 0
