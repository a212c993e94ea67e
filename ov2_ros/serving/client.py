"""The robot side: ``ServedRuntime.answer(window, query)`` through the deployment, shaped like ``VlmRuntime``.

The robot keeps decoding and tokenizing; only windows travel (``payload``), and of a slid window only the groups
the replica is not known to hold. Failures never block the caller for longer than the request timeout: an
unreachable or restarting server raises ``ServerUnavailableError`` (the pipeline counts it and the node reports it
on /diagnostics), and further calls fail at once until a backoff delay (doubling, capped) has passed, then try again.

Transports: ``http://host:port`` posts to Serve's HTTP proxy (no Ray needed on the robot); any other address
(``auto``, ``ray://head:10001``, ``host:6379``) joins the cluster as a driver and calls a ``DeploymentHandle``.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from typing import Any

from ov2_ros.codec.types import CodecWindow, FrameGroup
from ov2_ros.model.answer import Answer, Query
from ov2_ros.serving import payload, wire
from ov2_ros.serving.errors import PayloadError, ServerError, ServerUnavailableError

SESSION_HEADER = "x-session-id"      # Ray Serve's consistent-hash router key (RAY_SERVE_SESSION_ID_HEADER_KEY)


class HttpTransport:
    def __init__(self, address: str, app: str):
        self.url = f"{address.rstrip('/')}/{app}"

    def call(self, body: bytes, stream: str, timeout_s: float) -> bytes:
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"content-type": "application/octet-stream", SESSION_HEADER: stream})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:   # 404: app not deployed (yet); 5xx: replica died or is starting
            raise ServerUnavailableError(f"{self.url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:    # refused, reset, DNS, timeout
            raise ServerUnavailableError(f"{self.url}: {getattr(exc, 'reason', exc)}") from exc

    def health(self, timeout_s: float = 5.0) -> dict[str, Any]:
        import json

        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=timeout_s) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServerUnavailableError(f"{self.url}/health: {getattr(exc, 'reason', exc)}") from exc


class HandleTransport:
    """A ``DeploymentHandle`` from a Ray driver (connects on first use; the handle is fetched again after errors)."""

    def __init__(self, address: str, app: str):
        self.address, self.app = address, app
        self._handle = None

    def _get(self):
        import ray
        from ray import serve

        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        if self._handle is None:
            self._handle = serve.get_app_handle(self.app)
        return self._handle

    def call(self, body: bytes, stream: str, timeout_s: float) -> bytes:
        try:
            handle = self._get().options(method_name="infer", session_id=stream)
            return handle.remote(body).result(timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here (actor died, timeout, app missing)
            self._handle = None
            raise ServerUnavailableError(f"Ray app {self.app!r} at {self.address}: {type(exc).__name__}: "
                                         f"{exc}") from exc

    def health(self, timeout_s: float = 5.0) -> dict[str, Any]:
        try:
            return self._get().options(method_name="health").remote().result(timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001
            self._handle = None
            raise ServerUnavailableError(f"Ray app {self.app!r}: {type(exc).__name__}: {exc}") from exc


def transport_for(address: str, app: str):
    if address.startswith(("http://", "https://")):
        return HttpTransport(address, app)
    return HandleTransport(address or "auto", app)


class ServedRuntime:
    """``answer(window, query)`` served by the Ray deployment ``app`` at ``address``."""

    def __init__(self, address: str = "http://127.0.0.1:8000", app: str = "ov2", stream_id: str | None = None,
                 encoding: payload.Encoding = "jpeg", quality: int = 90, timeout_s: float = 30.0,
                 backoff_s: float = 0.5, max_backoff_s: float = 4.0, transport=None):
        if encoding not in payload.ENCODINGS:
            from ov2_ros.errors import ConfigError

            raise ConfigError(f"encoding must be one of {payload.ENCODINGS}, got {encoding!r}")
        self.address, self.app = address, app
        self.stream = stream_id or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.encoding, self.quality, self.timeout_s = encoding, quality, timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.transport = transport or transport_for(address, app)
        self._encoded: dict[tuple[int, int, int], tuple[FrameGroup, payload.WireGroup]] = {}
        self._known: set[str] = set()          # group keys the replica is believed to hold
        self._lock = threading.Lock()
        self._delay = 0.0
        self._retry_at = 0.0
        self._seq = 0
        self.stats = {"requests": 0, "answered": 0, "failures": 0, "resends": 0, "bytes_sent": 0,
                      "last_bytes": 0, "last_error": "", "last_server": {}}

    # -------------------------------------------------------------------------------------------- encoding
    def _wire_groups(self, window: CodecWindow) -> list[payload.WireGroup]:
        """Each group of the window encoded once; groups that left the window are forgotten."""
        out, keep = [], {}
        for g in window.groups:
            k = (g.index, g.start_frame, g.end_frame)
            hit = self._encoded.get(k)
            if hit is None or hit[0] is not g:
                hit = (g, payload.encode_group(g, self.encoding, self.quality))
            keep[k] = hit
            out.append(hit[1])
        self._encoded = keep
        return out

    def request_bytes(self, window: CodecWindow, query: Query, resend: bool = False) -> tuple[bytes, list[str]]:
        """(the packed request, its group keys): every group when ``resend``, else those not known sent."""
        groups = self._wire_groups(window)
        keys = [g.key for g in groups]
        new = [g for g in groups if resend or g.key not in self._known]
        self._seq += 1
        return wire.pack(payload.request(self.stream, window, keys, query, new, self._seq)), keys

    # -------------------------------------------------------------------------------------------- calls
    @property
    def retry_in_s(self) -> float:
        return max(0.0, self._retry_at - time.monotonic())

    def _call(self, body: bytes) -> dict[str, Any]:
        self.stats["requests"] += 1
        self.stats["bytes_sent"] += len(body)
        self.stats["last_bytes"] = len(body)
        reply = wire.unpack(self.transport.call(body, self.stream, self.timeout_s))
        if not isinstance(reply, dict) or reply.get("v") != payload.VERSION:
            raise PayloadError(f"reply from {self.address} is not a version {payload.VERSION} reply")
        return reply

    def answer(self, window: CodecWindow, query: Query) -> Answer:
        """The served answer; raises ServerUnavailableError (down, restarting, timed out or backing off),
        ServerError (the replica failed on this window) or PayloadError."""
        with self._lock:
            wait = self.retry_in_s
            if wait > 0:
                raise ServerUnavailableError(f"{self.address} ({self.app}) unavailable: {self.stats['last_error']}; "
                                             f"retrying in {wait:.1f} s")
            t0 = time.perf_counter()
            try:
                body, keys = self.request_bytes(window, query)
                reply = self._call(body)
                if reply["status"] == "missing":          # the replica lost or never had these groups
                    self.stats["resends"] += 1
                    self._known.difference_update(reply["missing"])
                    body, keys = self.request_bytes(window, query)
                    reply = self._call(body)
            except ServerUnavailableError as exc:
                self._failed(exc)
                raise
            self._delay, self._retry_at = 0.0, 0.0
            status = reply.get("status")
            if status != "ok":
                self._known.clear()
                raise ServerError(f"{self.address} ({self.app}) answered {status}: {reply.get('error', reply)}")
            self._known = set(keys)
            self.stats["answered"] += 1
            self.stats["last_server"] = reply.get("server", {})
            answer = payload.answer_from_dict(reply["answer"])
            extra = {**answer.extra, "served": {**reply.get("server", {}), "request_bytes": self.stats["last_bytes"],
                                                "round_trip_s": time.perf_counter() - t0}}
            return replace(answer, latency_s=time.perf_counter() - t0, extra=extra)

    def _failed(self, exc: Exception) -> None:
        self.stats["failures"] += 1
        self.stats["last_error"] = str(exc)
        self._known.clear()                       # whatever it held may be gone with it
        self._delay = min(self.max_backoff_s, max(self.backoff_s, 2 * self._delay))
        self._retry_at = time.monotonic() + self._delay

    def health(self) -> dict[str, Any]:
        return self.transport.health()

    def status(self) -> dict[str, Any]:
        return {"serve_address": self.address, "serve_app": self.app, "serve_stream": self.stream,
                "serve_retry_in_s": round(self.retry_in_s, 2), **{f"serve_{k}": v for k, v in self.stats.items()
                                                                  if k != "last_server"}}

    def close(self) -> None:
        self._encoded.clear()
        self._known.clear()
