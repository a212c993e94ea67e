"""LLaVA-OV-2 vision tower and LM decoder export (in progress)."""
from __future__ import annotations

from ov2_ros.engines.errors import ExportError


def export_vlm_parts(model, out_dir, groups, opset):
    raise ExportError(f"exporting the VLM parts {list(groups)} is not implemented yet; use --parts sam2")
