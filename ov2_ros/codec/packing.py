"""Canvas geometry (smart-resize) and packing of 2x2 patch blocks into canvases.

Layout (the contract the model processor relies on)
---------------------------------------------------
A canvas of ``H x W`` pixels (both multiples of ``2p``, ``p`` = patch size) is a grid of ``H/2p x W/2p`` *tiles*, each
tile one 2x2 block of patches (``2p x 2p`` pixels). **Patchify in 2x2-block order** means: walk the tiles in raster
order (tile row ``R``, then tile column ``C``), and inside each tile take its four patches as top-left, top-right,
bottom-left, bottom-right. Patch ``4k + j`` of a canvas is therefore patch ``j`` of tile ``k = R * (W/2p) + C``.
``patchify`` implements exactly this; ``positions`` rows follow the same order.

- I-canvas (a whole frame ``t``): tile ``(R, C)`` holds source block ``(R, C)``, so the pixels are just the frame
  resized to the canvas, and its positions are ``(t, 2R, 2C), (t, 2R, 2C+1), (t, 2R+1, 2C), (t, 2R+1, 2C+1)`` for
  ``k = 0 .. tiles-1``.
- P-canvas (selected blocks): blocks sorted by ``(t, r, c)`` fill tiles ``0, 1, 2 ...`` in raster order; block
  ``(t, r, c)`` in tile ``k`` gives positions ``(t, 2r, 2c), (t, 2r, 2c+1), (t, 2r+1, 2c), (t, 2r+1, 2c+1)``. Unused
  tiles are black with positions ``(-1, -1, -1)``.

So ``patchify(canvas.pixels)[i]`` is always the source patch ``positions[i]`` of frame ``t`` resized to the canvas
grid (or black padding).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ov2_ros.errors import ConfigError


def smart_resize(height: int, width: int, factor: int = 28, max_pixels: int = 150_000,
                 min_pixels: int | None = None) -> tuple[int, int]:
    """(h, w) multiples of ``factor`` closest to (height, width) in aspect, with ``min_pixels <= h*w <= max_pixels``.

    Rounds each side to the nearest multiple, then scales both sides down (floor) or up (ceil) by one common factor
    when the area is out of range, as the Qwen2-VL/LLaVA-OV processors do. 1920x1080 -> (280, 504).
    """
    if height <= 0 or width <= 0:
        raise ConfigError(f"smart_resize: image size must be positive, got {height}x{width}")
    min_pixels = factor * factor if min_pixels is None else min_pixels
    if max_pixels < factor * factor:
        raise ConfigError(f"smart_resize: max_pixels {max_pixels} holds no {factor}x{factor} cell")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
        while h * w > max_pixels:      # extreme aspect ratios: the factor floor can still overshoot
            if h >= w:
                h -= factor
            else:
                w -= factor
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


@dataclass(frozen=True)
class CanvasGrid:
    """Canvas pixel size and its patch / 2x2-block grid. ``height``, ``width`` are multiples of ``2 * patch``."""

    height: int
    width: int
    patch: int = 14

    def __post_init__(self) -> None:
        if self.height % (2 * self.patch) or self.width % (2 * self.patch) or self.height <= 0 or self.width <= 0:
            raise ConfigError(f"canvas {self.height}x{self.width} is not a positive multiple of 2x{self.patch} px")

    @classmethod
    def for_source(cls, height: int, width: int, patch: int = 14, max_pixels: int = 150_000) -> CanvasGrid:
        h, w = smart_resize(height, width, factor=2 * patch, max_pixels=max_pixels)
        return cls(h, w, patch)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def rows(self) -> int:
        return self.height // self.patch

    @property
    def cols(self) -> int:
        return self.width // self.patch

    @property
    def block_rows(self) -> int:
        return self.rows // 2

    @property
    def block_cols(self) -> int:
        return self.cols // 2

    @property
    def num_blocks(self) -> int:
        """Tiles per canvas: the P-canvas capacity in 2x2 blocks."""
        return self.block_rows * self.block_cols

    @property
    def num_patches(self) -> int:
        return self.rows * self.cols


# patch offsets (dh, dw) inside a 2x2 block, in 2x2-block order
_BLOCK_DH = np.array([0, 0, 1, 1], dtype=np.int32)
_BLOCK_DW = np.array([0, 1, 0, 1], dtype=np.int32)


def block_positions(blocks: np.ndarray) -> np.ndarray:
    """(n, 3) blocks ``(t, block_row, block_col)`` -> (4n, 3) int32 patch positions ``(t, h, w)`` in 2x2-block order."""
    blocks = np.asarray(blocks, dtype=np.int32).reshape(-1, 3)
    t = np.repeat(blocks[:, 0], 4)
    h = (2 * blocks[:, 1:2] + _BLOCK_DH).reshape(-1)
    w = (2 * blocks[:, 2:3] + _BLOCK_DW).reshape(-1)
    return np.stack([t, h, w], axis=1)


def frame_blocks(t: int, grid: CanvasGrid) -> np.ndarray:
    """All blocks of frame ``t`` in raster order: (num_blocks, 3) int32 ``(t, r, c)``."""
    r, c = np.divmod(np.arange(grid.num_blocks, dtype=np.int32), grid.block_cols)
    return np.stack([np.full_like(r, t), r, c], axis=1)


def pad_positions(positions: np.ndarray, grid: CanvasGrid) -> np.ndarray:
    """Append (-1, -1, -1) rows up to the canvas' patch count."""
    out = np.full((grid.num_patches, 3), -1, dtype=np.int32)
    out[: len(positions)] = positions
    return out


def _tiles(images: np.ndarray, grid: CanvasGrid) -> np.ndarray:
    """(n, H, W, C) canvas-size images -> (n, block_rows, block_cols, 2p, 2p, C) view of their tiles."""
    n, _, _, ch = images.shape
    b = 2 * grid.patch
    return images.reshape(n, grid.block_rows, b, grid.block_cols, b, ch).transpose(0, 1, 3, 2, 4, 5)


def _untile(tiles: np.ndarray, grid: CanvasGrid) -> np.ndarray:
    """(num_blocks, 2p, 2p, C) tiles in raster order -> (H, W, C) canvas."""
    b, ch = 2 * grid.patch, tiles.shape[-1]
    return tiles.reshape(grid.block_rows, grid.block_cols, b, b, ch).transpose(0, 2, 1, 3, 4).reshape(
        grid.height, grid.width, ch)


def _sorted_blocks(blocks: np.ndarray, grid: CanvasGrid) -> np.ndarray:
    blocks = np.asarray(blocks, dtype=np.int32).reshape(-1, 3)
    if len(blocks) > grid.num_blocks:
        raise ConfigError(f"{len(blocks)} blocks do not fit a canvas of {grid.num_blocks} tiles")
    return blocks[np.lexsort((blocks[:, 2], blocks[:, 1], blocks[:, 0]))]


def _pack_plane(blocks: np.ndarray, which: np.ndarray, planes: list[np.ndarray], grid: CanvasGrid,
                fill: int) -> np.ndarray:
    """Tiles ``(r_i, c_i)`` of ``planes[which[i]]`` ((H, W, C) each) into tiles 0, 1, ... of one (H, W, C) plane.
    Gathers from each source image's tile view, so no frame is copied whole. ``blocks`` are sorted by frame
    (``which`` non-decreasing), so each source's tiles are one slice of rows."""
    b = 2 * grid.patch
    tiles = np.full((grid.num_blocks, b, b, planes[0].shape[-1] if planes else 1), fill, dtype=np.uint8)
    bounds = np.searchsorted(which, np.arange(len(planes) + 1)).tolist()
    for k, plane in enumerate(planes):
        rows = slice(bounds[k], bounds[k + 1])
        tiles[rows] = _tiles(plane[None], grid)[0, blocks[rows, 1], blocks[rows, 2]]
    return _untile(tiles, grid)


def pack_blocks(blocks: np.ndarray, images: dict[int, np.ndarray], grid: CanvasGrid) -> tuple[np.ndarray, np.ndarray]:
    """Pack selected blocks into one P-canvas.

    blocks: (n, 3) ``(t, r, c)`` with ``n <= grid.num_blocks``; images: frame index -> (H, W, 3) uint8 RGB at canvas
    size, for every ``t`` in ``blocks``. Returns ``pixels`` (H, W, 3) uint8 and ``positions`` (H/p * W/p, 3) int32,
    blocks sorted by (t, r, c), padding black / (-1, -1, -1).
    """
    blocks = _sorted_blocks(blocks, grid)
    frames, which = np.unique(blocks[:, 0], return_inverse=True)
    pixels = _pack_plane(blocks, which, [images[int(t)] for t in frames], grid, 0)
    if not len(frames):
        pixels = np.zeros((grid.height, grid.width, 3), np.uint8)
    return pixels, pad_positions(block_positions(blocks), grid)


def pack_blocks_yuv(blocks: np.ndarray, images: dict[int, np.ndarray], grid: CanvasGrid) -> tuple[np.ndarray, np.ndarray]:
    """``pack_blocks`` from canvas-size I420 images ((H * 3/2, W) uint8, see ``canvas_yuv``): the Y, U and V planes
    are packed separately and the canvas is converted to RGB once, instead of converting every contributing frame.
    Same result as converting first: tiles are 2p px (even), so no chroma sample straddles two tiles."""
    if grid.patch % 2:
        return pack_blocks(blocks, {t: yuv_to_rgb(img) for t, img in images.items()}, grid)
    blocks = _sorted_blocks(blocks, grid)
    frames, which = np.unique(blocks[:, 0], return_inverse=True)
    h, w = grid.size
    half = CanvasGrid(h // 2, w // 2, grid.patch // 2)
    sources = [i420_planes(images[int(t)]) for t in frames]
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    y, u, v = i420_planes(out)
    y[:] = _pack_plane(blocks, which, [p[0][..., None] for p in sources], grid, 0)[..., 0]  # Y=0, U=V=128: black
    u[:] = _pack_plane(blocks, which, [p[1][..., None] for p in sources], half, 128)[..., 0]
    v[:] = _pack_plane(blocks, which, [p[2][..., None] for p in sources], half, 128)[..., 0]
    return yuv_to_rgb(out), pad_positions(block_positions(blocks), grid)


def i420_planes(yuv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views (H, W), (H/2, W/2), (H/2, W/2) of the Y, U, V planes of an I420 image (H * 3/2, W)."""
    h, w = yuv.shape[0] * 2 // 3, yuv.shape[1]
    flat = yuv.reshape(-1)
    q = (h // 2) * (w // 2)
    return (yuv[:h], flat[h * w: h * w + q].reshape(h // 2, w // 2), flat[h * w + q:].reshape(h // 2, w // 2))


def pack_frame(t: int, image: np.ndarray, grid: CanvasGrid) -> tuple[np.ndarray, np.ndarray]:
    """A whole frame as one canvas (I-canvas / uniform canvas): its pixels unchanged and all its positions."""
    if image.shape[:2] != grid.size:
        raise ConfigError(f"frame {t} image is {image.shape[:2]}, canvas is {grid.size}")
    return image, block_positions(frame_blocks(t, grid))


def patchify(pixels: np.ndarray, patch: int = 14) -> np.ndarray:
    """(H, W, C) canvas -> (H/p * W/p, p, p, C) patches in 2x2-block order (rows match ``Canvas.positions``)."""
    h, w, ch = pixels.shape
    if h % (2 * patch) or w % (2 * patch):
        raise ConfigError(f"canvas {h}x{w} is not a multiple of 2x{patch} px")
    br, bc = h // (2 * patch), w // (2 * patch)
    return pixels.reshape(br, 2, patch, bc, 2, patch, ch).transpose(0, 3, 1, 4, 2, 5, 6).reshape(-1, patch, patch, ch)


# --- canvas-size images -------------------------------------------------------------------------------------------
# Every decoded frame is shrunk to the canvas once, as planar YUV 4:2:0 (1.5 bytes/pixel), and kept only until its
# group closes; RGB is made only for frames that land on a canvas.

def resize_plane(plane: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 (h, w) plane -> (height, width): exact 2x area halvings while the plane is at least twice the target
    (cv2's SIMD fast path: 0.03 ms for 720p), then one bilinear step of less than 2x. A single non-integer area
    resize costs 2-6 ms at 720p/1080p, and every frame of the stream passes here. ``out``: a C-contiguous
    (height, width) uint8 array the last step writes into (and returns), sparing a temporary and a copy."""
    import cv2

    while plane.shape[0] >= 2 * height and plane.shape[1] >= 2 * width:
        h2, w2 = plane.shape[0] // 2, plane.shape[1] // 2
        plane = cv2.resize(plane[: 2 * h2, : 2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
    if plane.shape[:2] == (height, width):
        if out is None:
            return np.ascontiguousarray(plane)
        out[:] = plane
        return out
    return cv2.resize(plane, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


def plane_view(plane, width: int, height: int) -> np.ndarray:
    """An av.VideoPlane as a (height, width) uint8 view (rows are ``line_size`` apart)."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


def chroma_planes(av_frame) -> tuple[np.ndarray, np.ndarray] | None:
    """(U, V) views of a 4:2:0 av.VideoFrame's chroma planes (no copy); None for other formats or no frame."""
    if av_frame is None or av_frame.format.name not in ("yuv420p", "yuvj420p"):
        return None
    cw, ch = (av_frame.width + 1) // 2, (av_frame.height + 1) // 2
    return plane_view(av_frame.planes[1], cw, ch), plane_view(av_frame.planes[2], cw, ch)


def canvas_yuv(luma: np.ndarray, av_frame, grid: CanvasGrid) -> np.ndarray:
    """Canvas-size I420 image (H * 3/2, W) uint8: ``luma`` (the frame's full-res Y plane) and the chroma planes of
    ``av_frame`` resized to the canvas. Non-4:2:0 frames are converted by libswscale first."""
    h, w = grid.size
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    out_y, out_u, out_v = i420_planes(out)
    resize_plane(luma, h, w, out=out_y)
    planes = chroma_planes(av_frame) or chroma_planes(av_frame.reformat(format="yuv420p"))
    resize_plane(planes[0], h // 2, w // 2, out=out_u)
    resize_plane(planes[1], h // 2, w // 2, out=out_v)
    return out


def yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """Canvas I420 (H * 3/2, W) -> RGB (H, W, 3) uint8 (BT.601 limited range, as libswscale's default)."""
    import cv2

    return cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
