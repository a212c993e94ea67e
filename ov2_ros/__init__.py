"""ov2_ros: language-grounded video perception from H.264 codec-stream tokens with LLaVA-OneVision-2.

Subpackages (data flows one way)::

    codec/   H.264 access units -> decoded frames -> CodecWindow (pure: numpy + PyAV + OpenCV)
    model/   CodecWindow + query -> Answer (LLaVA-OV-2, processor, task prompts and parsers)
    segment/ VLM points -> SAM2 masks
    eval/    rosbag replay, metrics, reports
    ros/     the only layer that imports rclpy
"""

from ov2_ros._logging import quiet_optional_imports

__version__ = "0.1.0"
__all__ = ["__version__"]

quiet_optional_imports()
