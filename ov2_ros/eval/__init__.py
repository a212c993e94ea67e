"""Offline evaluation: bag replay through the live pipeline, the paper's metrics, and reports. Pure: no rclpy.

Modules (imported on use, so ``import ov2_ros.eval`` stays cheap):
- ``bags``: rosbag2 (MCAP/sqlite3) image input and results output via ``rosbags``;
- ``replay``: ``replay_bag(bag, out, ReplayConfig)`` -> ``ReplayResults`` (+ results bag, results.json, masks/);
- ``results``: the results.json values and their round trip;
- ``annotations``: annotations.json schema and validation (README.md, section Evaluation);
- ``metrics``: JumpScore mAP, grounding mIoU and R@k, point-in-mask P/R/F1, J&F, latency percentiles;
- ``scoring``: predictions merged across windows, scored against one annotation;
- ``report``: report.html and its PNGs; ``compare``: codec vs uniform on one bag at equal budgets.
"""
from ov2_ros.eval.errors import (AnnotationError, BagError, ClockJumpError, EvalError, ResultsError,
                                 TopicNotFoundError)

__all__ = ["AnnotationError", "BagError", "ClockJumpError", "EvalError", "ResultsError", "TopicNotFoundError"]
