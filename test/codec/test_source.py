"""File packet source: container and raw files -> Annex-B access units that decode like live bytes; bad files."""
from __future__ import annotations

import av
import numpy as np
import pytest

from ov2_ros.codec.decoder import StreamDecoder
from ov2_ros.codec.errors import UnsupportedFormatError, VideoFileError, VideoFileNotFoundError
from ov2_ros.codec.nal import ENTRY_TYPES, PARAMETER_SET_TYPES, nal_type, validate_access_unit
from ov2_ros.codec.source import VideoInfo, iter_access_units, probe
from ov2_ros.codec.synth import event_frames
from ov2_ros.errors import Ov2Error

FRAMES = 40


def write_video(path, codec="libx264", bframes=0, frames=FRAMES, gop=15):
    """Encode the event clip's first frames into a container with PyAV's muxer (length-prefixed NALs + avcC/hvcC
    for mp4/mkv/mov, Annex-B for MPEG-TS)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        if codec == "libx265":
            stream.codec_context.options = {"x265-params": f"log-level=error:bframes={bframes}:scenecut=0"}
        for i, (rgb, _) in zip(range(frames), event_frames(160, 120)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def decode_file(path, codec="h264"):
    with StreamDecoder(codec) as dec:
        frames = []
        for au, pts in iter_access_units(path):
            frames += dec.decode(au, stamp=pts)
        return frames + dec.flush()


@pytest.mark.parametrize("name,encoder,bframes", [
    ("clip.mp4", "libx264", 0), ("clip.mkv", "libx264", 2), ("clip.mov", "libx264", 0), ("clip.ts", "libx264", 0),
    ("clip_hevc.mp4", "libx265", 2),
])
def test_container_gives_annexb_access_units_that_decode_every_frame(tmp_path, name, encoder, bframes):
    codec = "hevc" if encoder == "libx265" else "h264"
    path = write_video(tmp_path / name, encoder, bframes=bframes)
    assert probe(path) == VideoInfo(frames=FRAMES, fps=30.0, width=160, height=120, codec=codec,
                                    b_frames=bframes > 0)
    aus = list(iter_access_units(path))
    assert len(aus) == FRAMES
    entries = 0
    for au, _ in aus:
        assert au.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
        kinds = {nal_type(n, codec) for n in validate_access_unit(au, codec)}
        if kinds & ENTRY_TYPES[codec]:    # parameter sets from avcC/hvcC were put in front of every keyframe
            entries += 1
            assert {PARAMETER_SET_TYPES[codec].get(k) for k in kinds} >= set(PARAMETER_SET_TYPES[codec].values())
    assert entries == 3                    # gop 15
    assert sorted(pts for _, pts in aus) == pytest.approx(np.arange(FRAMES) / 30, abs=1e-3)   # mkv: ms ticks
    frames = decode_file(path, codec)
    assert len(frames) == FRAMES
    # container pts follow each picture through B-frame reordering: output times are the display times
    assert [f.time_s for f in frames] == pytest.approx(np.arange(FRAMES) / 30, abs=1e-3)


def test_raw_annexb_file_splits_into_the_original_access_units(tmp_path, small_clip):
    path = tmp_path / "clip.h264"
    path.write_bytes(b"".join(small_clip.aus))
    info = probe(path)
    assert (info.frames, info.width, info.height, info.codec) == (small_clip.num_frames, 160, 120, "h264")
    aus = list(iter_access_units(path))
    assert [au for au, _ in aus] == list(small_clip.aus)
    assert [pts for _, pts in aus] == pytest.approx(np.arange(len(aus)) / info.fps)   # raw: decode index / fps
    assert len(decode_file(path)) == small_clip.num_frames


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.mp4"
    for call in (probe, iter_access_units):      # raised at the call, before any iteration
        with pytest.raises(VideoFileNotFoundError, match="nope.mp4") as info:
            call(path)
        assert isinstance(info.value, Ov2Error) and isinstance(info.value, FileNotFoundError)


def write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("name,make,message", [
    ("random.mp4", lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)), "not a readable video file"),
    ("notes.mkv", lambda p: p.write_text("not a video\n" * 20), "not a readable video file"),
    ("empty.mp4", lambda p: p.write_bytes(b""), "not a readable video file"),
    ("sound.wav", write_audio_only, "no video stream"),
    ("empty.h264", lambda p: p.write_bytes(b""), "no frames|no Annex-B start code"),
])
def test_garbage_files_raise_a_clear_error(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    for call in (probe, lambda p: list(iter_access_units(p))):
        with pytest.raises(VideoFileError, match=message) as info:
            call(path)
        assert name in str(info.value) and isinstance(info.value, ValueError)


def test_damaged_mp4_payload_raises_naming_the_packet(tmp_path):
    data = bytearray(write_video(tmp_path / "clip.mp4").read_bytes())
    mdat = data.find(b"mdat")
    end = mdat - 4 + int.from_bytes(data[mdat - 4:mdat], "big")
    for offset in range(mdat + 4, end - 4, 13):      # garble the NAL length prefixes inside the media data
        data[offset:offset + 4] = b"\xff\xff\xff\xff"
    path = tmp_path / "damaged.mp4"
    path.write_bytes(data)
    with pytest.raises(VideoFileError, match=r"damaged\.mp4: video packet #0 cannot be converted to Annex-B"):
        list(iter_access_units(path))


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(VideoFileError, match="not a regular file"):
        probe(tmp_path)


def test_non_h264_video_is_unsupported_for_replay(tmp_path):
    path = write_video(tmp_path / "clip_mpeg4.mp4", codec="mpeg4", frames=5)
    assert probe(path).codec == "mpeg4"
    with pytest.raises(UnsupportedFormatError, match="mpeg4"):
        next(iter_access_units(path))
