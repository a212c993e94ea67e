"""``h264_encoder_node``: raw ``sensor_msgs/Image`` (``image``) or JPEG ``CompressedImage`` (``image/jpeg``) in,
H.264 ``CompressedImage`` (``image/compressed``, format ``h264``, one Annex-B AU per message) out.

For cameras that do not publish H.264. libx264 zero-latency: one AU out per frame in, same header (stamp and
frame_id) as the input frame, SPS/PPS before every IDR (GOP a parameter). A size change restarts the encoder, so
the next message is an IDR with the new headers. A plain node (no model to load, nothing to manage).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from ov2_ros.codec.encoder import H264Encoder
from ov2_ros.errors import Ov2Error
from ov2_ros.ros import convert
from ov2_ros.ros.params import ENCODER_PARAMS, encoder_config

NODE_NAME = "h264_encoder_node"


class H264EncoderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for p in ENCODER_PARAMS:
            self.declare_parameter(p.name, p.default, ParameterDescriptor(description=p.description))
        values = {p.name: self.get_parameter(p.name).value for p in ENCODER_PARAMS}
        self.config = encoder_config(values)   # ConfigError (a ValueError) names the bad value
        self._encoder: H264Encoder | None = None
        self.frames_in = self.aus_out = self.errors = 0
        depth = int(values["qos_depth"])
        sensor = QoSProfile(history=qos_profile_sensor_data.history, depth=depth,
                            reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability)
        # Reliable out: a lost P-frame corrupts every frame up to the next IDR, and a reliable publisher still
        # serves best-effort (sensor-data) subscribers such as ov2_node.
        self._pub = self.create_publisher(CompressedImage, "image/compressed", depth)
        self._diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if values["input"] == "jpeg":
            self._sub = self.create_subscription(CompressedImage, "image/jpeg", self._on_jpeg, sensor)
        elif values["input"] == "raw":
            self._sub = self.create_subscription(Image, "image", self._on_raw, sensor)
        else:
            raise Ov2Error(f"{NODE_NAME}: input must be 'raw' or 'jpeg', got {values['input']!r}")

    def _on_raw(self, msg: Image) -> None:
        self._encode(msg.header, lambda: convert.image_to_rgb(msg))

    def _on_jpeg(self, msg: CompressedImage) -> None:
        self._encode(msg.header, lambda: convert.compressed_to_rgb(msg))

    def _encode(self, header, read_rgb) -> None:
        self.frames_in += 1
        try:
            rgb = read_rgb()
            rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]   # yuv420p needs even sizes
            if self._encoder is None or (self._encoder.height, self._encoder.width) != rgb.shape[:2]:
                if self._encoder is not None:
                    self.get_logger().info(f"input size changed to {rgb.shape[1]}x{rgb.shape[0]}: new IDR")
                self._encoder = H264Encoder(rgb.shape[1], rgb.shape[0], self.config)
            aus = self._encoder.encode(np.ascontiguousarray(rgb))
        except (Ov2Error, ValueError) as exc:
            self.errors += 1
            self._report_error(f"frame {self.frames_in} ({header.frame_id or 'no frame_id'}) not encoded: {exc}")
            return
        for au in aus:   # zerolatency: exactly the frame just given
            self._pub.publish(convert.h264_message(au, header))
            self.aus_out += 1

    def _report_error(self, message: str) -> None:
        self.get_logger().warning(message)
        now = self.get_clock().now().to_msg()
        self._diag.publish(convert.diagnostics_message(
            f"{NODE_NAME}: {self.get_fully_qualified_name()}", NODE_NAME, "warn", message,
            {"frames_in": self.frames_in, "aus_out": self.aus_out, "errors": self.errors}, now))


def main(args: list[str] | None = None) -> None:
    try:
        with rclpy.init(args=args):
            node = H264EncoderNode()
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
