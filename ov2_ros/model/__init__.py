"""LLaVA-OneVision-2 model layer (pure: torch + transformers, no ROS).

Weight-compatible model and config, processor (CodecWindow -> model inputs), task prompts and parsers, and the
``VlmRuntime`` the node and evaluation call. Heavy modules load lazily so ``from ov2_ros.model import Answer``
stays cheap.
"""
from __future__ import annotations

import importlib

from ov2_ros.model.answer import Answer, Point, Query, Span, TrackPoint, Waypoint

_LAZY = {
    "LlavaOnevision2Config": "configuration", "LlavaOnevision2VisionConfig": "configuration",
    "LlavaOnevision2ForConditionalGeneration": "modeling", "LlavaOnevision2Model": "modeling",
    "load_model": "loading", "load_tokenizer": "loading",
    "prepare_inputs": "processor", "window_from_frames": "processor",
    "parse_answer": "parsers", "render_answer": "parsers", "parse_query": "prompts", "instruction": "prompts",
    "VlmRuntime": "runtime", "load_runtime": "runtime", "VisionCache": "vision_cache",
    "ModelError": "errors", "CheckpointNotFoundError": "errors", "CheckpointKeyError": "errors",
    "CorruptCheckpointError": "errors", "WrongModelTypeError": "errors", "ProcessorError": "errors",
}

__all__ = ["Answer", "Point", "Query", "Span", "TrackPoint", "Waypoint", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"ov2_ros.model.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ov2_ros.model' has no attribute {name!r}")
