"""Fleet serving: the runtime as a Ray Serve deployment (``deployment``, needs ``pip install .[serve]``) and the
robot-side client (``client.ServedRuntime``, plain urllib over HTTP). Windows travel as ``payload`` groups."""
from ov2_ros.serving.client import ServedRuntime
from ov2_ros.serving.errors import PayloadError, ServerError, ServerUnavailableError, ServingError
from ov2_ros.serving.payload import ENCODINGS, StreamGroups, decode_group, encode_group

__all__ = ["ENCODINGS", "PayloadError", "ServedRuntime", "ServerError", "ServerUnavailableError", "ServingError",
           "StreamGroups", "decode_group", "encode_group"]
