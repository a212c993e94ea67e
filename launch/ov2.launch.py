"""Launch ov2_node (and optionally the H.264 encoder bridge for cameras without H.264).

    ros2 launch ov2_ros ov2.launch.py image_topic:=/camera/image/compressed
    ros2 launch ov2_ros ov2.launch.py use_bridge:=true raw_image_topic:=/camera/image_raw params_file:=my.yaml

Every node setting (model, device, tokenizer...) lives in the params file (default: the package's config/ov2.yaml),
so there is one place to change it. ov2_node is a lifecycle node that activates itself (autostart: true), so no
lifecycle manager is needed.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "ov2_ros"


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "ov2.yaml")
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ros__parameters YAML for ov2_node and h264_encoder_node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace for both nodes"),
        DeclareLaunchArgument("image_topic", default_value="image/compressed",
                              description="H.264 CompressedImage topic ov2_node subscribes to"),
        DeclareLaunchArgument("query_topic", default_value="query",
                              description="std_msgs/String query topic ('track: the red mug')"),
        DeclareLaunchArgument("use_bridge", default_value="false",
                              description="start h264_encoder_node to encode raw or JPEG images into image_topic"),
        DeclareLaunchArgument("raw_image_topic", default_value="image",
                              description="bridge input: sensor_msgs/Image topic (bridge input:=raw)"),
        DeclareLaunchArgument("jpeg_image_topic", default_value="image/jpeg",
                              description="bridge input: JPEG CompressedImage topic (bridge input:=jpeg)"),
    ]
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    image_topic = LaunchConfiguration("image_topic")

    ov2 = LifecycleNode(
        package=PACKAGE, executable="ov2_node", name="ov2_node", namespace=namespace, output="screen",
        parameters=[params_file],
        remappings=[("image/compressed", image_topic), ("query", LaunchConfiguration("query_topic"))],
    )
    bridge = Node(
        package=PACKAGE, executable="h264_encoder_node", name="h264_encoder_node", namespace=namespace,
        output="screen", parameters=[params_file], condition=IfCondition(LaunchConfiguration("use_bridge")),
        remappings=[("image", LaunchConfiguration("raw_image_topic")),
                    ("image/jpeg", LaunchConfiguration("jpeg_image_topic")),
                    ("image/compressed", image_topic)],
    )
    return LaunchDescription(args + [ov2, bridge])
