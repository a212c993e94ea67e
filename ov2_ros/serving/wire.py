"""Binary framing for requests and replies: a JSON header whose bytes values are moved out of band.

``pack(obj)`` -> ``b"OV2S" + u32 header length + JSON header + blobs``. Every ``bytes`` value in ``obj`` becomes
``{"$b": [offset, length]}`` in the header, so images travel as raw JPEG/plane bytes (no base64) and the client
needs neither Ray nor msgpack. Used as-is over HTTP and through a Ray ``DeploymentHandle``.
"""
from __future__ import annotations

import json
import struct
from typing import Any

from ov2_ros.serving.errors import PayloadError

MAGIC = b"OV2S"
_HEAD = struct.Struct("<4sI")


def pack(obj: Any) -> bytes:
    blobs: list[bytes] = []
    offset = 0

    def out(o: Any) -> Any:
        nonlocal offset
        if isinstance(o, (bytes, bytearray, memoryview)):
            b = bytes(o)
            blobs.append(b)
            offset += len(b)
            return {"$b": [offset - len(b), len(b)]}
        if isinstance(o, dict):
            return {k: out(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [out(v) for v in o]
        return o

    header = json.dumps(out(obj), separators=(",", ":")).encode()
    return _HEAD.pack(MAGIC, len(header)) + header + b"".join(blobs)


def unpack(data: bytes) -> Any:
    if len(data) < _HEAD.size:
        raise PayloadError(f"message of {len(data)} bytes is shorter than its {_HEAD.size}-byte frame header")
    magic, n = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise PayloadError(f"message does not start with {MAGIC!r} (got {magic!r}): not an ov2 serving payload")
    body = memoryview(data)[_HEAD.size + n:]
    try:
        header = json.loads(bytes(data[_HEAD.size:_HEAD.size + n]))
    except ValueError as exc:
        raise PayloadError(f"message header is not JSON: {exc}") from exc

    def inn(o: Any) -> Any:
        if isinstance(o, dict):
            if o.keys() == {"$b"}:
                start, length = o["$b"]
                if start + length > len(body):
                    raise PayloadError(f"blob [{start}, {start + length}) runs past the {len(body)}-byte body")
                return bytes(body[start:start + length])
            return {k: inn(v) for k, v in o.items()}
        if isinstance(o, list):
            return [inn(v) for v in o]
        return o

    return inn(header)
