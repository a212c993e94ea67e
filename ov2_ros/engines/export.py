"""``ov2-ros export``: write the ONNX parts of the stack plus ``manifest.json``, each verified in onnxruntime."""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

from ov2_ros.engines.manifest import Manifest, PartSpec, Profile, combined_hash, state_dict_hash, write_manifest
from ov2_ros.engines.onnx_io import DEFAULT_OPSET, export_part
from ov2_ros.errors import ConfigError

PART_GROUPS = ("vision", "decoder", "sam2")
SAM2_MAX_POINTS = 16         # TensorRT profile range for the number of prompt points


def sam2_for(model: str) -> str:
    """The SAM2 checkpoint that goes with a VLM checkpoint name."""
    from ov2_ros.segment.loader import DEFAULT_CHECKPOINT, TINY_RANDOM

    return TINY_RANDOM if model == TINY_RANDOM else DEFAULT_CHECKPOINT


def export_sam2(sam2_model: str, out_dir: pathlib.Path, opset: int = DEFAULT_OPSET,
                tolerance: float = 1e-4) -> list[PartSpec]:
    """SAM2 image encoder and prompt/mask decoder (see ``sam2_parts`` for the tensors)."""
    from ov2_ros.engines.sam2_parts import Sam2ImageEncoder, Sam2PromptMaskDecoder, sam2_example_inputs
    from ov2_ros.segment.loader import load_sam2

    sam2 = load_sam2(sam2_model)
    digest = state_dict_hash(sam2)
    enc_in, dec_in = sam2_example_inputs(sam2, num_points=1)
    _, dec_more = sam2_example_inputs(sam2, num_points=3, seed=1)
    encoder = export_part("sam2_image_encoder", Sam2ImageEncoder(sam2), enc_in,
                          ["high_res_feat0", "high_res_feat1", "image_embed", "image_pos_embed"], out_dir,
                          tolerance=tolerance, opset=opset)
    points_axis = {2: "num_points"}
    static = {k: tuple(v.shape) for k, v in dec_in.items() if not k.startswith("point_")}
    profile = Profile("points", {**{k: (s, s, s) for k, s in static.items()},
                                 "point_coords": ((1, 1, 1, 2), (1, 1, 2, 2), (1, 1, SAM2_MAX_POINTS, 2)),
                                 "point_labels": ((1, 1, 1), (1, 1, 2), (1, 1, SAM2_MAX_POINTS))})
    decoder = export_part("sam2_mask_decoder", Sam2PromptMaskDecoder(sam2), dec_in,
                          ["low_res_masks", "iou_scores", "object_score_logits", "object_pointer"], out_dir,
                          dynamic_axes={"point_coords": points_axis, "point_labels": points_axis},
                          profiles=[profile], check_inputs=[dec_more], tolerance=tolerance, opset=opset)
    return [dataclasses.replace(p, source_model=sam2_model, source_hash=digest) for p in (encoder, decoder)]


def export_model(model: str, out_dir: str | pathlib.Path, parts: Sequence[str] = PART_GROUPS,
                 sam2_model: str | None = None, opset: int = DEFAULT_OPSET,
                 canvas_hw: tuple[int, int] | None = None) -> Manifest:
    """Export the requested part groups of ``model`` into ``out_dir`` and write the manifest.

    ``canvas_hw``: the canvas size the vision part is built for (default 280x504, 16:9 under 150,000 pixels).
    """
    unknown = sorted(set(parts) - set(PART_GROUPS))
    if unknown or not parts:
        raise ConfigError(f"unknown parts {unknown or list(parts)}; choose from {', '.join(PART_GROUPS)}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs: list[PartSpec] = []
    extra: dict = {}
    vlm_groups = [g for g in parts if g != "sam2"]
    if vlm_groups:
        from ov2_ros.engines.vlm_parts import DEFAULT_CANVAS, export_vlm_parts

        vlm_specs, extra["vlm"] = export_vlm_parts(model, out, vlm_groups, opset=opset,
                                                   canvas_hw=tuple(canvas_hw or DEFAULT_CANVAS))
        specs += vlm_specs
    if "sam2" in parts:
        specs += export_sam2(sam2_model or sam2_for(model), out, opset=opset)
    manifest = Manifest(model=model, source_hash=combined_hash(specs), opset=opset, parts=tuple(specs), extra=extra)
    write_manifest(manifest, out)
    return manifest
