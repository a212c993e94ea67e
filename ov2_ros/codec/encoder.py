"""A streaming libx264 encoder: RGB frames in, Annex-B access units out, one frame at a time.

The settings are the ones a live subscriber needs: zero latency (no B-frames, no look-ahead), a fixed GOP with
SPS/PPS repeated before every IDR (so a node that joins mid-stream finds an entry point within one GOP), and no
scene-cut IDRs (GOP length stays predictable). ``synth.encode_frames``, the encoder bridge node and bag replay of raw
images all encode through this class, so every consumer sees the same bitstream shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ov2_ros.errors import ConfigError


@dataclass(frozen=True)
class EncoderConfig:
    fps: float = 30.0
    gop: int = 30             # frames between IDRs (each IDR carries SPS/PPS)
    crf: int = 23
    preset: str = "veryfast"
    bframes: int = 0          # >0 only for offline clips: B-frames add reorder delay
    threads: int = 0          # 0 = libx264 decides

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.gop < 1 or not 0 <= self.crf <= 51 or self.bframes < 0:
            raise ConfigError(f"encoder needs fps > 0, gop >= 1, 0 <= crf <= 51, bframes >= 0; got {self}")


class H264Encoder:
    """Encode RGB uint8 (H, W, 3) frames of one fixed size. ``encode`` returns 0..n access units (bytes)."""

    def __init__(self, width: int, height: int, config: EncoderConfig = EncoderConfig()) -> None:
        import av

        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ConfigError(f"H.264 (yuv420p) needs even width/height >= 16, got {width}x{height}")
        self.width, self.height, self.config = width, height, config
        rate = int(round(config.fps))
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, rate)
        ctx.framerate = Fraction(rate, 1)
        ctx.gop_size = config.gop
        ctx.max_b_frames = config.bframes
        if config.threads:
            ctx.thread_count = config.threads
        ctx.options = {
            "preset": config.preset, "crf": str(config.crf),
            "tune": "zerolatency" if config.bframes == 0 else "film",
            "x264-params": (f"repeat-headers=1:keyint={config.gop}:min-keyint={config.gop}:scenecut=0"
                            f":bframes={config.bframes}"),
        }
        self._ctx = ctx
        self._pts = 0

    def encode(self, rgb: np.ndarray) -> list[bytes]:
        import av

        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ConfigError(f"encoder expects uint8 ({self.height}, {self.width}, 3) RGB, got {rgb.dtype} "
                              f"{rgb.shape}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
        frame.pts = self._pts
        self._pts += 1
        return [bytes(p) for p in self._ctx.encode(frame)]

    def flush(self) -> list[bytes]:
        """Drain delayed frames (only B-frame configs hold any). The encoder cannot be used afterwards."""
        return [bytes(p) for p in self._ctx.encode(None)]
