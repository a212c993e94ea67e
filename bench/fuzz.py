"""Fuzz benchmark (issue 10): hostile access units through ``PerceptionPipeline.push``/``flush``, hostile strings
through the answer parsers (``ov2_ros.model.parsers`` as it is when this runs), and bad bags through
``ov2-ros replay``, in one seeded run.

Run: ``.venv/bin/python bench/fuzz.py [--seed 0] [--episodes 600] [--strings 6000] [--bags 48]``; ``--parts``
picks some of pipeline,garbage,parsers,bags. Prints tables and writes ``bench/results/fuzz.json``.

Each part runs in a forked worker watched by this process: an item (an episode, a string, a bag) that makes no
progress for ``--hang-s`` is a hang; the worker is killed and restarted after it, so one hang cannot stall the run.

- pipeline: episodes of real libx264 H.264 (160x120, IDR every 30 frames) with a stretch of hostile AUs in the middle
  (random bytes, bit flips, cuts, crafted SPS/PPS, NAL soups, 1 MB floods, other formats, HEVC, repeats) and, half the
  time, a hostile last AU before ``flush``. Counts exceptions out of push/flush, pushes over 1 s for inputs < 1 MB,
  how many good AUs each bad stretch needed to recover, and the worker's RSS after every episode (no
  ``gc.collect()`` anywhere: reference counting alone must free each dropped pipeline).
- garbage: 10 MB messages of random bytes into one pipeline (issue 10 item 3's 616 MB case), RSS before / after.
- parsers: strings built to hit regex backtracking (digit runs, unclosed tags, span and bracket runs, random text)
  through ``parse_answer`` for every task, with a 1 MB string per family: time per call (goal < 0.5 s at 1 MB).
- bags: bags a careless recorder or an attacker makes (garbage, mislabelled codec, clock steps, cuts, broken
  metadata, wrong types) through ``ov2_ros.cli.main(["replay", ...])``: each must exit non-zero with one clear line.

Goals (issue 10): 0 exceptions, 0 hangs over 1 s under 1 MB, every parser call on 1 MB < 0.5 s, every bad bag a
non-zero exit with one line, RSS flat within 10% over the pipeline episodes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

PARTS = ("pipeline", "garbage", "parsers", "bags")
HANG_S = 1.0                  # a push or parser call slower than this on an input < 1 MB is a hang (goal: none)
MB = 1 << 20
T0_NS = 1_700_000_000_000_000_000
FRAME_NS = 33_333_333


# ---------------------------------------------------------------- streams


def good_clip(gop: int = 30):
    from ov2_ros.codec.synth import make_event_clip

    return make_event_clip(width=160, height=120, gop=gop)


def hevc_aus(frames: int = 20) -> list[bytes]:
    """libx265 AUs with VPS/SPS/PPS in band (the mislabelled-codec cases)."""
    from fractions import Fraction

    import av

    from ov2_ros.codec.synth import event_frames

    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 160, 120, "yuv420p", Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "x265-params": "keyint=10:repeat-headers=1:bframes=0:log-level=error"}
    out: list[bytes] = []
    for i, (rgb, _) in zip(range(frames), event_frames(160, 120)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in ctx.encode(frame)]
    return out + [bytes(p) for p in ctx.encode(None)]


def _sized(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A log-uniform size in [lo, hi]: most inputs small, some near the 1 MB bound."""
    return int(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _flip(rng, au: bytes, flips: int) -> bytes:
    data = bytearray(au)
    for pos in rng.integers(0, len(data), flips):
        data[pos] ^= 1 << int(rng.integers(8))
    return bytes(data)


def hostile_au(rng: np.random.Generator, good: list[bytes], hevc: list[bytes]) -> tuple[str, bytes]:
    """(kind, bytes) of one hostile message, built from fresh randomness or a good AU."""
    au = good[int(rng.integers(len(good)))]
    sc = b"\x00\x00\x00\x01"
    kinds: dict[str, Callable[[], bytes]] = {
        "random": lambda: rng.bytes(_sized(rng, 1, MB)),
        "random_after_start_code": lambda: sc + rng.bytes(_sized(rng, 1, MB)),
        "bit_flips": lambda: _flip(rng, au, int(rng.integers(1, 40))),
        "truncated": lambda: au[: int(rng.integers(1, len(au)))],
        "zeroed_payload": lambda: au[:6] + bytes(len(au) - 6),
        "sps_huge_poc_cycle": lambda: bytes.fromhex("000000016742001ed30000030001") + b"\xff" * _sized(rng, 1, MB),
        "sps_random": lambda: sc + b"\x67" + rng.bytes(_sized(rng, 1, 4096)),
        "pps_random": lambda: sc + b"\x68" + rng.bytes(_sized(rng, 1, 4096)),
        "slice_random": lambda: sc + bytes([0x41 | (int(rng.integers(4)) << 5)]) + rng.bytes(_sized(rng, 1, 65536)),
        "idr_random": lambda: sc + b"\x65" + rng.bytes(_sized(rng, 1, 65536)),
        "nal_soup": lambda: b"".join(sc + bytes([int(rng.integers(1, 24)) | 0x60]) + rng.bytes(int(rng.integers(8)))
                                     for _ in range(_sized(rng, 1, 60_000))),
        "tiny_slice_flood": lambda: (b"\x00\x00\x01\x65\x88\x84" * _sized(rng, 2, 170_000)),
        "start_code_flood": lambda: b"\x00\x00\x01" * _sized(rng, 1, 340_000),
        "zeros": lambda: bytes(_sized(rng, 1, MB)),
        "emulation_prevention_run": lambda: sc + b"\x67" + b"\x00\x00\x03" * _sized(rng, 1, 340_000),
        "jpeg": lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.bytes(int(rng.integers(1, 5000))),
        "mp4_header": lambda: b"\x00\x00\x00\x18ftypisom" + rng.bytes(int(rng.integers(1, 5000))),
        "hevc_in_h264": lambda: hevc[int(rng.integers(len(hevc)))],
        "idr_without_parameter_sets": lambda: sc + au[au.rfind(b"\x00\x00\x01") + 3:],
        "repeat_old_au": lambda: good[int(rng.integers(len(good)))],
        "empty": lambda: b"",
        "good_plus_garbage": lambda: au + rng.bytes(_sized(rng, 1, 65536)),
    }
    names = sorted(kinds)
    kind = names[int(rng.integers(len(names)))]
    return kind, kinds[kind]()


# ---------------------------------------------------------------- guarded workers


def _worker(part: str, params: dict, start: int, conn) -> None:
    """Run ``part``'s items from ``start``; report ("start", i), ("done", i, record) and ("end",)."""
    if "torch" in sys.modules:      # inherited through fork (the suite): an OpenMP team from the parent is not
        sys.modules["torch"].set_num_threads(1)   # fork-safe, so the child never starts a parallel region
    try:
        for i, record in PART_ITEMS[part](params, start, lambda i: conn.send(("start", i))):
            conn.send(("done", i, record))
        conn.send(("end",))
    except BaseException:  # noqa: BLE001 - a crash of the harness itself, reported and counted
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


def run_guarded(part: str, params: dict, total: int, hang_s: float,
                on_hang: Callable[[dict, int], None] = lambda params, item: None) -> dict:
    """All items of ``part`` in forked workers; an item silent for ``hang_s`` is killed, recorded and skipped.
    ``on_hang(params, item)`` may change what the restarted worker does (e.g. skip a family that hangs)."""
    ctx = mp.get_context("fork")
    records: list[dict] = []
    hangs: list[int] = []
    crashes: list[str] = []
    start = 0
    while start < total:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(part, params, start, child), daemon=True)
        proc.start()
        child.close()
        current, finished = start, False
        while True:
            if not parent.poll(hang_s):
                proc.kill()
                hangs.append(current)
                on_hang(params, current)
                start = current + 1
                break
            try:
                msg = parent.recv()
            except EOFError:
                crashes.append(f"worker died at item {current} (exit code {proc.exitcode})")
                start = current + 1
                break
            if msg[0] == "start":
                current = msg[1]
            elif msg[0] == "done":
                records.append(msg[2])
            elif msg[0] == "crash":
                crashes.append(msg[1])
                start = current + 1
                break
            else:
                finished = True
                break
        proc.join(5)
        parent.close()
        if finished:
            break
    return {"records": records, "hangs": hangs, "crashes": crashes}


# ---------------------------------------------------------------- pipeline episodes


def pipeline_items(params: dict, start: int, begin: Callable[[int], None]) -> Iterator[tuple[int, dict]]:
    from ov2_ros.codec.types import TokenizerConfig
    from ov2_ros.pipeline import PerceptionPipeline, PipelineConfig

    good = list(good_clip().aus)
    hevc = hevc_aus()
    config = PipelineConfig(tokenizer=TokenizerConfig(window_canvases=8, min_group_frames=8, max_group_frames=16,
                                                      max_pixels=40_000), segment=False)
    for episode in range(start, params["episodes"]):
        begin(episode)
        rng = np.random.default_rng([params["seed"], episode])
        record = {"episode": episode, "hostile": 0, "good": 0, "exceptions": [], "slow": [], "kinds": {},
                  "max_push_s": 0.0, "recovery_aus": None, "flush_hostile": False}
        pipeline = PerceptionPipeline(config)
        lead = int(rng.integers(10, 40))
        stretch = int(rng.integers(1, 41))
        tail = int(rng.integers(30, 90))
        t = 0

        def push(data: bytes, kind: str | None) -> Any:
            nonlocal t
            t0 = time.perf_counter()
            try:
                result = pipeline.push(data, T0_NS / 1e9 + t / 30)
            except Exception as exc:  # noqa: BLE001 - the thing being counted
                record["exceptions"].append(f"push {kind or 'good'}: {type(exc).__name__}: {exc}"[:300])
                result = None
            dt = time.perf_counter() - t0
            t += 1
            record["max_push_s"] = max(record["max_push_s"], dt)
            if dt > HANG_S and len(data) < MB:
                record["slow"].append({"kind": kind or "good", "bytes": len(data), "s": dt})
            return result

        for i in range(lead):
            push(good[i % len(good)], None)
        for _ in range(stretch):
            kind, data = hostile_au(rng, good, hevc)
            record["kinds"][kind] = record["kinds"].get(kind, 0) + 1
            push(data, kind)
        record["hostile"] += stretch
        resume = int(rng.integers(len(good)))     # mid-GOP or at an IDR: the gate decides
        for k in range(tail):
            result = push(good[(resume + k) % len(good)], None)
            if record["recovery_aus"] is None and result is not None and result.frames:
                record["recovery_aus"] = k + 1
        record["good"] = lead + tail
        if rng.random() < 0.5:                     # a corrupt last AU: FFmpeg may object only at drain
            kind, data = hostile_au(rng, good, hevc)
            record["flush_hostile"] = True
            record["hostile"] += 1
            record["kinds"][kind] = record["kinds"].get(kind, 0) + 1
            push(data, kind)
        try:
            pipeline.flush()
        except Exception as exc:  # noqa: BLE001
            record["exceptions"].append(f"flush: {type(exc).__name__}: {exc}"[:300])
        record["codec_issues"] = pipeline.stats.codec_issues
        del pipeline                               # reference counting alone must free it (no gc.collect)
        record["rss_mib"] = common.rss_mib()
        yield episode, record


def garbage_items(params: dict, start: int, begin: Callable[[int], None]) -> Iterator[tuple[int, dict]]:
    """One item: ``garbage_messages`` pushes of 10 MB random bytes into one pipeline, then the pipeline dropped."""
    from ov2_ros.pipeline import PerceptionPipeline

    begin(0)
    rng = np.random.default_rng([params["seed"], 10])
    pipeline = PerceptionPipeline()
    pipeline.push(rng.bytes(10 * MB))     # imports and first-use allocations are not what is measured
    before = common.rss_mib()
    errors, issues = [], 0
    peak = before
    for _ in range(params["garbage_messages"]):
        try:
            issues += pipeline.push(rng.bytes(10 * MB)).issue is not None
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
        peak = max(peak, common.rss_mib())
    after = common.rss_mib()
    del pipeline
    yield 0, {"messages": params["garbage_messages"], "issues": issues, "exceptions": errors,
              "rss_before_mib": before, "rss_peak_mib": peak, "rss_after_mib": after, "rss_dropped_mib": common.rss_mib()}


# ---------------------------------------------------------------- parsers


def hostile_text(rng: np.random.Generator, family: str, n: int) -> str:
    """About ``n`` characters of one family of backtracking bait."""
    printable = np.array(list("0123456789 .,;:-+()[]<>\"=/abcxyzst\n\t"))
    unit = {
        "digits": "1",
        "digits_spaced": "1 ",
        "decimal_chain": "1.1.",
        "unclosed_points": '<points coords="1 2 3">a',
        "unclosed_tracks": '<tracks coords="0.5 1 2 3; ',
        "unclosed_waypoints": "<waypoints coords=\"1 2 0.5; ",
        "nested_open": '<points coords="<tracks coords="',
        "span_runs": "1 - 2 seconds, ",
        "dash_runs": "1.5-",
        "seconds_runs": "1 s 2 secs ",
        "triples": "[1, 2, 3]",
        "open_brackets": "(1,2",
        "separators": ";;,,  ",
    }.get(family)
    if unit is not None:
        return unit * max(1, n // len(unit))
    if family == "random_printable":
        return "".join(rng.choice(printable, n))
    if family == "random_unicode":
        return "".join(chr(int(c)) for c in rng.integers(32, 0x2FFF, n))
    # "valid_then_junk": a well-formed answer with a long junk tail
    return '<tracks coords="0.0 1 500 500; 0.5 1 510 490">mug</tracks> ' + "".join(rng.choice(printable, n))


TEXT_FAMILIES = ("digits", "digits_spaced", "decimal_chain", "unclosed_points", "unclosed_tracks",
                 "unclosed_waypoints", "nested_open", "span_runs", "dash_runs", "seconds_runs", "triples",
                 "open_brackets", "separators", "random_printable", "random_unicode", "valid_then_junk")


def parser_item_family(params: dict, i: int, rng: np.random.Generator | None = None) -> tuple[str, int]:
    """(family, size) of parser item ``i``: random below ``strings``, then one 1 MB string per family."""
    if i >= params["strings"]:
        return TEXT_FAMILIES[i - params["strings"]], MB
    rng = rng if rng is not None else np.random.default_rng([params["seed"], 20, i])
    return TEXT_FAMILIES[int(rng.integers(len(TEXT_FAMILIES)))], _sized(rng, 1, params.get("max_chars", 100_000))


def _skip_family_after_hangs(params: dict, item: int, limit: int = 2) -> None:
    """After ``limit`` hangs in one family its other strings are skipped (counted), so a super-linear parser costs
    minutes, not hours; the 1 MB string of every family still runs."""
    family, size = parser_item_family(params, item)
    hung = params.setdefault("hung", {})
    hung[family] = hung.get(family, 0) + 1
    if hung[family] >= limit and size != MB:
        params["skip_families"] = tuple(sorted({*params.get("skip_families", ()), family}))


def parser_items(params: dict, start: int, begin: Callable[[int], None]) -> Iterator[tuple[int, dict]]:
    """Item i < strings: a random family and size up to 100 kB; then one 1 MB string per family."""
    from ov2_ros.model.answer import TASKS
    from ov2_ros.model.parsers import parse_answer

    frame_times = {i: i / 30 for i in range(64)}
    total = params["strings"] + (len(TEXT_FAMILIES) if params.get("megabyte", True) else 0)
    for i in range(start, total):
        begin(i)
        rng = np.random.default_rng([params["seed"], 20, i])
        family, size = parser_item_family(params, i, rng)
        if family in params.get("skip_families", ()) and size != MB:
            yield i, {"family": family, "chars": size, "megabyte": size == MB, "skipped": True, "times_s": {},
                      "exceptions": []}
            continue
        text = hostile_text(rng, family, size)
        times, errors = {}, []
        for task in TASKS:
            t0 = time.perf_counter()
            try:
                parse_answer(task, text, frame_times, (480, 640))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{task}: {type(exc).__name__}: {exc}"[:300])
            times[task] = time.perf_counter() - t0
        yield i, {"family": family, "chars": len(text), "megabyte": i >= params["strings"], "times_s": times,
                  "exceptions": errors}


# ---------------------------------------------------------------- bad bags


def _write_bag(path: Path, aus, stamps, logs=None, storage: str = "mcap", fmt: str = "h264",
               topic: str = "/camera/image/compressed") -> Path:
    from ov2_ros.eval.bags import BagWriter

    with BagWriter(path, storage) as w:
        for k, (au, stamp) in enumerate(zip(aus, stamps, strict=True)):
            msg = w.msg("sensor_msgs/msg/CompressedImage", header=w.header(stamp, "camera"),
                        format=fmt if isinstance(fmt, str) else fmt[k], data=np.frombuffer(bytes(au), np.uint8))
            w.write(topic, msg, stamp if logs is None else logs[k])
    return path


def _storage_file(bag: Path) -> Path:
    return next(f for f in bag.iterdir() if f.suffix in (".mcap", ".db3"))


def bad_bags(root: Path, seed: int, count: int) -> list[tuple[str, list[str]]]:
    """(name, extra replay argv) of ``count`` bad bags under ``root`` (a base set, then seeded random cuts)."""
    from ov2_ros.eval.bags import BagWriter, write_image_bag

    rng = np.random.default_rng([seed, 30])
    aus = list(good_clip().aus[:90])
    n = len(aus)
    stamps = [T0_NS + i * FRAME_NS for i in range(n)]
    made: list[tuple[str, list[str]]] = []

    def add(name: str, make: Callable[[Path], Any], *argv: str) -> None:
        make(root / name)
        made.append((name, list(argv)))

    for storage in ("mcap", "sqlite3"):
        add(f"garbage_{storage}", lambda p, s=storage: _write_bag(p, [rng.bytes(int(rng.integers(1, 5000)))
                                                                     for _ in range(n)], stamps, storage=s))
        stepped = [T0_NS + (i if i < 45 else i - 60) * FRAME_NS for i in range(n)]
        add(f"recorder_clock_step_{storage}", lambda p, s=storage: _write_bag(p, aus, stepped, storage=s))
        swapped = list(stamps)
        swapped[0], swapped[1] = swapped[1], swapped[0]
        add(f"first_two_stamps_swapped_{storage}", lambda p, s=storage: _write_bag(p, aus, swapped, storage=s))
        jumped = [s - (3 * FRAME_NS if i >= 50 else 0) for i, s in enumerate(stamps)]
        add(f"camera_clock_jump_{storage}", lambda p, s=storage: _write_bag(p, aus, jumped, stamps, storage=s))
        dup = [s if i != 30 else stamps[29] for i, s in enumerate(stamps)]
        add(f"duplicate_stamp_{storage}", lambda p, s=storage: _write_bag(p, aus, dup, storage=s))
        add(f"p_frames_only_{storage}", lambda p, s=storage: _write_bag(p, aus[1:30], stamps[1:30], storage=s))
        add(f"zeros_{storage}", lambda p, s=storage: _write_bag(p, [bytes(len(a)) for a in aus], stamps, storage=s))
        add(f"tail_cut_1_byte_{storage}", lambda p, s=storage: _cut(write_image_bag(p, stamps, aus, storage=s), 1))
    hevc = hevc_aus(30)
    add("hevc_labelled_h264", lambda p: _write_bag(p, hevc, stamps[:len(hevc)]))
    add("h264_labelled_hevc", lambda p: _write_bag(p, aus, stamps, fmt="hevc"))
    add("format_theora", lambda p: _write_bag(p, aus, stamps, fmt="theora"))
    add("format_changes_mid_topic", lambda p: _write_bag(p, aus, stamps, fmt=["h264"] * 45 + ["jpeg"] * 45))
    add("jpeg_labelled_garbage", lambda p: _write_bag(p, [rng.bytes(300) for _ in range(10)], stamps[:10], fmt="jpeg"))
    add("empty_messages", lambda p: _write_bag(p, [b""] * 20, stamps[:20]))
    add("wrong_topic", lambda p: write_image_bag(p, stamps, aus), "--topic", "/front/image")

    def string_topic(p: Path) -> None:
        with BagWriter(p) as w:
            for i in range(5):
                w.write("/camera/image/compressed", w.msg("std_msgs/msg/String", data="x"), T0_NS + i)
    add("string_on_image_topic", string_topic)

    def empty_topic(p: Path) -> None:
        from rosbags.rosbag2 import Writer

        writer = Writer(p, version=9)
        writer.open()
        from ov2_ros.eval.bags import typestore

        writer.add_connection("/camera/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=typestore())
        writer.close()
    add("topic_without_messages", empty_topic)

    def raw_bad_step(p: Path) -> None:
        with BagWriter(p) as w:
            for i in range(5):
                w.write("/camera/image/compressed", w.msg("sensor_msgs/msg/Image", header=w.header(stamps[i]),
                        height=120, width=160, encoding="rgb8", is_bigendian=0, step=100,
                        data=np.zeros(100 * 120, np.uint8)), stamps[i])
    add("raw_image_bad_step", raw_bad_step)

    def raw_bad_encoding(p: Path) -> None:
        with BagWriter(p) as w:
            for i in range(5):
                w.write("/camera/image/compressed", w.msg("sensor_msgs/msg/Image", header=w.header(stamps[i]),
                        height=120, width=160, encoding="32FC7", is_bigendian=0, step=160 * 3,
                        data=np.zeros(160 * 3 * 120, np.uint8)), stamps[i])
    add("raw_image_unknown_encoding", raw_bad_encoding)

    def metadata(text_of: Callable[[str], str]) -> Callable[[Path], None]:
        def make(p: Path) -> None:
            write_image_bag(p, stamps, aus)
            meta = p / "metadata.yaml"
            meta.write_text(text_of(meta.read_text()))
        return make
    add("metadata_unclosed_yaml", metadata(lambda t: "rosbag2_bagfile_information: [unclosed"))
    add("metadata_version_999", metadata(lambda t: t.replace("version: 9", "version: 999", 1)))
    add("metadata_empty", metadata(lambda t: ""))
    add("metadata_missing", lambda p: (write_image_bag(p, stamps, aus), (p / "metadata.yaml").unlink()))
    add("storage_file_missing", lambda p: (write_image_bag(p, stamps, aus), _storage_file(p).unlink()))
    add("storage_file_empty", lambda p: (write_image_bag(p, stamps, aus), _storage_file(p).write_bytes(b"")))
    add("sqlite_header_overwritten", lambda p: _overwrite(write_image_bag(p, stamps, aus, storage="sqlite3"), 0,
                                                           rng.bytes(100)))
    add("not_a_directory", lambda p: p.write_text("not a bag"))
    made.append(("does_not_exist", []))
    k = 0
    while len(made) < count:                     # seeded cuts of the storage file at random offsets
        storage = ("mcap", "sqlite3")[k % 2]
        name = f"cut_{storage}_{k}"
        bag = write_image_bag(root / name, stamps, aus, storage=storage)
        size = _storage_file(bag).stat().st_size
        _cut(bag, int(rng.integers(1, size)))
        made.append((name, []))
        k += 1
    return made[:count] if count < len(made) else made


def _cut(bag: Path, n: int) -> Path:
    f = _storage_file(bag)
    f.write_bytes(f.read_bytes()[:-n])
    return bag


def _overwrite(bag: Path, at: int, data: bytes) -> Path:
    f = _storage_file(bag)
    raw = bytearray(f.read_bytes())
    raw[at:at + len(data)] = data
    f.write_bytes(bytes(raw))
    return bag


def bag_items(params: dict, start: int, begin: Callable[[int], None]) -> Iterator[tuple[int, dict]]:
    from ov2_ros.cli import main

    root = Path(params["bag_root"])
    bags = params["bag_list"]
    for i in range(start, len(bags)):
        begin(i)
        name, extra = bags[i]
        err, out = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(["replay", str(root / name), "--query", "ask: what happens", "--canvases", "8",
                           "--max-new-tokens", "2", "--no-segment", "--quiet", "--out", str(root / f"{name}_out"),
                           *extra])
                crash = None
            except BaseException as exc:  # noqa: BLE001 - an exception out of the CLI is a defect, counted
                rc, crash = None, f"{type(exc).__name__}: {exc}"[:300]
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip() and not ln.startswith("[transformers]")]
        errors = [ln for ln in lines if ln.startswith("ov2-ros replay: error:")]
        yield i, {"bag": name, "rc": rc, "error_lines": errors, "other_stderr": lines[:3] if len(lines) > 1 else [],
                  "exception": crash, "s": time.perf_counter() - t0,
                  "ok": rc not in (0, None) and len(errors) == 1 and crash is None}


PART_ITEMS = {"pipeline": pipeline_items, "garbage": garbage_items, "parsers": parser_items, "bags": bag_items}


# ---------------------------------------------------------------- analysis


def summarise_pipeline(run: dict, params: dict) -> dict:
    recs = sorted(run["records"], key=lambda r: r["episode"])
    rss = [r["rss_mib"] for r in recs]
    warm = max(1, len(rss) // 10)
    kinds: dict[str, int] = {}
    for r in recs:
        for k, v in r["kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    recovery = [r["recovery_aus"] for r in recs if r["recovery_aus"] is not None]
    after = rss[warm:] or rss
    return {
        "episodes": len(recs), "hostile_aus": sum(r["hostile"] for r in recs), "good_aus": sum(r["good"] for r in recs),
        "hostile_kinds": dict(sorted(kinds.items())),
        "exceptions": sum(len(r["exceptions"]) for r in recs),
        "exception_samples": [e for r in recs for e in r["exceptions"]][:10],
        "slow_pushes_under_1mb": sum(len(r["slow"]) for r in recs),
        "slow_samples": [s for r in recs for s in r["slow"]][:10],
        "hangs": run["hangs"], "worker_crashes": run["crashes"][:3],
        "max_push_s": max((r["max_push_s"] for r in recs), default=0.0),
        "episodes_with_flush_after_hostile": sum(r["flush_hostile"] for r in recs),
        "recovered_episodes": len(recovery), "recovery_aus_median": statistics.median(recovery) if recovery else None,
        "recovery_aus_max": max(recovery, default=None),
        "rss_after_warmup_mib": after[0] if after else None, "rss_end_mib": rss[-1] if rss else None,
        "rss_max_mib": max(rss, default=None),
        "rss_growth_pct": 100 * (rss[-1] - after[0]) / after[0] if after else None,
        "rss_per_episode_mib": rss,
    }


def summarise_parsers(run: dict, params: dict) -> dict:
    skipped = [r for r in run["records"] if r.get("skipped")]
    recs = [r for r in run["records"] if not r.get("skipped")]
    small = [r for r in recs if not r["megabyte"]]
    big = [r for r in recs if r["megabyte"]]
    for i in run["hangs"]:                     # a killed item's family and size, for the per-family table
        family, size = parser_item_family(params, i)
        recs.append({"family": family, "chars": size, "megabyte": size == MB, "hung": True, "times_s": {},
                     "exceptions": []})
    per_family: dict[str, dict] = {}
    for r in recs:
        f = per_family.setdefault(r["family"], {"strings": 0, "max_s_under_1mb": 0.0, "max_s_1mb": None,
                                                "hangs": 0, "skipped": 0})
        if r.get("hung"):
            f["hangs"] += 1
            continue
        worst = max(r["times_s"].values())
        if r["megabyte"]:
            f["max_s_1mb"] = worst
        else:
            f["strings"] += 1
            f["max_s_under_1mb"] = max(f["max_s_under_1mb"], worst)
    for r in skipped:
        per_family.setdefault(r["family"], {"strings": 0, "max_s_under_1mb": 0.0, "max_s_1mb": None, "hangs": 0,
                                            "skipped": 0})["skipped"] += 1
    return {
        "strings": len(small), "skipped_after_hangs": len(skipped), "skipped_families": params.get("skip_families", ()),
        "calls": sum(len(r["times_s"]) for r in recs),
        "exceptions": sum(len(r["exceptions"]) for r in recs),
        "exception_samples": [e for r in recs for e in r["exceptions"]][:10],
        "slow_calls_under_1mb": sum(t > HANG_S for r in small for t in r["times_s"].values()) +
                                sum(parser_item_family(params, i)[1] != MB for i in run["hangs"]),
        "hangs": run["hangs"], "hang_items": run["hangs"][:20], "worker_crashes": run["crashes"][:3],
        "max_call_s_under_1mb": max((t for r in small for t in r["times_s"].values()), default=0.0),
        "megabyte_strings": len(big),
        "megabyte_max_s": max((max(r["times_s"].values()) for r in big), default=None),
        "megabyte_over_0_5s": [r["family"] for r in big if max(r["times_s"].values()) >= 0.5] +
                              [r["family"] for r in recs if r.get("hung") and r["megabyte"]],
        "families": per_family,
    }


def summarise_bags(run: dict, params: dict) -> dict:
    recs = run["records"]
    failed = [r for r in recs if not r["ok"]]
    return {
        "bags": len(params["bag_list"]), "replayed": len(recs),
        "nonzero_exit_one_line": sum(r["ok"] for r in recs),
        "exit_0": [r["bag"] for r in recs if r["rc"] == 0],
        "exceptions": sum(r["exception"] is not None for r in recs),
        "not_ok": [{k: r[k] for k in ("bag", "rc", "error_lines", "other_stderr", "exception")} for r in failed],
        "hangs": [params["bag_list"][i][0] for i in run["hangs"]], "worker_crashes": run["crashes"][:3],
        "max_s": max((r["s"] for r in recs), default=0.0),
        "lines": {r["bag"]: (r["error_lines"] or [""])[0][:240] for r in recs},
    }


def run_fuzz(seed: int = 0, episodes: int = 600, strings: int = 6000, bags: int = 48, garbage_messages: int = 100,
             parts: tuple[str, ...] = PARTS, hang_s: float = 30.0, work_dir: Path | None = None,
             max_chars: int = 100_000, megabyte: bool = True) -> dict:
    """Run the chosen parts; the result dict that fuzz.json holds (the suite's sample calls this too, smaller:
    ``max_chars`` caps the random strings, ``megabyte`` adds one 1 MB string per family)."""
    params: dict[str, Any] = {"seed": seed, "episodes": episodes, "strings": strings,
                              "garbage_messages": garbage_messages, "max_chars": max_chars, "megabyte": megabyte}
    result: dict[str, Any] = {"seed": seed, "parts": list(parts), "hang_s": hang_s, "slow_s": HANG_S}
    t_all = time.perf_counter()
    if "pipeline" in parts:
        t0 = time.perf_counter()
        result["pipeline"] = summarise_pipeline(run_guarded("pipeline", params, episodes, hang_s), params)
        result["pipeline"]["wall_s"] = time.perf_counter() - t0
    if "garbage" in parts:
        run = run_guarded("garbage", params, 1, max(hang_s, 120.0))
        result["garbage"] = {**(run["records"][0] if run["records"] else {}), "hangs": run["hangs"],
                             "worker_crashes": run["crashes"][:3]}
    if "parsers" in parts:
        t0 = time.perf_counter()
        total = strings + (len(TEXT_FAMILIES) if megabyte else 0)
        result["parsers"] = summarise_parsers(run_guarded("parsers", params, total, min(hang_s, 10.0),
                                                          _skip_family_after_hangs), params)
        result["parsers"]["wall_s"] = time.perf_counter() - t0
    if "bags" in parts:
        t0 = time.perf_counter()
        root = Path(work_dir or tempfile.mkdtemp(prefix="ov2_fuzz_bags_"))
        try:
            params["bag_root"] = str(root)
            params["bag_list"] = bad_bags(root, seed, bags)
            result["bags"] = summarise_bags(run_guarded("bags", params, len(params["bag_list"]),
                                                        max(hang_s, 180.0)), params)
        finally:
            if work_dir is None:
                shutil.rmtree(root, ignore_errors=True)
        result["bags"]["wall_s"] = time.perf_counter() - t0
    result["wall_s"] = time.perf_counter() - t_all
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=600, help="pipeline episodes (default 600)")
    parser.add_argument("--strings", type=int, default=6000, help="hostile parser strings (default 6000)")
    parser.add_argument("--bags", type=int, default=48, help="bad bags (default 48)")
    parser.add_argument("--garbage-messages", type=int, default=100, help="10 MB garbage pushes (default 100)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--hang-s", type=float, default=30.0,
                        help="an item silent this long is killed and counted as a hang (default 30)")
    args = parser.parse_args()
    parts = tuple(p for p in args.parts.split(",") if p)
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    result = run_fuzz(args.seed, args.episodes, args.strings, args.bags, args.garbage_messages, parts, args.hang_s)

    t = common.Table(f"fuzz (seed {args.seed}): hostile input through push/flush, parsers and replay",
                     ["part", "measure", "value", "goal"])
    if "pipeline" in result:
        p = result["pipeline"]
        t.add("pipeline", "episodes / hostile AUs / good AUs", f"{p['episodes']} / {p['hostile_aus']} / "
                                                               f"{p['good_aus']}", ">= 10,000 hostile")
        t.add("pipeline", "exceptions out of push/flush", p["exceptions"], "0")
        t.add("pipeline", f"pushes > {HANG_S:g} s (< 1 MB) / hangs killed", f"{p['slow_pushes_under_1mb']} / "
                                                                            f"{len(p['hangs'])}", "0 / 0")
        t.add("pipeline", "max push (s)", p["max_push_s"], "")
        t.add("pipeline", "recovered episodes, median / max good AUs", f"{p['recovered_episodes']}, "
              f"{common.fmt(p['recovery_aus_median'])} / {common.fmt(p['recovery_aus_max'])}", "all")
        t.add("pipeline", "RSS after warm-up -> end (MiB)", f"{common.fmt(p['rss_after_warmup_mib'])} -> "
                                                            f"{common.fmt(p['rss_end_mib'])}", "")
        t.add("pipeline", "RSS growth, no gc.collect (%)", p["rss_growth_pct"], "< 10")
    if "garbage" in result and result["garbage"].get("messages"):
        g = result["garbage"]
        t.add("garbage", f"{g['messages']} x 10 MB: RSS before / peak / after / dropped (MiB)",
              f"{g['rss_before_mib']:.0f} / {g['rss_peak_mib']:.0f} / {g['rss_after_mib']:.0f} / "
              f"{g['rss_dropped_mib']:.0f}", "flat")
    if "parsers" in result:
        q = result["parsers"]
        t.add("parsers", "strings / calls", f"{q['strings']} / {q['calls']}", ">= 6,000 strings")
        t.add("parsers", "exceptions", q["exceptions"], "0")
        t.add("parsers", f"calls > {HANG_S:g} s (< 1 MB) / hangs killed", f"{q['slow_calls_under_1mb']} / "
                                                                          f"{len(q['hangs'])}", "0 / 0")
        t.add("parsers", "max call on < 1 MB (s)", q["max_call_s_under_1mb"], "")
        t.add("parsers", "max call on 1 MB (s); families >= 0.5 s",
              f"{common.fmt(q['megabyte_max_s'])}; {', '.join(q['megabyte_over_0_5s']) or 'none'}", "< 0.5; none")
    if "bags" in result:
        b = result["bags"]
        t.add("bags", "bad bags: non-zero exit with one line", f"{b['nonzero_exit_one_line']} / {b['bags']}", "all")
        t.add("bags", "exit 0 / exceptions / hangs", f"{len(b['exit_0'])} / {b['exceptions']} / {len(b['hangs'])}",
              "0 / 0 / 0")
    print(t)
    for part in ("pipeline", "parsers", "bags"):
        samples = (result.get(part) or {}).get("exception_samples") or (result.get(part) or {}).get("not_ok")
        if samples:
            print(f"{part}: {samples[:3]}")
    path = common.write_results("fuzz", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
