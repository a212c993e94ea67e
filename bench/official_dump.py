"""Run inside ``.venv-bench`` (numpy 1.x, codec-video-prep 0.2.5): the official tool's run on one clip plus its
per-macroblock bit-cost maps, written where the project's venv can read them.

``python bench/official_dump.py VIDEO OUT_DIR CANVASES`` runs ``LlavaCodecPreprocessConfig``'s sampling
(``target_canvas`` = CANVASES) through ``run_preinfer`` into ``OUT_DIR/run`` (meta.json, frame_ids.npy,
src_patch_position.npy, canvases), then reads the patched decoder's ``mb_bit_cost`` maps for *every* frame of the
clip (so any sampling can be scored against them) into ``OUT_DIR/mb_bits.npz`` (``bits``: (frames, mb_rows,
mb_cols) float32, ``pict_type``: (frames,) str). Prints one JSON line with the run's timings.
"""
import json
import sys
from pathlib import Path

import numpy as np


def main(video: str, out_dir: str, canvases: int) -> None:
    from codec_video_prep import run_preinfer
    from codec_video_prep.cv_reader_fast import read_video_fast_selected
    from codec_video_prep.integrations.llava_onevision import LlavaCodecPreprocessConfig
    from codec_selector.core.probe import probe_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total = probe_video(video).total_frames
    cfg = LlavaCodecPreprocessConfig(cache_root=str(out), target_canvas=int(canvases))
    result = run_preinfer(video=video, out_dir=str(out / "run"), num_sampled_frames=cfg.num_sampled_frames(total),
                          group_size=cfg.group_size, images_per_group=cfg.images_per_group, patch=cfg.patch,
                          max_pixels=cfg.max_pixels, min_group_frames=cfg.min_group_frames,
                          max_group_frames=cfg.max_group_frames, bitcost_grid=cfg.bitcost_grid,
                          grouping_mode=cfg.grouping_mode, frame_sampling_mode=cfg.frame_sampling_mode,
                          avoid_keyframes=cfg.avoid_keyframes, decode_backend="cv_reader_pixels")
    frames = read_video_fast_selected(video, list(range(int(total))), thread_count=1, export_bitcost=1,
                                      thread_type="slice")
    maps, kinds = {}, {}
    for f in frames:
        bc = f.get("bitcost") or {}
        if "mb_bit_cost" in bc:
            maps[int(f["frame_idx"])] = np.asarray(bc["mb_bit_cost"], dtype=np.float32)
            kinds[int(f["frame_idx"])] = str(f.get("pict_type", "?"))
    idx = sorted(maps)
    np.savez_compressed(out / "mb_bits.npz", frame_idx=np.asarray(idx, np.int32),
                        bits=np.stack([maps[i] for i in idx]), pict_type=np.asarray([kinds[i] for i in idx]))
    print(json.dumps({"timings": result.timings, "frames": len(idx), "total_frames": int(total)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
