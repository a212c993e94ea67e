"""Annex-B splitting, AU reassembly, SPS parsing, entry gating and validation on real libx264 bytes."""
from __future__ import annotations

import pytest

from ov2_ros.codec.nal import AnnexBParser, nal_type_h264, split_nal_units


def feed_in_chunks(stream: bytes, size: int) -> list[bytes]:
    parser = AnnexBParser()
    aus = []
    for i in range(0, len(stream), size):
        aus += parser.feed(stream[i:i + size])
    return aus + parser.flush()


@pytest.mark.parametrize("bframes", [0, 2])
@pytest.mark.parametrize("chunk", [1, 7, 188, 4096, None])
def test_chunked_stream_reassembles_into_the_original_access_units(clip_factory, bframes, chunk):
    clip = clip_factory(160, 120, bframes=bframes)
    stream = b"".join(clip.aus)
    assert feed_in_chunks(stream, chunk or len(stream)) == list(clip.aus)


def test_nal_types_of_an_idr_and_a_p_access_unit(small_clip):
    idr = [nal_type_h264(n) for n in split_nal_units(small_clip.aus[0])]
    assert idr[:2] == [7, 8] and 5 in idr and set(idr) <= {5, 6, 7, 8}
    assert {nal_type_h264(n) for n in split_nal_units(small_clip.aus[1])} == {1}
