"""Replay of real bags through the real pipeline and tiny-random model: results bag topics, stamps, determinism."""
import json

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from ov2_ros.codec.synth import event_frames
from ov2_ros.eval.bags import typestore, write_image_bag
from ov2_ros.eval.replay import FrameStamps, SourceStamp, replay_bag
from ov2_ros.eval.results import RESULTS_BAG, load_results

T0_NS = 1_700_000_000_000_000_000


def _bag_messages(path):
    with Reader(path) as reader:
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


def test_replay_covers_every_frame_and_window(codec_replay, small_clip, stamps):
    results, out = codec_replay
    assert results.num_frames == small_clip.num_frames
    assert results.frame_stamps_ns == tuple(stamps(small_clip.num_frames))
    # groups are contiguous; one window per group (offline replay drops none). The official structure samples off
    # the keyframe and drops a tail shorter than min_group_frames sampled frames, as the release does.
    bounds = [(g.start_frame, g.end_frame) for g in results.groups]
    assert 0 <= bounds[0][0] <= 8 and bounds[-1][1] <= small_clip.num_frames
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert len(results.windows) == len(results.groups) and results.stats["windows_dropped"] == 0
    assert all(w.answer is not None and w.error is None for w in results.windows)
    assert all(0 < w.canvases <= 8 and w.tokens > 0 and w.latency_s > 0 for w in results.windows)
    assert results.windows[-1].end_frame == bounds[-1][1]
    # the codec mode spends tokens on the moving square (frames 30-59) rather than the static start
    selected = set(results.selected_frames)
    assert len(selected & set(range(30, 60))) > len(selected & set(range(62, 90)))
    assert load_results(out) == results                      # results.json round-trips exactly


def test_results_bag_has_answers_at_source_stamps(codec_replay):
    results, out = codec_replay
    messages = _bag_messages(out / RESULTS_BAG)
    assert {m[0] for m in messages} == {"/answer"}      # the random model's text never parses into points
    assert len(messages) == len(results.windows)
    store = typestore()
    for (topic, msgtype, log_ns, raw), window in zip(messages, results.windows):
        payload = json.loads(store.deserialize_cdr(raw, msgtype).data)
        last = window.end_frame - 1
        assert log_ns == results.frame_stamps_ns[last]      # logged at the source stamp of the window's newest frame
        assert payload["window"]["end_stamp"] == pytest.approx(results.frame_stamps_ns[last] / 1e9)
        assert payload["window"]["start_frame"] == window.start_frame
        assert payload["query"] == results.query and payload["task"] == "ground" and payload["latency_s"] is None
        assert payload["text"] == window.answer["text"]


def test_replay_is_deterministic_across_storages(codec_replay, camera_bags, tiny_runtime, replay_config, tmp_path):
    results, out = codec_replay
    again = replay_bag(camera_bags["sqlite3"], tmp_path / "again", replay_config(storage="sqlite3"), progress=False,
                       runtime=tiny_runtime)
    assert _bag_messages(tmp_path / "again" / RESULTS_BAG) == _bag_messages(out / RESULTS_BAG)
    assert again.groups == results.groups
    assert [w.answer["text"] for w in again.windows] == [w.answer["text"] for w in results.windows]


def test_raw_image_bag_is_encoded_then_replayed(tiny_runtime, replay_config, stamps, tmp_path):
    frames = [f for f, _ in event_frames(160, 120)][:40]
    bag = write_image_bag(tmp_path / "raw", stamps(40), frames, topic="/camera/image_raw", kind="raw")
    results = replay_bag(bag, tmp_path / "out", replay_config(topic="/camera/image_raw", mode="uniform"), progress=False,
                         runtime=tiny_runtime)
    assert results.source_kind == "raw" and results.num_frames == 40
    assert results.frame_stamps_ns == tuple(stamps(40))
    assert results.windows and results.mode == "uniform"


def test_replay_into_an_unrelated_folder_is_refused(camera_bags, replay_config, tmp_path):
    from ov2_ros.eval.errors import EvalError

    (tmp_path / "out" / RESULTS_BAG).mkdir(parents=True)
    with pytest.raises(EvalError, match="not from an earlier replay"):
        replay_bag(camera_bags["mcap"], tmp_path / "out", replay_config(), progress=False)


def test_source_stamp_round_trip():
    s = SourceStamp.from_ns(T0_NS + 123)
    assert (s.sec, s.nanosec, s.ns) == (1_700_000_000, 123, T0_NS + 123)
    assert np.isclose(s.sec + s.nanosec * 1e-9, (T0_NS + 123) / 1e9)


def test_frame_stamps_count_on_from_the_nearest_known_frame():
    messages = [100, 200, 300, 400, 500, 600]
    stamps = FrameStamps(messages)
    assert [stamps(f) for f in range(3)] == [100, 200, 300]        # nothing learnt: the f-th message
    # message 1 (200) decoded to nothing: frame 1 is message 2's picture, and the frames after it follow on
    stamps.learn(1, 300)
    assert [stamps(f) for f in range(5)] == [100, 300, 400, 500, 600]
    assert stamps(99) == 600                                       # past the end: the last stamp


def test_a_corrupt_access_unit_loses_nothing_else(small_clip, stamps, tiny_runtime, replay_config, tmp_path):
    aus = list(small_clip.aus[:40])
    aus[20] = aus[20][:6] + bytes(len(aus[20]) - 6)                 # P-frame payload zeroed after the start code
    bag = write_image_bag(tmp_path / "b", stamps(40), aus)
    results = replay_bag(bag, tmp_path / "out", replay_config(), progress=False, runtime=tiny_runtime)
    assert results.stats["messages"] == 40
    assert results.num_frames >= 39 and results.windows                 # the stream goes on past the bad AU
    assert results.frame_stamps_ns[:20] == tuple(stamps(20))
    assert results.frame_stamps_ns[-1] == stamps(40)[-1]                # later frames keep their own stamps


def test_hevc_bag_replays_through_the_hevc_decoder(hevc_aus, stamps, tiny_runtime, replay_config, tmp_path):
    bag = write_image_bag(tmp_path / "h265", stamps(len(hevc_aus)), hevc_aus, kind="hevc")
    results = replay_bag(bag, tmp_path / "out", replay_config(), progress=False, runtime=tiny_runtime)
    assert results.source_kind == "hevc" and results.num_frames == len(hevc_aus)
    assert results.stats["codec_issues"] == 0 and results.windows
    assert results.frame_stamps_ns == tuple(stamps(len(hevc_aus)))


# ---------------------------------------------------------------- bad bags: a non-zero exit with one clear line

def _cli_error(capsys, argv) -> str:
    from ov2_ros.cli import main

    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("[transformers]")]
    assert len(err) == 1, err
    return err[0]


CLI_SMALL = ["--query", "q", "--canvases", "8", "--max-new-tokens", "4", "--no-segment", "--quiet"]


def test_undecodable_bags_fail_with_one_line(small_clip, hevc_aus, stamps, tmp_path, capsys):
    """Issue 10 item 6: all-garbage H.264 and HEVC labelled h264 used to exit 0 with "0 frames"."""
    rng = np.random.default_rng(0)
    garbage = write_image_bag(tmp_path / "garbage", stamps(20), [rng.bytes(400) for _ in range(20)])
    line = _cli_error(capsys, ["replay", str(garbage), *CLI_SMALL, "--out", str(tmp_path / "g")])
    assert "no frame decoded from 20 message(s) (20 rejected; last: BitstreamError" in line
    mislabelled = write_image_bag(tmp_path / "hevc_as_h264", stamps(len(hevc_aus)), hevc_aus, kind="h264")
    line = _cli_error(capsys, ["replay", str(mislabelled), *CLI_SMALL, "--out", str(tmp_path / "m")])
    assert "no frame decoded" in line and "the data looks like hevc: the messages' format says h264" in line


def test_a_bag_cut_short_names_the_cut_file(small_clip, stamps, tmp_path, capsys):
    bag = write_image_bag(tmp_path / "cut", stamps(30), small_clip.aus[:30])
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:-1])
    line = _cli_error(capsys, ["replay", str(bag), *CLI_SMALL])
    assert "storage file cut short or corrupt" in line and f"{mcap.name} {mcap.stat().st_size} bytes" in line
    assert "seems to be empty" not in line


def test_bit_flips_in_the_last_aus_still_write_results(small_clip, stamps, tiny_runtime, replay_config, tmp_path):
    """Issue 10 item 2 through replay: the last 3 AUs damaged gave exit 2 and no results.json."""
    rng = np.random.default_rng(5)
    aus = list(small_clip.aus[:60])
    for k in (57, 58, 59):
        au = bytearray(aus[k])
        for pos in rng.integers(8, len(au), 12):
            au[pos] ^= 1 << int(rng.integers(8))
        aus[k] = bytes(au)
    aus.append(b"\x00\x00\x00\x01\x41" + rng.bytes(300))            # FFmpeg objects to this one only at drain
    bag = write_image_bag(tmp_path / "b", stamps(61), aus)
    results = replay_bag(bag, tmp_path / "out", replay_config(), progress=False, runtime=tiny_runtime)
    assert (tmp_path / "out" / "results.json").is_file() and results.num_frames >= 57
    assert results.stats["codec_issues"] >= 1 and results.groups and results.windows


def test_foxglove_video_bag_replays_and_evaluates_like_a_compressed_image_bag(small_clip, stamps, tmp_path, capsys):
    import json

    from ov2_ros.cli import main

    bag = write_image_bag(tmp_path / "clip", stamps(small_clip.num_frames), small_clip.aus, foxglove=True)
    small = ["--canvases", "8", "--max-new-tokens", "4", "--no-segment", "--quiet"]
    assert main(["replay", str(bag), "--query", "when: the red square moves", "--out", str(tmp_path / "r"),
                 *small]) == 0
    assert f"{small_clip.num_frames} frames" in capsys.readouterr().out
    results = load_results(tmp_path / "r")
    assert results.num_frames == small_clip.num_frames and results.windows
    assert results.frame_stamps_ns == tuple(stamps(small_clip.num_frames))
    gt = tmp_path / "annotations.json"
    gt.write_text(json.dumps({"version": 1, "videos": [{"name": "clip", "task": "ground", "query": "when: it moves",
                                                         "spans_s": [[1.0, 2.0]]}]}))
    assert main(["eval", "--compare", "codec", "uniform", "--bag", str(bag), "--gt", str(gt),
                 "--out", str(tmp_path / "cmp"), *small]) == 0
    assert (tmp_path / "cmp" / "comparison.json").is_file()


@pytest.mark.parametrize("kind", ["png", "mp4"])
def test_replay_overlay_draws_every_window_on_its_source_frame(camera_bags, tiny_runtime, replay_config, tmp_path,
                                                                kind):
    import av
    import cv2

    out = tmp_path / "r"
    results = replay_bag(camera_bags["mcap"], out, replay_config(overlay=kind), progress=False, runtime=tiny_runtime)
    if kind == "png":
        names = sorted(p.name for p in (out / "overlay").iterdir())
        assert names == [f"{w.end_frame - 1:06d}.png" for w in results.windows]     # one per window, its frame
        assert cv2.imread(str(out / "overlay" / names[0])).shape == (120, 160, 3)
    else:
        with av.open(str(out / "overlay.mp4")) as c:
            assert sum(1 for _ in c.decode(video=0)) == len(results.windows)
    again = replay_bag(camera_bags["mcap"], out, replay_config(), progress=False, runtime=tiny_runtime)
    assert again.windows and not (out / "overlay").exists() and not (out / "overlay.mp4").exists()
