"""The SAM2 leg of replay: track answers -> real tiny-random SAM2 -> masks/, /mask and /tracking/points -> J&F.

The tiny-random VLM never writes parseable points, so here the answers come from a scripted source that points at the
clip's known object (``BoxPointer``); the bag, decoder, tokenizer, pipeline, SAM2, results bag and metrics are real.
"""
import cv2
import numpy as np
from rosbags.rosbag2 import Reader

from ov2_ros.eval.annotations import VideoAnnotation
from ov2_ros.eval.bags import typestore, write_image_bag
from ov2_ros.eval.replay import replay_bag
from ov2_ros.eval.results import RESULTS_BAG
from ov2_ros.eval.scoring import evaluate
from ov2_ros.model.answer import Answer, TrackPoint


class BoxPointer:
    """Answers a track query with the centre of the object's true box on the newest window frame that has one."""

    def __init__(self, boxes):
        self.boxes = boxes

    def answer(self, window, query):
        frames = [f for f in range(window.start_frame, window.end_frame) if f in self.boxes]
        tracks = ()
        if frames:
            x0, y0, x1, y1 = self.boxes[frames[-1]]
            tracks = (TrackPoint(frames[-1], frames[-1] / 30, 1, (x0 + x1) / 2, (y0 + y1) / 2, "square"),)
        return Answer(task=query.task, text="scripted", tracks=tracks,
                      window_frames=(window.start_frame, window.end_frame))


def _ns(header):
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def test_track_replay_writes_masks_at_source_stamps_and_scores_them(small_clip, stamps, replay_config, tmp_path):
    bag = write_image_bag(tmp_path / "clip", stamps(60), small_clip.aus[:60])
    results = replay_bag(bag, tmp_path / "out", replay_config(query="track: the red square", segment=True),
                         progress=False, runtime=BoxPointer(small_clip.boxes))
    assert results.stats["segment_errors"] == 0
    mask_frames = sorted({f for w in results.windows for f in w.mask_frames})
    assert mask_frames and all((tmp_path / "out" / "masks" / f"{f:06d}.png").is_file() for f in mask_frames)

    store = typestore()
    with Reader(tmp_path / "out" / RESULTS_BAG) as reader:
        msgs = [(c.topic, store.deserialize_cdr(raw, c.msgtype)) for c, _, raw in reader.messages()]
    masks = [m for t, m in msgs if t == "/mask"]
    points = [m for t, m in msgs if t == "/tracking/points"]
    assert {_ns(m.header) for m in masks} == {results.frame_stamps_ns[f] for f in mask_frames}
    assert masks[0].encoding == "mono8" and (masks[0].height, masks[0].width) == (small_clip.height, small_clip.width)
    for p in points:     # each point is stamped with the frame it is on, and lies on the object there
        frame = results.frame_stamps_ns.index(_ns(p.header))
        x0, y0, x1, y1 = small_clip.boxes[frame]
        assert x0 <= p.point.x <= x1 and y0 <= p.point.y <= y1

    gt_masks = {}
    for f in mask_frames[:4]:
        x0, y0, x1, y1 = small_clip.boxes.get(f, (0, 0, 0, 0))
        m = np.zeros((small_clip.height, small_clip.width), np.uint8)
        m[y0:y1, x0:x1] = 255
        cv2.imwrite(str(tmp_path / f"{f}.png"), m)
        gt_masks[f] = tmp_path / f"{f}.png"
    e = evaluate(results, VideoAnnotation(results.name, "track", "track: the red square", masks=gt_masks),
                 tmp_path / "out")
    # SAM2's weights are random, so J and F are only checked to be computed over real masks, in range
    assert 0.0 <= e.metrics["j"] <= 1.0 and 0.0 <= e.metrics["f"] <= 1.0
    assert e.metrics["mask_point_precision"] == 1.0          # every scripted point is inside the object
