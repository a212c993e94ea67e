"""The Ray Serve deployment: one ``VlmRuntime`` per replica, requests from many robots batched together.

Each request is one ``wire.pack``-ed window request (``payload.request``), over HTTP (``POST /<app>``) or a
``DeploymentHandle`` (``infer``). The replica resolves the window from the stream's cached groups plus the new ones
(``payload.StreamGroups``), then ``@serve.batch`` gathers windows from different streams into one call of the
runtime (``answer_batch`` where the runtime has it, else one ``answer`` per window), run on one model thread so the
replica's event loop keeps accepting requests, health checks and metric reads meanwhile.

Replies: ``{"status": "ok", "answer": Answer.to_json_dict(), "server": {...}}``, ``{"status": "missing",
"missing": [keys]}`` (the client re-sends those groups) or ``{"status": "error"|"bad_request", "error": msg}``.
Streams stick to a replica through Ray's consistent-hash router on the stream id (HTTP ``x-session-id``, handle
``session_id``), so a slide finds its groups; a replica that lost them (restart, other replica) says ``missing``.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, asdict
from typing import Any

from ray import serve

from ov2_ros.serving import payload, wire
from ov2_ros.serving.errors import PayloadError

ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"


@dataclass(frozen=True)
class ServeConfig:
    """What ``ov2-ros serve`` and ``bench/fleet.py`` deploy; the replica options follow from it."""

    model: str = "tiny-random"
    backend: str = "torch"               # the replica's runtime: torch | onnxruntime | tensorrt
    device: str = "cpu"                  # cuda on GPU replicas
    export_dir: str = ""
    max_new_tokens: int = 128
    replicas: int = 1
    num_gpus: float = 0.0                # per replica (1 on a GPU pool)
    num_cpus: float = 1.0                # per replica (logical: what Ray reserves)
    torch_threads: int = 0               # 0 = torch's default
    max_batch_size: int = 8
    batch_wait_s: float = 0.02           # how long a batch waits to fill
    max_streams: int = 64                # streams whose groups a replica keeps (LRU); the vision cache holds 8
    #                                      groups' tokens per stream (8B: ~6 MB a 4-canvas group)
    max_ongoing_requests: int = 32


class _Stats:
    """Recent request metrics of one replica (what ``GET /<app>/health`` and ``stats`` report)."""

    def __init__(self, keep: int = 512):
        self.waiting = 0                 # requests decoded and queued for a batch, not yet running
        self.running = 0
        self.requests = self.answered = self.missing = self.errors = 0
        self.batch_sizes: deque[int] = deque(maxlen=keep)
        self.latency_s: deque[float] = deque(maxlen=keep)
        self.started = time.time()

    def summary(self) -> dict[str, Any]:
        def pct(values, q):
            v = sorted(values)
            return v[min(len(v) - 1, int(q * len(v)))] if v else None

        sizes = list(self.batch_sizes)
        return {"queue_depth": self.waiting, "running": self.running, "requests": self.requests,
                "answered": self.answered, "missing_replies": self.missing, "errors": self.errors,
                "batches": len(sizes), "batch_size_mean": sum(sizes) / len(sizes) if sizes else None,
                "batch_size_max": max(sizes, default=None),
                "latency_p50_s": pct(self.latency_s, 0.5), "latency_p99_s": pct(self.latency_s, 0.99),
                "uptime_s": time.time() - self.started}


class Ov2Server:
    def __init__(self, config: dict[str, Any]):
        from ray.serve import metrics

        import torch

        from ov2_ros.engines.runtime import select_backend

        self.config = ServeConfig(**config)
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        c = self.config
        self.runtime = select_backend(c.backend, c.model, device=c.device, export_dir=c.export_dir or None,
                                      max_new_tokens=c.max_new_tokens,
                                      **({"vision_cache_windows": 8 * c.max_streams} if c.backend == "torch" else {}))
        self.streams: OrderedDict[str, payload.StreamGroups] = OrderedDict()
        self.stats = _Stats()
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="ov2-model")
        self._batched.set_max_batch_size(c.max_batch_size)
        self._batched.set_batch_wait_timeout_s(c.batch_wait_s)
        self._m_queue = metrics.Gauge("ov2_queue_depth", "windows waiting for a batch on this replica")
        self._m_batch = metrics.Histogram("ov2_batch_size", "windows per model batch",
                                          boundaries=[1, 2, 3, 4, 6, 8, 12, 16, 32])
        self._m_latency = metrics.Histogram("ov2_latency_s", "request seconds in the replica",
                                            boundaries=[0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32])
        self._m_missing = metrics.Counter("ov2_missing_groups", "requests answered 'missing' (groups re-sent)")

    # ------------------------------------------------------------------------------------------ entry points
    async def __call__(self, request) -> Any:
        """HTTP: ``POST /<app>`` with a packed request; ``GET /<app>/health`` -> JSON stats."""
        from starlette.responses import JSONResponse, Response

        if request.method == "GET":
            return JSONResponse(self.health())
        reply = await self.infer(await request.body())
        return Response(reply, media_type="application/octet-stream")

    async def infer(self, body: bytes) -> bytes:
        t0 = time.perf_counter()
        self.stats.requests += 1
        try:
            req = wire.unpack(body)
            payload.check_request(req)
            # JPEG/I420 decoding off the event loop (OpenCV and zlib release the GIL), so batches keep filling
            groups = self._stream(req["stream"])
            window, missing = await asyncio.get_running_loop().run_in_executor(None, groups.window, req)
            if missing:
                self.stats.missing += 1
                self._m_missing.inc()
                return wire.pack({"v": payload.VERSION, "status": "missing", "missing": missing})
            query = payload.query_from_dict(req["query"])
            self.stats.waiting += 1
            self._m_queue.set(self.stats.waiting)
            answer, batch = await self._batched((window, query))
            if isinstance(answer, Exception):
                raise answer
        except PayloadError as exc:
            self.stats.errors += 1
            return wire.pack({"v": payload.VERSION, "status": "bad_request", "error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a model failure is the client's to report, the replica goes on
            self.stats.errors += 1
            return wire.pack({"v": payload.VERSION, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
        dt = time.perf_counter() - t0
        self.stats.answered += 1
        self.stats.latency_s.append(dt)
        self._m_latency.observe(dt)
        return wire.pack({"v": payload.VERSION, "status": "ok", "answer": answer.to_json_dict(),
                          "server": {"replica": self.replica, "model": self.config.model, "batch_size": batch,
                                     "server_s": dt}})

    def health(self) -> dict[str, Any]:
        return {"status": "ok" if self.runtime is not None else "down", "replica": self.replica,
                "config": asdict(self.config), "streams": len(self.streams), **self.stats.summary()}

    def check_health(self) -> None:
        """Ray Serve's periodic probe: a replica whose runtime is gone is restarted."""
        if self.runtime is None:
            raise RuntimeError("the model runtime is not loaded")

    # ------------------------------------------------------------------------------------------ internals
    def _stream(self, stream: str) -> payload.StreamGroups:
        groups = self.streams.pop(stream, None) or payload.StreamGroups()
        self.streams[stream] = groups          # most recent last
        while len(self.streams) > self.config.max_streams:
            self.streams.popitem(last=False)
        return groups

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _batched(self, items: list[tuple]) -> list[tuple]:
        self.stats.waiting -= len(items)
        self._m_queue.set(self.stats.waiting)
        self.stats.batch_sizes.append(len(items))
        self._m_batch.observe(len(items))
        loop = asyncio.get_running_loop()
        self.stats.running += len(items)
        try:
            results = await loop.run_in_executor(self._model_thread, self._run_batch, items)
        finally:
            self.stats.running -= len(items)
        return [(r, len(items)) for r in results]

    def _run_batch(self, items: list[tuple]) -> list[Any]:
        """Answers for a batch of (window, query); one failing window fails only itself."""
        return answer_items(self.runtime, items)


def answer_items(runtime, items: list[tuple]) -> list[Any]:
    """The runtime's answers to (window, query) items, an exception object in place of each that failed.

    One batched generation (``runtime.answer_batch``) where the runtime has it; when that batch fails, each window
    is answered alone, so a bad window fails only itself."""
    if len(items) > 1 and hasattr(runtime, "answer_batch"):
        try:
            return list(runtime.answer_batch(items))
        except Exception:  # noqa: BLE001 - retried one by one below, which names the failing window
            pass
    out: list[Any] = []
    for window, query in items:
        try:
            out.append(runtime.answer(window, query))
        except Exception as exc:  # noqa: BLE001 - reported to that window's client only
            out.append(exc)
    return out


def build_app(config: ServeConfig):
    """The bound application for ``serve.run``: replicas, resources, sticky routing by stream id."""
    from ray.serve.config import RequestRouterConfig

    deployment = serve.deployment(Ov2Server, name="Ov2Server").options(
        num_replicas=config.replicas, max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
        health_check_period_s=5.0, health_check_timeout_s=30.0,
        request_router_config=RequestRouterConfig(request_router_class=ROUTER,
                                                  request_router_kwargs={"num_fallback_replicas": 1}))
    return deployment.bind(asdict(config))
