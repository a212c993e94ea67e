"""SAM2 per-frame latency, hiera-tiny-sized random weights: torch tracking, and the ONNX parts in onnxruntime.

    python bench/sam2_gpu.py                         # CUDA: 1024 px, torch bf16 tracking; ONNX parts on ORT-CUDA
    python bench/sam2_gpu.py --device cpu --threads 1   # CPU-only machines: 512 px (what the dev box ran)

Measured (medians over the timed frames/repeats):
- tracking: ``MaskTracker.push`` per frame with one object prompted on the first frame (encoder + memory
  attention + mask decoder + memory encoder, as the node runs it), on ``--device`` in ``--dtype``; frames/s;
- parts: SAM2 image encoder and prompt/mask decoder exported to ONNX, onnxruntime vs torch fp32 on the same inputs
  in the same run: on CUDA with onnxruntime's CUDAExecutionProvider where the installed onnxruntime has it
  (onnxruntime-gpu), else (``--cpu-parts``) on the CPU with the same number of intra-op threads; the ratio is
  ORT / torch. Which providers the installed onnxruntime offers is recorded;
- on CPU runs (or ``--cpu-parts``): whole CPU tracking with the exported encoder in onnxruntime vs all-torch.
On a shared/loaded CPU pass ``--threads 1``: spinning intra-op threads on oversubscribed cores cost 10-50x.
Weights are drawn from a fixed seed in the released hiera-tiny shapes (Sam2VideoConfig defaults = hiera-tiny), so
the speed is the real model's; mask quality is not meaningful. Frames are ``bench.common.moving_scene_frames``.
Goal (issue 11): >= 60 tracked frames/s at 1024 px on an H100/H200.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Table, load_average, moving_scene_frames, ratio, summary_ms, time_calls, write_results  # noqa: E402,E501
from ov2_ros.engines.onnx_io import export_part, ort_session  # noqa: E402
from ov2_ros.engines.sam2_parts import (  # noqa: E402
    OrtSam2ImageEncoder, Sam2ImageEncoder, Sam2PromptMaskDecoder, sam2_example_inputs)
from ov2_ros.segment import MaskTracker  # noqa: E402
from ov2_ros.segment.loader import seeded_random_model  # noqa: E402


def hiera_tiny_config(size: int):
    """The released sam2.1-hiera-tiny architecture at input ``size`` (feature grids scale with it)."""
    from transformers import Sam2VideoConfig

    grids = [[size // 4] * 2, [size // 8] * 2, [size // 16] * 2]
    return Sam2VideoConfig(
        vision_config={"model_type": "sam2_vision_model", "backbone_feature_sizes": grids,
                       "backbone_config": {"model_type": "sam2_hiera_det_model", "image_size": [size, size]}},
        prompt_encoder_config={"image_size": size}, image_size=size, memory_attention_rope_feat_sizes=grids[2])


def bench_tracking(trackers: dict[str, MaskTracker], frames: list[np.ndarray]) -> dict:
    """Per-frame ``push`` latency of each tracker, the trackers alternating frame by frame (so load drift on a
    shared machine hits them alike). One object prompted at the frame centre on frame 0."""
    h, w = frames[0].shape[:2]
    samples: dict[str, list[float]] = {name: [] for name in trackers}
    for tracker in trackers.values():
        tracker.add_points(0, 1, [[w * 0.5, h * 0.5]], [1])
    for i, rgb in enumerate(frames):
        for name, tracker in trackers.items():
            t0 = time.perf_counter()
            tracker.push(i, rgb)
            if tracker.device.startswith("cuda"):
                torch.cuda.synchronize()
            samples[name].append(time.perf_counter() - t0)
    for tracker in trackers.values():
        tracker.close()
    # frame 0 is the prompt frame (+ warm-up); frames 1-2 also warm allocator/caches
    return {name: {"prompt_frame_ms": 1e3 * s[0], "track": summary_ms(s[3:])} for name, s in samples.items()}


def bench_parts(sam2, repeats: int, out_dir: Path, device: str = "cpu") -> dict:
    """ORT vs torch fp32 per part, same inputs, same run, on ``device`` (ORT's CUDA provider on cuda)."""
    enc_in, dec_in = sam2_example_inputs(sam2, num_points=2)
    parts = {"image_encoder": (Sam2ImageEncoder(sam2), enc_in,
                               ["high_res_feat0", "high_res_feat1", "image_embed", "image_pos_embed"]),
             "mask_decoder": (Sam2PromptMaskDecoder(sam2), dec_in,
                              ["low_res_masks", "iou_scores", "object_score_logits", "object_pointer"])}
    cuda = device.startswith("cuda")
    providers = ("CUDAExecutionProvider",) if cuda else ("CPUExecutionProvider",)
    results = {}
    for name, (module, inputs, outputs) in parts.items():
        spec = export_part(name, module, inputs, outputs, out_dir, tolerance=1e-2)
        session = ort_session(out_dir / spec.file, providers=providers, threads=None if cuda else
                              torch.get_num_threads())
        feed = {k: v.numpy() for k, v in inputs.items()}
        gpu_module = copy.deepcopy(module).to(device) if cuda else module
        gpu_inputs = [v.to(device) for v in inputs.values()]

        def run_torch():
            gpu_module(*gpu_inputs)
            if cuda:
                torch.cuda.synchronize()

        torch_s, ort_s = [], []
        with torch.inference_mode():
            for _ in range(repeats):      # alternate, so load drift on a shared machine hits both alike
                torch_s += time_calls(run_torch, 1, warmup=0 if torch_s else 1)
                ort_s += time_calls(lambda: session.run(None, feed), 1, warmup=0 if ort_s else 1)
        results[name] = {"where": device, "providers": session.get_providers(), "torch": summary_ms(torch_s),
                         "ort": summary_ms(ort_s), "ort_over_torch": ratio(np.median(ort_s), np.median(torch_s)),
                         "max_abs_diff": spec.max_abs_diff}
    return results


def ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=None, help="SAM2 input size (1024 on CUDA, 512 on CPU)")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None,
                        help="tracking dtype (bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--frames", type=int, default=None, help="tracked frames (60 on CUDA, 12 on CPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per part (5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cpu-parts", action="store_true",
                        help="on CUDA, also time the parts and whole tracking on the CPU (ORT vs torch); slow at 1024")
    parser.add_argument("--out", default="sam2_gpu", help="result name")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    size = args.size or (1024 if cuda else 512)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype or
                                                                                  ("bf16" if cuda else "fp32")]
    n_frames = args.frames or (60 if cuda else 12)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = load_average()
    providers = ort_providers()

    config = hiera_tiny_config(size)
    frames = list(moving_scene_frames(640, 360, num_frames=n_frames))
    tracking = gpu_parts = None
    if cuda:
        tracking = bench_tracking({"main": MaskTracker(seeded_random_model(config), args.device, dtype)},
                                  frames)["main"]
    tracking_cpu = parts = None
    with tempfile.TemporaryDirectory() as tmp:
        cpu_model = seeded_random_model(config).float().eval()
        if cuda and "CUDAExecutionProvider" in providers:
            gpu_parts = bench_parts(cpu_model, args.repeats, Path(tmp) / "gpu", args.device)
        if not cuda or args.cpu_parts:
            parts = bench_parts(cpu_model, args.repeats, Path(tmp))
            # whole CPU tracking: exported encoder in onnxruntime vs all-torch, alternating frame by frame
            encoder = OrtSam2ImageEncoder(Path(tmp) / "image_encoder.onnx", threads=torch.get_num_threads())
            tracking_cpu = bench_tracking({"torch": MaskTracker(cpu_model),
                                           "ort_encoder": MaskTracker(cpu_model, image_encoder=encoder)},
                                          frames[: max(6, n_frames // 4)] if cuda else frames)
    tracking = tracking or tracking_cpu["torch"]
    fps = 1e3 / tracking["track"]["median_ms"]

    table = Table(f"SAM2 hiera-tiny-size, {size} px (median ms)", ["what", "where", "median_ms", "p90_ms", "vs torch"])
    table.add("track one object / frame", f"torch {args.device} {str(dtype).split('.')[-1]}",
              tracking["track"]["median_ms"], tracking["track"]["p90_ms"], "-")
    if tracking_cpu:
        table.add("track one object / frame", "cpu, encoder in onnxruntime",
                  tracking_cpu["ort_encoder"]["track"]["median_ms"], tracking_cpu["ort_encoder"]["track"]["p90_ms"],
                  ratio(tracking_cpu["ort_encoder"]["track"]["median_ms"],
                        tracking_cpu["torch"]["track"]["median_ms"]))
    for where, found in (("cuda", gpu_parts), ("cpu", parts)):
        for name, r in (found or {}).items():
            table.add(name, f"torch {where} fp32", r["torch"]["median_ms"], r["torch"]["p90_ms"], 1.0)
            table.add(name, f"onnxruntime {where}", r["ort"]["median_ms"], r["ort"]["p90_ms"], r["ort_over_torch"])
    print(table)
    print(f"tracked frames/s: {fps:.1f} (goal >= 60 at 1024 px on a GPU); onnxruntime providers: {providers}")
    if cuda and gpu_parts is None:
        print("ONNX parts on the GPU not timed: this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu)")
    mode = "cuda" if cuda else "cpu (GPU numbers pending: no CUDA device on the development machines)"
    path = write_results(args.out, {
        "mode": mode, "device": args.device,
        "device_name": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__,
        "cuda": torch.version.cuda, "image_size": size, "dtype": str(dtype), "frames": n_frames,
        "source_frame": [360, 640], "threads": torch.get_num_threads(), "tracking": tracking,
        "tracked_frames_per_s": fps, "ort_providers": providers, "parts_gpu": gpu_parts,
        "parts_gpu_skipped": None if gpu_parts is not None or not cuda else
        "onnxruntime has no CUDAExecutionProvider here (onnxruntime-gpu not installed)",
        "tracking_cpu": tracking_cpu, "parts": parts,
        "load_before": load_before, "load_after": load_average()}, args.results_dir)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
