"""``annotations.json`` (the schema ``ov2-ros eval`` scores) + videos or bags -> training examples.

Each annotated video is found by name in the data folder: a rosbag2 folder ``DIR/NAME`` (image topic ``topic``,
H.264/HEVC passed through, JPEG/raw encoded as the bridge does) or a video file ``DIR/NAME.*``. Its access units go
through ``CodecTokenizer`` at the given settings, exactly as the node tokenizes, and every closed window becomes one
example whose answer is rendered from the annotation: ``track`` (points per shown frame), ``ground`` (its spans
inside the window) or ``jump`` (the cycles starting at its events, as spans).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ov2_ros.codec.errors import CodecError
from ov2_ros.codec.tokenizer import CodecTokenizer
from ov2_ros.codec.types import CodecWindow, TokenizerConfig
from ov2_ros.eval.annotations import VideoAnnotation, load_annotations
from ov2_ros.model.prompts import parse_query
from ov2_ros.train.errors import TrainDataError
from ov2_ros.train.examples import Example, encode_example
from ov2_ros.train.targets import check_target, render_target

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".h264", ".264", ".h265", ".hevc", ".ts")


def find_video(data_dir: Path, name: str) -> Path:
    """The bag folder or video file an annotation names; TrainDataError when there is none."""
    bag = data_dir / name
    if (bag / "metadata.yaml").is_file():
        return bag
    for suffix in VIDEO_SUFFIXES:
        if (data_dir / f"{name}{suffix}").is_file():
            return data_dir / f"{name}{suffix}"
    raise TrainDataError(f"annotation {name!r} names no video: no bag folder {bag} (with metadata.yaml) and no "
                         f"video file {name}.{{{','.join(s[1:] for s in VIDEO_SUFFIXES)}}} in {data_dir}")


def access_units(path: Path, topic: str) -> Iterator[tuple[bytes, float]]:
    """(AU, seconds since the first frame) of a bag's image topic or a video file's first video stream."""
    if path.is_dir():
        from ov2_ros.eval.bags import access_units as bag_aus
        from ov2_ros.eval.bags import read_images

        first = None
        for au, ns in bag_aus(read_images(path, topic)):
            first = ns if first is None else first
            yield au, (ns - first) / 1e9
    else:
        from ov2_ros.codec.source import iter_access_units

        first = None
        for au, t in iter_access_units(path):
            first = t if first is None else first
            yield au, t - first


def video_windows(path: Path, config: TokenizerConfig, topic: str) -> list[CodecWindow]:
    tok = CodecTokenizer(config, codec="hevc" if path.suffix.lower() in (".h265", ".hevc") else "h264")
    windows, pushed = [], 0
    for au, t in access_units(path, topic):
        pushed += 1
        try:
            closed = tok.push(au, t)
        except CodecError:            # skipped and counted, as the node does; the decoder keeps its state
            continue
        if closed:
            windows.append(tok.window())
    if tok.flush():
        windows.append(tok.window())
    if tok.frames_seen == 0:
        raise TrainDataError(f"{path}: empty clip ({pushed} access units, no frame decoded)")
    if not windows:
        raise TrainDataError(f"{path}: the tokenizer budget fits no window ({tok.frames_seen} decoded frame(s); "
                             f"window_canvases={config.window_canvases}, min_group_frames={config.min_group_frames})")
    return windows


def window_answer(gt: VideoAnnotation, window: CodecWindow) -> tuple[str, str, str, int] | None:
    """(task, query text, answer, items) for the annotation on one window; None for a track window where the
    object has no point (the track format has no "not visible" answer)."""
    query = parse_query(gt.query, {"track": "track", "ground": "ground", "jump": "ground"}[gt.task])
    times, src = window.frame_times, window.source_size
    if gt.task == "track":
        pts = {f: gt.points[f] for f in sorted(times) if f in gt.points}
        return (query.task, query.text, *render_target("track", times, src, query.text, pts)) if pts else None
    lo, hi = min(times.values()), max(times.values())
    if gt.task == "ground":
        raw = list(gt.spans_s)
    else:                                            # jump: each cycle, from its start to the next one's
        ev = list(gt.events_s)
        raw = list(zip(ev, ev[1:] + ev[-1:]))
    spans = [(max(a, lo), min(b, hi)) for a, b in raw if a <= hi and b >= lo]
    return (query.task, query.text, *render_target("ground", times, src, query.text, spans=spans))


def annotated_examples(annotations: str | Path, data_dir: str | Path, config: TokenizerConfig, tokenizer,
                       topic: str = "/camera/image/compressed") -> list[Example]:
    """Every window of every annotated video as an example (no aux targets: real data has no per-token masks)."""
    ann = load_annotations(annotations)
    data_dir = Path(data_dir)
    out: list[Example] = []
    for gt in ann.videos:
        path = find_video(data_dir, gt.name)
        windows = video_windows(path, config, topic)
        for window in windows:
            made = window_answer(gt, window)
            if made is None:
                continue
            task, text, answer, count = made
            check_target(task, answer, window.frame_times, window.source_size, count)
            out.append(encode_example(tokenizer, window, task, text, answer))
    return out
