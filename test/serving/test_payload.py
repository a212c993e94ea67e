"""Windows on the wire without Ray: framing, canvas codecs, groups, the replica's per-stream cache, answers."""
from __future__ import annotations

import numpy as np
import pytest

from ov2_ros.model.answer import Answer, Point, Query, Span, TrackPoint, Waypoint
from ov2_ros.serving import PayloadError, ServedRuntime, StreamGroups, decode_group, encode_group, payload, wire


def test_pack_moves_bytes_out_of_band_and_round_trips():
    obj = {"a": [1, 2.5, "x", None, True], "b": b"\x00\x01" * 100, "c": [{"d": b""}, {"e": b"zz"}]}
    data = wire.pack(obj)
    assert wire.unpack(data) == obj
    assert data.count(b"\x00\x01" * 100) == 1          # raw, not base64 or escaped into the JSON header


@pytest.mark.parametrize("bad, match", [(b"OV2", "shorter"), (b"NOPE" + b"\0" * 8, "does not start"),
                                        (None, "runs past")])
def test_unpack_rejects_bad_messages(bad, match):
    if bad is None:
        bad = wire.pack({"x": b"abcdef"})[:-3]          # truncated body
    with pytest.raises(PayloadError, match=match):
        wire.unpack(bad)


def test_i420_canvases_decode_exactly_and_jpeg_closely(windows):
    window = windows[-1]
    for group in window.groups:
        exact = decode_group(encode_group(group, "i420").body, window.canvas_size)
        lossy = decode_group(encode_group(group, "jpeg", 90).body, window.canvas_size)
        assert (exact.index, exact.start_frame, exact.end_frame) == (group.index, group.start_frame, group.end_frame)
        assert exact.frame_times == group.frame_times and exact.frame_stamps == group.frame_stamps
        for src, a, b in zip(group.canvases, exact.canvases, lossy.canvases):
            assert a.kind == src.kind and np.array_equal(a.positions, src.positions)
            assert np.array_equal(a.pixels, src.pixels)
            err = np.abs(b.pixels.astype(int) - src.pixels.astype(int))
            assert np.array_equal(b.positions, src.positions) and err.mean() < 4.0


def test_group_key_names_the_group_and_a_corrupted_blob_is_refused(windows):
    group = windows[0].groups[0]
    wg = encode_group(group, "jpeg")
    assert wg.key.startswith(f"{group.index}:{group.start_frame}-{group.end_frame}:")
    assert encode_group(group, "jpeg").key == wg.key                 # deterministic: the replica can dedupe
    body = dict(wg.body, canvases=[wg.body["canvases"][0][:-1] + b"\x00", *wg.body["canvases"][1:]])
    with pytest.raises(PayloadError, match="digest"):
        decode_group(body, windows[0].canvas_size)
    with pytest.raises(PayloadError, match="encoding"):
        payload.encode_canvas(group.canvases[0].pixels, "png")


def test_stream_groups_resolve_slides_and_report_what_they_lack(windows):
    query = Query("ask", "what moves?")
    first, second = windows[1], windows[2]                   # second = first slid by one group
    wire_first = [encode_group(g, "i420") for g in first.groups]
    cache = StreamGroups()
    req = payload.request("s", first, [g.key for g in wire_first], query, wire_first)
    window, missing = cache.window(req)
    assert not missing and [g.index for g in window.groups] == [g.index for g in first.groups]
    assert np.array_equal(window.pixels, first.pixels) and window.frame_times == first.frame_times
    assert (window.canvas_size, window.source_size, window.fps) == (first.canvas_size, first.source_size, first.fps)

    wire_second = [encode_group(g, "i420") for g in second.groups]
    keys = [g.key for g in wire_second]
    slide = payload.request("s", second, keys, query, wire_second[-1:])      # only the new group travels
    window, missing = cache.window(slide)
    assert not missing and np.array_equal(window.pixels, second.pixels)
    assert len(cache) == len(second.groups)                   # the group that left the window is dropped

    fresh = StreamGroups()                                    # a restarted replica: nothing cached
    window, missing = fresh.window(slide)
    assert window is None and missing == keys[:-1]


def test_client_sends_only_groups_the_replica_is_not_known_to_hold(windows):
    """The request a slide makes (no server involved: the bytes the client would send)."""
    client = ServedRuntime("http://127.0.0.1:9", "ov2", stream_id="robot1", encoding="jpeg")
    query = Query("track", "the red square")
    full, keys = client.request_bytes(windows[1], query)
    client._known = set(keys)                                 # as after an "ok" reply
    slide, keys2 = client.request_bytes(windows[2], query)
    req = wire.unpack(slide)
    assert req["stream"] == "robot1" and req["window"]["keys"] == keys2
    assert [g["key"] for g in req["groups"]] == keys2[-1:]
    assert len(slide) < 0.75 * len(full)
    again, _ = client.request_bytes(windows[2], query, resend=True)
    assert len(wire.unpack(again)["groups"]) == len(windows[2].groups)


def test_answer_json_round_trips():
    answer = Answer(task="track", text="t", tracks=(TrackPoint(3, 0.1, 1, 10.5, 20.0, "mug"),),
                    points=(Point(4, 0.2, 1.0, 2.0, "p"),), waypoints=(Waypoint(1.0, 2.0, 0.5),), waypoint_frame=7,
                    spans=(Span(0.5, 1.25),), errors=("x",), window_span=(0.0, 2.0), window_frames=(0, 60),
                    latency_s=0.3, extra={"new_tokens": 5})
    import json

    assert payload.answer_from_dict(json.loads(json.dumps(answer.to_json_dict()))) == answer
    with pytest.raises(PayloadError, match="Answer JSON"):
        payload.answer_from_dict({"task": "ask"})


def test_a_server_that_is_not_there_fails_fast_and_backs_off(windows):
    client = ServedRuntime("http://127.0.0.1:9", "ov2", timeout_s=2.0, backoff_s=0.5, max_backoff_s=2.0)
    from ov2_ros.serving import ServerUnavailableError

    with pytest.raises(ServerUnavailableError, match="127.0.0.1:9"):
        client.answer(windows[0], Query("ask", "what?"))
    assert client.stats["failures"] == 1 and client.retry_in_s > 0
    with pytest.raises(ServerUnavailableError, match="retrying in"):      # no request while backing off
        client.answer(windows[0], Query("ask", "what?"))
    assert client.stats["requests"] == 1 and client.status()["serve_failures"] == 1
