"""SAM2 mask tracking grown from VLM points, frame by frame over a live stream. No ROS, no torchvision."""
from ov2_ros.segment.errors import SegmentError, SegmentModelError
from ov2_ros.segment.loader import load_sam2
from ov2_ros.segment.prompts import prompts_from_answer
from ov2_ros.segment.tracker import MaskTracker, ObjectMask, PointPrompt

__all__ = ["MaskTracker", "ObjectMask", "PointPrompt", "SegmentError", "SegmentModelError", "load_sam2",
           "prompts_from_answer"]
