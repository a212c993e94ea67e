"""The pure packet -> tokens -> model -> results path (no rclpy), on real H.264 and the real tiny model."""
from __future__ import annotations

import threading

import pytest

from ov2_ros.codec.errors import BitstreamError, ResolutionChangedError
from ov2_ros.codec.types import TokenizerConfig
from ov2_ros.errors import ConfigError
from ov2_ros.model.runtime import VlmRuntime, load_runtime
from ov2_ros.pipeline import InferenceWorker, PerceptionPipeline, PipelineConfig
from ov2_ros.segment import MaskTracker

SMALL = TokenizerConfig(window_canvases=8, min_group_frames=8, max_group_frames=16, max_pixels=40_000, sample_fps=0.0)


@pytest.fixture(scope="module")
def tiny():
    return load_runtime("tiny-random", max_new_tokens=2)


class RaisingRuntime(VlmRuntime):
    def answer(self, window, query):
        raise RuntimeError("out of memory (injected)")


def make(runtime=None, **kw) -> PerceptionPipeline:
    return PerceptionPipeline(PipelineConfig(tokenizer=SMALL, segment=False, **kw), runtime=runtime)


def feed(p: PerceptionPipeline, aus, start: int = 0) -> list:
    return [p.push(au, 100.0 + (start + i) / 30) for i, au in enumerate(aus)]


def test_every_au_is_decoded_and_groups_close_online(small_clip):
    p = make()
    results = feed(p, small_clip.aus)
    p.flush()
    assert p.stats.aus == 120 and p.stats.frames == 120 and p.stats.codec_issues == 0
    closed = [g for r in results for g in r.groups]
    assert closed and all(g.num_frames <= 16 for g in closed)                     # closed online, bounded
    assert all(a.end_frame == b.start_frame for a, b in zip(closed, closed[1:]))  # contiguous, nothing lost
    assert p.window is not None and p.window.end_frame == 120
    assert all(r.push_s > 0 for r in results)


def test_no_job_without_query_or_window(small_clip):
    p = make()
    assert p.next_job() is None
    p.set_query("track: the red square")
    assert p.next_job() is None                          # query before video
    feed(p, small_clip.aus[:40])
    job = p.next_job()
    assert job is not None and job.query.task == "track" and job.query.text == "the red square"
    assert p.next_job() is None                          # nothing new since


def test_only_the_newest_window_runs_and_stale_ones_are_counted(small_clip):
    p = make()
    p.set_query("ask: what is there")
    feed(p, small_clip.aus[:20])
    first = p.next_job()
    results = feed(p, small_clip.aus[20:100], start=20)
    new_groups = sum(len(r.groups) for r in results)
    assert new_groups >= 3
    job = p.next_job()
    assert job.window is p.window and job.seq == first.seq + 1
    assert p.stats.windows_dropped == new_groups - 1


def test_period_rerun_waits_for_the_period(small_clip):
    p = make(rerun="period", rerun_period_s=10.0)
    p.set_query("ask: what")
    feed(p, small_clip.aus[:40])
    assert p.next_job(now=0.0) is not None
    feed(p, small_clip.aus[40:80], start=40)
    assert p.next_job(now=5.0) is None
    assert p.next_job(now=10.5) is not None
    p.set_query("ask: something else")                   # a new query runs at once
    assert p.next_job(now=10.6) is not None


def test_infer_with_the_real_tiny_model(small_clip, tiny):
    p = make(tiny)
    p.set_query("when: the square moves")
    feed(p, small_clip.aus[:48])
    result = p.infer(p.next_job())
    assert result.error is None and result.answer.task == "ground"
    assert result.answer.window_frames == (result.job.window.start_frame, result.job.window.end_frame)
    assert result.answer.latency_s > 0 and p.stats.windows_run == 1
    start, end = result.window_frames
    assert set(result.stamps) == set(range(start, end))          # every frame of the window has its stamp
    assert result.stamps[start] == pytest.approx(100.0 + start / 30)


def test_model_failure_is_caught_counted_and_named(small_clip, tiny):
    p = make(RaisingRuntime(tiny.model, tiny.tokenizer))
    p.set_query("ask: what")
    feed(p, small_clip.aus[:40])
    result = p.infer(p.next_job())
    assert result.answer is None and "out of memory (injected)" in result.error
    assert "RuntimeError" in result.error and p.stats.model_errors == 1


def test_missing_model_is_said_not_faked(small_clip):
    p = make()
    p.set_query("ask: what")
    feed(p, small_clip.aus[:40])
    result = p.infer(p.next_job())
    assert result.answer is None and "not loaded" in result.error


def test_corrupt_aus_come_back_as_issues_and_decoding_goes_on(small_clip):
    p = make()
    feed(p, small_clip.aus[:5])
    bad = p.push(b"\x12\x34 not h264", 1.0)
    assert isinstance(bad.issue, BitstreamError) and bad.frames == 0
    feed(p, small_clip.aus[5:40], start=5)
    assert p.stats.codec_issues == 1 and p.stats.frames >= 37 and "BitstreamError" in p.status()["last_issue"]


def test_resolution_change_is_reported_once(clip_factory):
    p = make()
    feed(p, clip_factory(160, 120).aus[:20])
    results = feed(p, clip_factory(192, 144).aus[:30], start=20)
    issues = [r.issue for r in results if r.issue is not None]
    assert len(issues) == 1 and isinstance(issues[0], ResolutionChangedError) and "192x144" in str(issues[0])
    p.flush()
    assert p.window.source_size == (144, 192)


def test_frame_ring_is_bounded(small_clip):
    p = PerceptionPipeline(PipelineConfig(tokenizer=SMALL, frame_ring=8), tracker_factory=MaskTracker)
    feed(p, small_clip.aus)
    assert p.status()["frame_ring"] == 8


def test_worker_runs_jobs_and_survives_a_failing_consumer(small_clip, tiny):
    p = make(tiny)
    got, errors = [], []
    done = threading.Event()

    def on_result(result):
        got.append(result)
        if len(got) == 1:
            raise ValueError("publisher exploded")
        done.set()

    worker = InferenceWorker(p, on_result, errors.append, poll_s=0.02)
    try:
        p.set_query("ask: what")
        feed(p, small_clip.aus[:24])
        worker.poke()
        for i in range(24, 120, 8):
            if done.wait(0.5):
                break
            feed(p, small_clip.aus[i:i + 8], start=i)
            worker.poke()
        assert done.wait(30), "the worker stopped after the consumer raised"
    finally:
        worker.stop()
    assert isinstance(errors[0], ValueError) and len(got) >= 2 and got[-1].answer is not None


def test_worker_thread_runs_at_lower_priority():
    import os
    import time

    worker = InferenceWorker(make(), lambda result: None, nice=5, poll_s=0.01)
    try:
        deadline = time.monotonic() + 5
        while worker.native_id is None and time.monotonic() < deadline:
            time.sleep(0.01)
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.native_id) == min(19, base + 5)
    finally:
        worker.stop()


@pytest.mark.parametrize("bad", [dict(default_task="dance"), dict(rerun="sometimes"), dict(frame_ring=0),
                                 dict(backend="tflite"), dict(codec="vp9")])
def test_bad_config_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        PipelineConfig(**bad)
    assert issubclass(ConfigError, ValueError)


def test_pipeline_module_is_pure():
    import ast
    import pathlib

    import ov2_ros.pipeline as mod

    tree = ast.parse(pathlib.Path(mod.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"rclpy", "sensor_msgs", "std_msgs"}


# ---------------------------------------------------------------- backends (PipelineConfig.backend + export_dir)
@pytest.fixture(scope="module")
def ort_export(small_clip, tmp_path_factory):
    """`ov2-ros export` of the tiny model's VLM parts, built for the canvas size SMALL makes of the small clip."""
    from ov2_ros.cli import main

    p = make()
    feed(p, small_clip.aus[:40])
    h, w = p.window.canvas_size
    out = tmp_path_factory.mktemp("tiny_export")
    assert main(["export", "--out", str(out), "--parts", "vision,decoder", "--canvas", f"{h}x{w}"]) == 0
    return out


def run_backend(small_clip, query: str, **kw):
    p = PerceptionPipeline(PipelineConfig(tokenizer=SMALL, segment=False, max_new_tokens=6, **kw))
    assert p.load() == {}
    p.set_query(query)
    feed(p, small_clip.aus[:72])
    result = p.infer(p.next_job())
    p.close()
    return result


@pytest.mark.parametrize("query", ["track: the red square", "ask: what moves?"])
def test_onnxruntime_backend_answers_like_torch(small_clip, ort_export, query):
    from ov2_ros.engines.runtime import EngineVlmRuntime

    torch_result = run_backend(small_clip, query)
    ort_result = run_backend(small_clip, query, backend="onnxruntime", export_dir=str(ort_export))
    assert torch_result.error is None and ort_result.error is None
    a, b = torch_result.answer, ort_result.answer
    assert a.extra["new_tokens"] >= 1 and a.extra["new_tokens"] == b.extra["new_tokens"]
    assert (a.task, a.text, a.tracks, a.points, a.errors, a.window_frames, a.window_span) == (
        b.task, b.text, b.tracks, b.points, b.errors, b.window_frames, b.window_span)
    p = PerceptionPipeline(PipelineConfig(tokenizer=SMALL, segment=False, backend="onnxruntime",
                                          export_dir=str(ort_export)))
    p.load()
    assert isinstance(p._runtime, EngineVlmRuntime)       # really the exported parts, not torch


def test_backend_that_cannot_start_fails_load_by_name(ort_export, tmp_path):
    from ov2_ros.engines import ManifestError

    def load(**kw):
        PerceptionPipeline(PipelineConfig(segment=False, **kw)).load()

    with pytest.raises(ConfigError, match="onnxruntime backend needs export_dir"):
        load(backend="onnxruntime")
    with pytest.raises(ManifestError, match=f"{tmp_path}.*no manifest.*ov2-ros export"):
        load(backend="onnxruntime", export_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="exported from 'tiny-random', not '/models/other'"):
        load(backend="onnxruntime", export_dir=str(ort_export), model="/models/other")


def test_tensorrt_backend_fails_load_naming_what_to_install(ort_export):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt imports here; the missing-library path cannot be shown")
    from ov2_ros.engines import BackendUnavailableError

    p = PerceptionPipeline(PipelineConfig(segment=False, backend="tensorrt", export_dir=str(ort_export)))
    with pytest.raises(BackendUnavailableError, match="needs TensorRT.*pip install tensorrt"):
        p.load()
    assert p.missing == {}                   # a failure to start, not a silently missing stage


def test_trim_heap_returns_freed_memory_where_glibc_runs():
    import os
    import platform

    from ov2_ros.pipeline import trim_heap

    if platform.libc_ver()[0] != "glibc":
        assert trim_heap() is False
        return

    def rss_kib() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)

    blocks = [bytearray(64 << 10) for _ in range(4000)]     # 256 MB of heap blocks (below the mmap threshold)
    kept = blocks[1::2]                                      # every other one stays: the freed ones are holes
    del blocks                                               # that free() alone cannot give back
    before = rss_kib()
    assert trim_heap() is True
    assert before - rss_kib() > 64 << 10                     # > 64 MB of the 128 MB freed left the process
    assert len(kept) == 2000


@pytest.fixture
def no_cyclic_gc():
    """Only reference counting frees memory while the test runs: what a process sees between GC runs."""
    import gc

    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_issues_keep_nothing_alive_without_the_cyclic_gc(small_clip, no_cyclic_gc):
    """Issue 10 item 3: a returned issue used to hold its traceback -> push frame -> AU bytes and the pipeline."""
    import random
    import weakref

    rng = random.Random(3)
    p = make()
    flipped = [bytes(b ^ ((rng.random() < 0.02) << rng.randrange(8)) for b in au) for au in small_clip.aus[1:30]]
    results = [p.push(b"\x12\x34" + rng.randbytes(100_000), 0.0)] + feed(p, [small_clip.aus[0], *flipped])
    issues = [r.issue for r in results if r.issue is not None]
    assert isinstance(issues[0], BitstreamError) and len(issues) >= 2
    assert all(e.__traceback__ is None for e in issues)
    alive = weakref.ref(p), weakref.ref(p._tokenizer.decoder)
    del p, results, issues
    assert [r() for r in alive] == [None, None]


def test_flush_after_a_corrupt_last_au_counts_it_and_keeps_the_open_group(small_clip):
    """Issue 10 item 2: with frame threads FFmpeg reports the bad last AU only at drain; flush used to raise."""
    import numpy as np

    p = make()
    groups = [g for r in feed(p, small_clip.aus[:24]) for g in r.groups]
    groups += p.push(b"\x00\x00\x00\x01\x41" + np.random.default_rng(3).bytes(300), 2.0).groups   # FFmpeg objects at drain
    groups += p.flush()
    assert p.stats.codec_issues == 1 and "while flushing" in p.stats.last_issue
    assert p.stats.frames == 24 and groups and groups[-1].end_frame == 24


def test_window_of_the_old_resolution_is_dropped_at_the_change(clip_factory):
    """Issue 10 item 7: a query between the change and the first new group must not run on old frames."""
    p = make()
    feed(p, clip_factory(160, 120).aus[:40])
    assert p.window is not None and p.window.source_size == (120, 160)
    p.set_query("ask: what is there?")
    p.next_job()
    results = feed(p, clip_factory(192, 144).aus[:2], start=40)
    assert any(isinstance(r.issue, ResolutionChangedError) for r in results)
    assert p.window is None and p.next_job() is None and not p.has_pending()
    feed(p, clip_factory(192, 144).aus[2:40], start=42)
    assert p.window.source_size == (144, 192) and p.next_job().window.source_size == (144, 192)
