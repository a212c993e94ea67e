"""The nodes' ROS parameters: one table (name, default, description) and the mapping onto the typed configs.

ROS parameters map one-to-one onto ``PipelineConfig`` fields, and ``tokenizer.<field>`` onto ``TokenizerConfig``
fields; the rest are node-only settings. ``config/ov2.yaml`` documents the same names (a test keeps them in sync).
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, NamedTuple

from ov2_ros.codec.encoder import EncoderConfig
from ov2_ros.codec.types import TokenizerConfig
from ov2_ros.pipeline import PipelineConfig


class Param(NamedTuple):
    name: str
    default: Any
    description: str


_PIPELINE_HELP = {
    "codec": "what the camera sends on image/compressed: h264 or hevc",
    "model": "VLM checkpoint: 'ov2-toy' (trained on synthetic shapes), 'tiny-random' (random weights, plumbing "
             "only), an HF id or a local directory",
    "device": "torch device for the model and SAM2: cpu, cuda, cuda:0",
    "backend": "inference backend: torch, onnxruntime, tensorrt or ray (a Ray Serve deployment: ov2-ros serve)",
    "export_dir": "onnxruntime/tensorrt: the folder `ov2-ros export --parts vision,decoder` wrote for this model "
                  "('' with torch)",
    "ray_address": "ray backend: Serve's HTTP endpoint (http://head:8000) or a Ray address (auto, ray://head:10001)",
    "ray_app": "ray backend: the Serve application name (`ov2-ros serve --app`), also its HTTP route",
    "ray_timeout_s": "ray backend: seconds before a request counts as failed (then retried with backoff)",
    "max_new_tokens": "generation budget per answer",
    "segment": "grow SAM2 masks from track/point answers",
    "segment_model": "SAM2 checkpoint: 'sam2-toy' (trained on synthetic shapes), 'tiny-random', an HF id "
                     "(facebook/sam2.1-hiera-tiny) or a local directory",
    "default_task": "task of a query without a prefix: track, point, waypoints, ground or ask",
    "rerun": "re-run the active query on each new frame group ('group') or every rerun_period_s ('period')",
    "rerun_period_s": "seconds between re-runs when rerun is 'period'",
    "frame_ring": "decoded frames kept for SAM2 (bounds memory; about 3 MB per 1080p frame)",
    "segment_max_frames": "newest frames SAM2 propagates to per answer (bounds SAM2 time per answer)",
    "trim_memory": "return freed heap to the OS after each answer (glibc malloc_trim): ~30% less RSS held between "
                   "CPU answers, slower decode under load",
    "overlay": "publish each answer drawn on its source frame (track points, waypoints, mask outline) on "
               "debug/overlay (sensor_msgs/Image rgb8)",
}
_TOKENIZER_HELP = {
    "mode": "token selection: codec (bit-cost groups + MV/residual blocks), uniform or hybrid",
    "patch_size": "vision patch size in pixels (14 for the released weights)",
    "max_pixels": "canvas pixel budget (smart-resize to multiples of 28)",
    "canvases_per_group": "canvases per frame group (1 I + 3 P for the released weights)",
    "window_canvases": "canvases per model window (32 = 8 groups of 4)",
    "min_group_frames": "shortest frame group",
    "max_group_frames": "longest frame group (also the most look-ahead)",
    "bitcost_ratio": "group threshold = ratio x running mean bits per frame",
    "bitcost_ema": "smoothing of the running bit rate per frame",
    "attenuation_lambda": "block-rank attenuation A/(1 + lambda*rho)",
    "variable_p_canvases": "seed's variable P-canvas allocation across groups (not for the released weights)",
    "uniform_group_frames": "uniform mode: frames per group",
    "hybrid_full_frames": "hybrid mode: full frames per group",
    "decoder_threads": "decoder threading: frame (fastest, a few frames of delay), slice or none",
    "thread_count": "decoder threads",
    "structure": "codec mode: official (the release's tool: sampled frames, readiness groups, top-k blocks) or seed (every frame, bit-cost groups, mass split)",
    "sample_fps": "official structure: frames sampled per second of stream (0: every frame)",
    "scorer": "official structure's block scores: bitcost (estimated per-macroblock bit cost) or saliency (seed)",
    "group_size": "sampled frames per readiness-threshold chunk (offline: N canvases sample N/4 x group_size frames)",
}
NODE_PARAMS: tuple[Param, ...] = (
    Param("autostart", True, "configure and activate at start-up (for launches without a lifecycle manager)"),
    Param("qos_depth", 300, "image subscription queue depth: 10 s at 30 fps absorbs CPU stalls; an AU lost to a full "
                            "queue corrupts the rest of its GOP"),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics messages"),
    Param("publish_canvases", False, "publish the packed canvases of each window on debug/canvases"),
    Param("marker_pixel_scale", 0.001, "metres per pixel for RViz markers drawn on the image plane"),
    Param("hardware_id", "ov2_node", "hardware_id field of the diagnostics status"),
    Param("inference_nice", 10, "niceness added to the inference thread (0 = same as decode): decode goes first"),
)
ENCODER_PARAMS: tuple[Param, ...] = (
    Param("input", "raw", "input type: raw (sensor_msgs/Image on image) or jpeg (CompressedImage on image/jpeg)"),
    Param("gop", 30, "frames between IDRs; SPS/PPS precede every IDR"),
    Param("fps", 30.0, "nominal frame rate given to the encoder (rate control)"),
    Param("crf", 23, "libx264 constant rate factor (lower = better quality, more bits)"),
    Param("preset", "veryfast", "libx264 preset (ultrafast..veryslow)"),
    Param("qos_depth", 10, "queue depth of the input and output QoS"),
)


def node_params() -> tuple[Param, ...]:
    """Every ov2_node parameter: node settings, pipeline fields, then ``tokenizer.*`` fields."""
    pipe_defaults = PipelineConfig()
    tok_defaults = TokenizerConfig()
    pipe = tuple(Param(f.name, getattr(pipe_defaults, f.name), _PIPELINE_HELP[f.name])
                 for f in fields(PipelineConfig) if f.name != "tokenizer")
    tok = tuple(Param(f"tokenizer.{f.name}", getattr(tok_defaults, f.name), _TOKENIZER_HELP.get(f.name, f.name))
                for f in fields(TokenizerConfig))
    return NODE_PARAMS + pipe + tok


def pipeline_config(values: dict[str, Any]) -> PipelineConfig:
    """Parameter values (name -> value, missing names take defaults) -> PipelineConfig. Raises ConfigError."""
    tok_names = {f.name for f in fields(TokenizerConfig)}
    tok = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("tokenizer.") and
           k.split(".", 1)[1] in tok_names}
    pipe_names = {f.name for f in fields(PipelineConfig)} - {"tokenizer"}
    pipe = {k: v for k, v in values.items() if k in pipe_names}
    return PipelineConfig(tokenizer=TokenizerConfig(**tok), **pipe)


def encoder_config(values: dict[str, Any]) -> EncoderConfig:
    return EncoderConfig(fps=float(values.get("fps", 30.0)), gop=int(values.get("gop", 30)),
                         crf=int(values.get("crf", 23)), preset=str(values.get("preset", "veryfast")))
