"""Values passed between the codec stages and out of the codec layer.

Shapes use H, W for canvas pixels and P for patches (one row per 14-px patch). Patch positions are ``(t, h, w)``
ints: ``t`` is the *absolute* decoded-frame index in the stream, ``h, w`` the patch row/col in the source frame
resized to the canvas grid. Padding rows are ``(-1, -1, -1)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Mode = Literal["codec", "uniform", "hybrid"]
Structure = Literal["official", "seed"]
Scorer = Literal["bitcost", "bitcost_half", "saliency"]
PAD_POSITION = (-1, -1, -1)


@dataclass(frozen=True)
class TokenizerConfig:
    """Every knob of the streaming tokenizer. ROS parameters map one-to-one onto these fields."""

    mode: Mode = "codec"
    patch_size: int = 14
    max_pixels: int = 150_000
    canvases_per_group: int = 4          # 1 I-canvas + 3 P-canvases, as the released weights were trained
    window_canvases: int = 32            # CodecWindow budget = 8 groups of 4
    min_group_frames: int = 8
    max_group_frames: int = 64
    bitcost_ratio: float = 16.0          # group threshold = ratio x running mean bits/frame
    bitcost_ema: float = 0.05            # running-rate smoothing per frame
    attenuation_lambda: float = 0.5      # A / (1 + lambda * rho)
    variable_p_canvases: bool = False    # seed's variable P allocation across groups (not for released weights)
    uniform_group_frames: int = 32       # uniform mode: fixed group length in frames
    hybrid_full_frames: int = 2          # hybrid mode: full frames per group (rest are P-canvases)
    decoder_threads: Literal["frame", "slice", "none"] = "frame"
    thread_count: int = 2
    # Codec mode's structure. "official": the release's (codec-video-prep): sampled frames, readiness groups of
    # min..max_group_frames *sampled* frames, the best blocks of the group in (t, r, c) order on its P-canvases.
    # "seed": every frame, bit-cost groups, attenuated mass-split P-canvases (the seed's method, not for the release).
    structure: Structure = "official"
    sample_fps: float = 4.0              # live sampling rate (official structure); 0: every frame
    scorer: Scorer = "bitcost"           # official structure's block scores: estimated bit cost (bitcost_half: at half
                                         # size from 480 lines, ~3x cheaper, lower Spearman on pans), or seed saliency
    group_size: int = 32                 # offline: N canvases sample N / canvases_per_group x group_size frames

    def __post_init__(self) -> None:
        from ov2_ros.errors import ConfigError

        if self.mode not in ("codec", "uniform", "hybrid"):
            raise ConfigError(f"mode must be codec, uniform or hybrid, got {self.mode!r}")
        if not 1 <= self.min_group_frames <= self.max_group_frames:
            raise ConfigError(
                f"need 1 <= min_group_frames ({self.min_group_frames}) <= max_group_frames ({self.max_group_frames})")
        if self.canvases_per_group < 1 or self.window_canvases < self.canvases_per_group:
            raise ConfigError("need canvases_per_group >= 1 and window_canvases >= canvases_per_group")
        if self.structure not in ("official", "seed") or self.scorer not in ("bitcost", "bitcost_half", "saliency"):
            raise ConfigError(f"structure must be official or seed and scorer bitcost, bitcost_half or saliency, got "
                              f"{self.structure!r}, {self.scorer!r}")
        if not self.sample_fps >= 0 or self.group_size < 1:
            raise ConfigError(f"need sample_fps >= 0 and group_size >= 1, got {self.sample_fps}, {self.group_size}")
        if self.patch_size <= 0 or self.max_pixels < (2 * self.patch_size) ** 2:
            raise ConfigError("patch_size must be > 0 and max_pixels must hold at least one 2x2 patch block")

    @property
    def window_groups(self) -> int:
        return max(1, self.window_canvases // self.canvases_per_group)


@dataclass(frozen=True)
class AccessUnit:
    """One Annex-B access unit as received (one ROS message / one demuxed packet)."""

    data: bytes
    nal_types: tuple[int, ...]
    codec: Literal["h264", "hevc"] = "h264"

    @property
    def bits(self) -> int:
        return 8 * len(self.data)


@dataclass(eq=False)
class DecodedFrame:
    """A decoded picture with what the codec told us about it.

    ``luma`` is the full-resolution Y plane (H_src, W_src) uint8, read straight from the frame's plane (a view, not
    ``to_ndarray``). ``mvs`` is PyAV's motion-vector structured array (fields source, w, h, src_x, src_y, dst_x,
    dst_y, flags, motion_x, motion_y, motion_scale); empty for intra frames. ``stamp`` is the source stamp given to
    the decoder with the AU that produced this frame (opaque: a ROS Time, a float, None).
    """

    index: int                 # decoded-frame index since stream start (output order)
    time_s: float              # seconds since the first frame
    stamp: Any
    bits: int                  # size of this frame's access unit in bits
    pict_type: str             # "I", "P", "B" or "?"
    key_frame: bool
    width: int
    height: int
    luma: np.ndarray
    mvs: np.ndarray
    frame: Any = field(repr=False, default=None)   # the av.VideoFrame, for colour (rgb()) and SAM2
    corrupt: bool = False      # FFmpeg concealed damage (truncated/corrupt AU); pixels and MVs are partly guessed
    decode_index: int = -1     # this picture's AU number in decode order since stream start (-1: not known)
    reference: bool = True     # the AU marks the picture as one later pictures may predict from

    def rgb(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        """RGB uint8 (h, w, 3), optionally resized by libswscale on the way out."""
        f = self.frame.reformat(width=width or self.width, height=height or self.height, format="rgb24")
        return f.to_ndarray()


@dataclass(frozen=True)
class Canvas:
    """One packed canvas: ``pixels`` (H, W, 3) uint8 RGB and ``positions`` (H/p * W/p, 3) int32 in 2x2-block order."""

    kind: Literal["I", "P"]
    pixels: np.ndarray
    positions: np.ndarray
    group: int

    @property
    def num_patches(self) -> int:
        return int(self.positions.shape[0])

    @property
    def frames(self) -> np.ndarray:
        """Sorted distinct source frames with at least one patch on this canvas."""
        t = self.positions[:, 0]
        return np.unique(t[t >= 0])


@dataclass(frozen=True)
class FrameGroup:
    """A closed group of frames [start_frame, end_frame) with its canvases and the bit-cost that shaped it."""

    index: int
    start_frame: int
    end_frame: int                  # exclusive
    frame_bits: np.ndarray          # (end-start,) bits per frame
    threshold: float                # the bit-cost threshold the group was closed against
    canvases: tuple[Canvas, ...]
    frame_times: dict[int, float]   # frame index -> seconds, for frames that appear on a canvas or open the group
                                    # (official structure: on a canvas; a bad first frame is not shown)
    frame_stamps: dict[int, Any]    # frame index -> source stamp, same keys
    frame_billed: np.ndarray | None = None   # (end-start,) bits each frame added to the group's cost (anchor 0)
    # official structure: the group's sampled frames (n,) and their estimated bit-cost block scores
    # (n, block_rows, block_cols), what its readiness was measured on (``threshold`` is then a readiness sum)
    sampled: np.ndarray | None = None
    sampled_blocks: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass(frozen=True)
class CodecWindow:
    """The model's view: the last N groups, flattened.

    ``pixels``: (N, H, W, 3) uint8; ``patch_positions``: (N * H/p * W/p, 3) int32 with absolute frame indices.
    """

    groups: tuple[FrameGroup, ...]
    canvas_size: tuple[int, int]    # (H, W)
    source_size: tuple[int, int]    # (H_src, W_src)
    fps: float
    patch_size: int = 14

    @property
    def canvases(self) -> tuple[Canvas, ...]:
        return tuple(c for g in self.groups for c in g.canvases)

    @property
    def pixels(self) -> np.ndarray:
        return np.stack([c.pixels for c in self.canvases])

    @property
    def patch_positions(self) -> np.ndarray:
        return np.concatenate([c.positions for c in self.canvases]).astype(np.int32, copy=False)

    @property
    def num_tokens(self) -> int:
        """LLM tokens after the 2x2 merger."""
        return sum(c.num_patches for c in self.canvases) // 4

    @property
    def frame_times(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for g in self.groups:
            out.update(g.frame_times)
        return out

    @property
    def frame_stamps(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for g in self.groups:
            out.update(g.frame_stamps)
        return out

    @property
    def start_frame(self) -> int:
        return self.groups[0].start_frame

    @property
    def end_frame(self) -> int:
        return self.groups[-1].end_frame
