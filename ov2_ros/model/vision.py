"""OneVision-Encoder vision tower, weight-compatible with the released ``model.visual.*`` keys.

Shapes at the boundary (P = patches, E = ViT width, D = LLM width, m = spatial_merge_size):
- input ``pixel_patches``: (P, C * patch * patch) or (P, C, patch, patch), patches in m x m block order;
- ``grid_thw``: (V, 3) int rows (T canvases, H patches, W patches); sum of T*H*W == P;
- ``patch_positions``: (P, 3) int (t, h, w) per patch; they drive the 3-D RoPE;
- output: (P / m^2, D) merged tokens.

Attention is windowed: every video row is cut into chunks of ``frame_windows_size`` canvases (the remainder is a
shorter chunk) and a patch attends only to patches of its own chunk. That is what makes the per-group vision cache
exact: a window's output depends on that window's pixels and positions alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from ov2_ros.model.configuration import LlavaOnevision2VisionConfig


def _norm(config: LlavaOnevision2VisionConfig) -> nn.Module:
    if config.layer_norm_type == "rms_norm":
        return nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class VisionRotaryEmbedding(nn.Module):
    """3-D RoPE frequencies from explicit (t, h, w) positions; the half head-dim is split 4:6:6 over T:H:W."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        half = config.head_dim // 2
        if config.head_dim % 2 or half % 16:
            raise ValueError(f"vision head_dim // 2 must be divisible by 16 for the 4:6:6 RoPE split, "
                             f"got head_dim={config.head_dim}")
        unit = half // 16
        self.base = float(config.rope_theta)
        self.sizes = (4 * unit, 6 * unit, 6 * unit)
        for name, size in zip(("t", "h", "w"), self.sizes):
            self.register_buffer(f"inv_freq_{name}", self._inv_freq(size), persistent=False)

    def _inv_freq(self, size: int) -> torch.Tensor:
        return 1.0 / (self.base ** (torch.arange(size, dtype=torch.float32) / size))

    def reset_buffers(self) -> None:
        """Refill the non-persistent buffers (meta-device / from_pretrained init leaves them empty)."""
        for name, size in zip(("t", "h", "w"), self.sizes):
            buf = getattr(self, f"inv_freq_{name}")
            buf.copy_(self._inv_freq(size).to(buf.device))

    def forward(self, patch_positions: torch.Tensor) -> torch.Tensor:
        """(P, 3) int positions -> (P, head_dim // 2) float32 angles."""
        pos = patch_positions.to(torch.float32)
        inv = (self.inv_freq_t, self.inv_freq_h, self.inv_freq_w)
        return torch.cat([torch.outer(pos[:, i], inv[i].to(pos.device)) for i in range(3)], dim=-1)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """Interleaved rotation used by the release: (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def apply_rope(q: torch.Tensor, k: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k: (W, H, L, Dh); angles: (W, L, Dh). Computed in float32 as the release does."""
    cos, sin = angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)
    qf, kf = q.float(), k.float()
    return ((qf * cos + rotate_pairs(qf) * sin).to(q.dtype), (kf * cos + rotate_pairs(kf) * sin).to(k.dtype))


def window_lengths(grid_thw: torch.Tensor | None, total: int, window: int) -> list[int]:
    """Patch counts of the attention windows: each grid row split into chunks of ``window`` canvases."""
    if grid_thw is None or grid_thw.numel() == 0:
        return [total]
    lengths: list[int] = []
    for t, h, w in grid_thw.tolist():
        per_canvas = int(h) * int(w)
        t = int(t)
        chunks = [t]
        if 0 < window < t:
            chunks = [window] * (t // window) + ([t % window] if t % window else [])
        lengths.extend(c * per_canvas for c in chunks)
    if sum(lengths) != total:
        raise ValueError(f"video_grid_thw {grid_thw.tolist()} describes {sum(lengths)} patches, got {total}")
    return lengths


class OneVisionEncoderEmbeddings(nn.Module):
    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.channels, self.patch = config.num_channels, config.patch_size
        self.patch_embedding = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=config.patch_size,
                                         stride=config.patch_size, bias=False)

    def forward(self, pixel_patches: torch.Tensor) -> torch.Tensor:
        x = pixel_patches.reshape(-1, self.channels, self.patch, self.patch).to(self.patch_embedding.weight.dtype)
        return self.patch_embedding(x).flatten(1)


class OneVisionEncoderMLP(nn.Module):
    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class OneVisionEncoderAttention(nn.Module):
    """Non-causal multi-head attention with 3-D RoPE, evaluated independently per window."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.config = config
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        if self.head_dim * self.num_heads != config.hidden_size:
            raise ValueError(f"vision hidden_size {config.hidden_size} not divisible by {self.num_heads} heads")
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(W, H, L, Dh) windows batched -> (W, L, H, Dh)."""
        impl = getattr(self.config, "_attn_implementation", None) or "eager"
        if impl == "eager":
            weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1,
                                    dtype=torch.float32).to(q.dtype)
            return torch.matmul(weights, v).transpose(1, 2)
        # sdpa, and flash_attention_2 on CUDA (SDPA dispatches to the flash kernel for bf16/fp16 there)
        return F.scaled_dot_product_attention(q, k, v, scale=self.scale).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, angles: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """hidden: (1, P, E); angles: (1, P, Dh); lengths: window patch counts summing to P."""
        qkv, angles = self.qkv(hidden)[0], angles[0]
        outs = []
        start = 0
        # Windows are contiguous in the sequence, so equal-length neighbours reshape straight into one batch (the
        # common case: 4-canvas groups of one canvas size). Fused kernels (SDPA) gain from the batch; eager
        # materialises the scores, which stay cache-sized only one window at a time.
        fused = (getattr(self.config, "_attn_implementation", None) or "eager") != "eager"
        for length, count in _runs(lengths) if fused else [(n, 1) for n in lengths]:
            stop = start + length * count
            q, k, v = (qkv[start:stop].reshape(count, length, 3, self.num_heads, self.head_dim)
                       .permute(2, 0, 3, 1, 4).unbind(0))
            q, k = apply_rope(q, k, angles[start:stop].reshape(count, length, -1))
            outs.append(self._attend(q, k, v).reshape(count * length, self.num_heads * self.head_dim))
            start = stop
        return self.proj(torch.cat(outs, dim=0).unsqueeze(0))


def _runs(lengths: list[int]) -> list[tuple[int, int]]:
    """[a, a, a, b] -> [(a, 3), (b, 1)]."""
    runs: list[tuple[int, int]] = []
    for length in lengths:
        if runs and runs[-1][0] == length:
            runs[-1] = (length, runs[-1][1] + 1)
        else:
            runs.append((length, 1))
    return runs


class OneVisionEncoderEncoderLayer(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.layer_norm1 = _norm(config)
        self.self_attn = OneVisionEncoderAttention(config)
        self.layer_norm2 = _norm(config)
        self.mlp = OneVisionEncoderMLP(config)

    def forward(self, hidden: torch.Tensor, angles: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.layer_norm1(hidden), angles, lengths)
        return hidden + self.mlp(self.layer_norm2(hidden))


class OneVisionEncoderEncoder(nn.Module):
    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(OneVisionEncoderEncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, angles: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        for layer in self.layers:
            hidden = layer(hidden, angles, lengths)
        return hidden


class LlavaOnevision2VisionPatchMerger(nn.Module):
    """LayerNorm each patch, concatenate the m x m patches of a block (consecutive rows), MLP to the LLM width."""

    def __init__(self, out_dim: int, context_dim: int, merge: int, eps: float):
        super().__init__()
        self.hidden_size = context_dim * merge * merge
        self.ln_q = nn.LayerNorm(context_dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(self.hidden_size, self.hidden_size), nn.GELU(),
                                 nn.Linear(self.hidden_size, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_q(x).reshape(-1, self.hidden_size))


class LlavaOnevision2VisionModel(nn.Module):
    """The ``model.visual`` module: embeddings -> pre-LN -> windowed encoder -> 2x2 merger."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        if config.use_head:
            raise ValueError("vision_config.use_head=True (pooling head) is not used by LLaVA-OV-2 and not supported")
        self.config = config
        self.spatial_merge_size = config.spatial_merge_size
        self.embeddings = OneVisionEncoderEmbeddings(config)
        self.layernorm_pre = _norm(config)
        self.encoder = OneVisionEncoderEncoder(config)
        self.video_rope = VisionRotaryEmbedding(config)
        self.merger = LlavaOnevision2VisionPatchMerger(config.out_hidden_size, config.hidden_size,
                                                       config.spatial_merge_size, config.layer_norm_eps)

    def forward(self, pixel_patches: torch.Tensor, grid_thw: torch.Tensor | None,
                patch_positions: torch.Tensor) -> torch.Tensor:
        """See the module docstring for shapes. Returns (P / m^2, out_hidden_size)."""
        if patch_positions.dim() == 3:
            patch_positions = patch_positions.squeeze(0)
        hidden = self.embeddings(pixel_patches).unsqueeze(0)
        total = hidden.shape[1]
        if patch_positions.shape != (total, 3):
            raise ValueError(f"patch_positions must be ({total}, 3) to match the patches, "
                             f"got {tuple(patch_positions.shape)}")
        angles = self.video_rope(patch_positions)
        angles = torch.cat([angles, angles], dim=-1).unsqueeze(0)
        lengths = window_lengths(grid_thw, total, self.config.frame_windows_size)
        hidden = self.encoder(self.layernorm_pre(hidden), angles, lengths)
        return self.merger(hidden[0])
