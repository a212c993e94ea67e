"""Frames the release's tool will not show: black, one flat colour, or a decoder's green-block corruption.

codec-video-prep 0.2.5 tests every sampled frame of a group at canvas size (RGB): a bad frame gives no P-blocks, and
a bad first frame hands the I-canvas to the group's first good frame (the two swap places, so the bad one is still
skipped). The same thresholds, on our canvas RGB (the tool's luma is OpenCV's BGR->YUV Y, so black is RGB near 0,
not the stream's Y = 16):

- black: mean Y <= 8 and std Y <= 6;
- solid colour: std Y <= 4 and, per channel, std <= 4 and max - min <= 12;
- green corruption: >= 35% of pixels with G >= 180 and R, B <= 90, or mean G > 120, mean G - max(mean R, mean B) > 80
  and std G < 50.
"""
from __future__ import annotations

import numpy as np

BLACK_Y_MEAN, BLACK_Y_STD = 8.0, 6.0
SOLID_Y_STD, SOLID_CHANNEL_STD, SOLID_RANGE = 4.0, 4.0, 12.0
GREEN_SHARE, GREEN_MIN, GREEN_RB_MAX = 0.35, 180, 90


def is_bad_frame(rgb: np.ndarray) -> bool:
    """(H, W, 3) uint8 RGB -> whether the release's tool treats the frame as contentless or corrupt (~0.3 ms at
    280x504: each statistic is computed only where the tests before it leave the answer open)."""
    import cv2

    if rgb.size == 0:
        return True
    y_mean, y_std = (float(v[0, 0]) for v in cv2.meanStdDev(cv2.extractChannel(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV), 0)))
    if y_mean <= BLACK_Y_MEAN and y_std <= BLACK_Y_STD:
        return True
    if y_std <= SOLID_Y_STD:
        _, stds = cv2.meanStdDev(rgb)
        flat = rgb.reshape(-1, 3)
        if (stds <= SOLID_CHANNEL_STD).all() and (flat.max(axis=0) - flat.min(axis=0) <= SOLID_RANGE).all():
            return True
    mean_r, mean_g, mean_b, _ = cv2.mean(rgb)
    if mean_g >= GREEN_MIN * GREEN_SHARE:          # a 35% share of G >= 180 needs at least this mean
        share = cv2.countNonZero(cv2.inRange(rgb, (0, GREEN_MIN, 0), (GREEN_RB_MAX, 255, GREEN_RB_MAX))) / (rgb.size // 3)
        if share >= GREEN_SHARE:
            return True
    if mean_g > 120.0 and mean_g - max(mean_r, mean_b) > 80.0:
        return float(cv2.meanStdDev(cv2.extractChannel(rgb, 1))[1][0, 0]) < 50.0
    return False
