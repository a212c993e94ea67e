"""SAM2's two per-frame networks as plain tensor-in/tensor-out modules, for ONNX and TensorRT.

- ``Sam2ImageEncoder``: pixel_values (1, 3, S, S) -> high_res_feat0 (1, C/8, S/4, S/4), high_res_feat1
  (1, C/4, S/8, S/8), image_embed (1, C, S/16, S/16), image_pos_embed (1, C, S/16, S/16); C = fpn_hidden_size,
  S = image_size (1024 for the release, C = 256). The level-0/1 projections of the mask decoder are applied, as
  transformers caches them.
- ``Sam2PromptMaskDecoder``: image_embed (memory-conditioned in video mode), the two high-res maps, point_coords
  (1, 1, N, 2) in S-pixel units and point_labels (1, 1, N) int32 (1 on, 0 off, -1 pad) -> low_res_masks
  (1, 1, S/4, S/4) logits, iou_scores (1, 1, 1), object_score_logits (1, 1, 1), object_pointer (1, 1, C).
  Single-mask output (the tracking path); N is dynamic.
The memory attention/encoder between frames stays in torch (small, and stateful by nature).
"""
from __future__ import annotations

import torch
from torch import nn


class Sam2ImageEncoder(nn.Module):
    def __init__(self, sam2):
        super().__init__()
        self.sam2 = sam2
        self.sizes = [tuple(s) for s in sam2.config.vision_config.backbone_feature_sizes]

    def forward(self, pixel_values: torch.Tensor):
        out = self.sam2.get_image_features(pixel_values, return_dict=True)
        # transformers flattens to (HW, B, C); give TensorRT plain NCHW maps
        maps = [f.permute(1, 2, 0).reshape(f.shape[1], f.shape[2], *s) for f, s in zip(out.fpn_hidden_states,
                                                                                      self.sizes)]
        pos = out.fpn_position_encoding[-1]
        pos = pos.permute(1, 2, 0).reshape(pos.shape[1], pos.shape[2], *self.sizes[-1])
        return maps[0], maps[1], maps[2], pos


class Sam2PromptMaskDecoder(nn.Module):
    def __init__(self, sam2):
        super().__init__()
        self.sam2 = sam2

    def forward(self, image_embed, high_res_feat0, high_res_feat1, point_coords, point_labels):
        out = self.sam2._single_frame_forward(
            pixel_values=None, input_points=point_coords, input_labels=point_labels,
            image_embeddings=[high_res_feat0, high_res_feat1, image_embed], multimask_output=False)
        return out.pred_masks, out.iou_scores, out.object_score_logits, out.object_pointer


def sam2_example_inputs(sam2, num_points: int = 1, seed: int = 0) -> tuple[dict, dict]:
    """Deterministic example inputs for both parts (pixel-space points inside the image)."""
    g = torch.Generator().manual_seed(seed)
    s = int(sam2.config.image_size)
    c = int(sam2.config.vision_config.fpn_hidden_size)
    (h0, w0), (h1, w1), (h2, w2) = sam2.config.vision_config.backbone_feature_sizes
    dtype = next(sam2.parameters()).dtype
    encoder = {"pixel_values": torch.randn(1, 3, s, s, generator=g).to(dtype)}
    decoder = {
        "image_embed": torch.randn(1, c, h2, w2, generator=g).to(dtype),
        "high_res_feat0": torch.randn(1, c // 8, h0, w0, generator=g).to(dtype),
        "high_res_feat1": torch.randn(1, c // 4, h1, w1, generator=g).to(dtype),
        "point_coords": (torch.rand(1, 1, num_points, 2, generator=g) * (s - 1)).to(dtype),
        "point_labels": (torch.arange(num_points) == 0).to(torch.int32).view(1, 1, num_points),
    }
    return encoder, decoder


class OrtSam2ImageEncoder:
    """The exported ``sam2_image_encoder`` in onnxruntime, as ``MaskTracker(image_encoder=...)`` takes it."""

    def __init__(self, onnx_path, threads: int | None = None):
        from ov2_ros.engines.onnx_io import ort_session

        self.session = ort_session(onnx_path, threads=threads)

    def __call__(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        outs = self.session.run(None, {"pixel_values": pixel_values.float().cpu().numpy()})
        return [torch.from_numpy(o) for o in outs]


class TrtSam2ImageEncoder:
    """The ``sam2_image_encoder`` TensorRT engine (``ov2-ros build-engines``) for ``MaskTracker(image_encoder=...)``
    on CUDA; outputs stay on the GPU. Runs only where TensorRT imports (not in this project's CI)."""

    def __init__(self, engine_path):
        from ov2_ros.engines.tensorrt_backend import TrtPart

        self.part = TrtPart(engine_path)

    def __call__(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        outs = self.part(pixel_values=pixel_values.float().cuda())
        return [outs[name] for name in self.part.outputs]
