"""ov2-ros train: the loop learns, saves the loader's layout, resumes exactly; LoRA merges back to released keys."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ov2_ros.codec.types import TokenizerConfig
from ov2_ros.model.loading import (apply_model_tokenizer, build_tiny_random, load_model, load_tokenizer,
                                   model_tokenizer_settings)
from ov2_ros.model.parsers import parse_answer
from ov2_ros.train.examples import IGNORE, collate, model_positions
from ov2_ros.train.toy import toy_tokenizer_config
from ov2_ros.train.trainer import TrainConfig, loss_of, train

FAST = dict(batch_size=4, lr=3e-3, min_lr=3e-3, warmup=1, threads=1)


def test_examples_use_runtime_prompt_and_parseable_answers(examples):
    from ov2_ros.model.answer import Query
    from ov2_ros.model.runtime import VlmRuntime

    tok = load_tokenizer("tiny-random")
    rt = VlmRuntime(build_tiny_random(), tok)
    for e in examples[:6]:
        prompt_len = int((e.labels == IGNORE).sum())
        query = Query(e.task, e.text)
        assert e.input_ids[:prompt_len].tolist() == rt.prepare(e.window, query).input_ids[0].tolist()
        assert tok.decode(e.input_ids[prompt_len:]) == e.answer + "<|im_end|>"
        assert not parse_answer(e.task, e.answer, e.window.frame_times, e.window.source_size).errors
    assert {e.task for e in examples} == {"track", "point", "ground"}


def test_short_run_lowers_loss_on_fixed_batch(examples, tmp_path):
    batch = examples[:4]                     # batch_size 4 on 4 examples: every step sees the same batch
    model = build_tiny_random(seed=1)
    model.train()
    with torch.no_grad():
        before = float(loss_of(model, collate(batch, 257), None, 0.0)[0])
    summary = train(model, load_tokenizer("tiny-random"), batch, tmp_path, TrainConfig(steps=12, aux_weight=1.0,
                    checkpoint_every=50, **FAST), toy_tokenizer_config(), progress=False)
    with torch.no_grad():
        after = float(loss_of(model, collate(batch, 257), None, 0.0)[0])
    assert after < 0.8 * before
    assert summary["history"]["aux"][0] > 0            # the aux head trained alongside
    for name in ("config.json", "model.safetensors", "tokenizer.json", "ov2_tokenizer.json"):
        assert (tmp_path / "model" / name).is_file()
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())   # no temporary folder left


def test_save_load_round_trip(examples, tmp_path):
    model = build_tiny_random(seed=2)
    train(model, load_tokenizer("tiny-random"), examples[:4], tmp_path, TrainConfig(steps=2, checkpoint_every=50,
          aux_weight=0.0, **FAST), toy_tokenizer_config(), progress=False)
    loaded = load_model(str(tmp_path / "model"))
    batch = collate(examples[:2], 257)
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw",
                                    "patch_positions")}
    with torch.no_grad():
        a, b = model.eval()(**kwargs).logits, loaded(**kwargs).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    settings = model_tokenizer_settings(str(tmp_path / "model"))
    assert settings["max_pixels"] == 20_000 and settings["sample_fps"] == 0.0
    applied = apply_model_tokenizer(TokenizerConfig(), str(tmp_path / "model"))
    assert applied.max_pixels == 20_000 and applied.window_canvases == 4
    assert apply_model_tokenizer(TokenizerConfig(max_pixels=50_000), str(tmp_path / "model")).max_pixels == 50_000


def test_resume_continues_where_it_stopped(examples, tmp_path):
    data = examples[:8]
    tok = load_tokenizer("tiny-random")
    cfg = TrainConfig(steps=4, checkpoint_every=2, aux_weight=1.0, **FAST)
    train(build_tiny_random(seed=3), tok, data, tmp_path / "full", cfg, toy_tokenizer_config(), progress=False)
    half = TrainConfig(**{**cfg.__dict__, "steps": 2})
    train(build_tiny_random(seed=3), tok, data, tmp_path / "split", half, toy_tokenizer_config(), progress=False)
    # the second call finds the step-2 checkpoint and runs steps 3-4 only
    state = json.loads((tmp_path / "split" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2
    out = train(build_tiny_random(seed=99), tok, data, tmp_path / "split", cfg, toy_tokenizer_config(),
                progress=False)
    assert out["history"]["step"] == [1, 2, 3, 4]
    full = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "model" / "model.safetensors"))
    assert full.keys() == split.keys()
    for k in full:
        assert torch.allclose(full[k], split[k], atol=1e-5), k


def test_lora_trains_adapters_and_saves_released_keys(examples, tmp_path):
    pytest.importorskip("peft")
    from ov2_ros.model.loading import expected_shapes, read_weight_shapes
    from ov2_ros.train.lora import add_lora

    base = build_tiny_random(seed=4)
    ref = {k: v.clone() for k, v in base.state_dict().items()}
    model, trainable = add_lora(base, rank=4)
    assert trainable and all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    train(model, load_tokenizer("tiny-random"), examples[:4], tmp_path, TrainConfig(steps=3, checkpoint_every=50,
          aux_weight=0.0, **FAST), toy_tokenizer_config(), trainable=trainable, progress=False, merge=True)
    saved = read_weight_shapes(tmp_path / "model")
    assert saved == expected_shapes(load_model(str(tmp_path / "model")).config)
    merged = load_file(str(tmp_path / "model" / "model.safetensors"))
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[q], ref[q])                            # the adapter was folded in
    vis = "model.visual.embeddings.patch_embedding.weight"
    assert torch.equal(merged[vis], ref[vis])                               # frozen outside the adapters
    assert np.isfinite(merged[q].numpy()).all()


def test_locate_loss_binds_the_query_to_its_object(examples, tmp_path):
    from ov2_ros.codec.synth import OBJECT_NAMES, make_scene
    from ov2_ros.train.aux import AuxHead
    from ov2_ros.train.trainer import aux_state_of

    scene = make_scene(3, num_frames=24)
    e = next(x for x in examples if x.task == "track")
    obj = [o.name for o in scene.objects].index(e.text)
    pts = np.array([scene.point(f, obj) for f in e.window.frame_times if scene.point(f, obj) is not None])
    assert e.query_xy == pytest.approx(pts.mean(axis=0) / (scene.width, scene.height), abs=1e-5)
    assert OBJECT_NAMES[e.query_class] == e.text
    moving = scene.objects[obj].moving
    assert e.query_moving.tolist() == [float(any(a <= f < b for a, b in moving)) for f in sorted(e.window.frame_times)]

    batch = examples[1:5]                   # both still and moving queries
    assert any(np.nansum(x.query_moving) > 0 for x in batch) and any(np.nanmin(x.query_moving) == 0 for x in batch)
    model = build_tiny_random(seed=1)

    def locate(head, **kw):
        with torch.no_grad():
            b = collate(batch, 257)
            vis = model.model.get_video_features(b["pixel_values_videos"], b["video_grid_thw"], b["patch_positions"])
            out = model(inputs_embeds=model.model.embed(b["input_ids"], video_embeds=vis),
                        attention_mask=b["attention_mask"])
            return float(head.locate_loss(out.last_hidden_state, b["labels"], b["query_xy"], b["query_class"], 0.5,
                                          b["query_moving"], **kw))

    torch.manual_seed(0)
    start = AuxHead(model.config.text_config.hidden_size)       # the head train() starts from
    before, before_move = locate(start), locate(start, move_weight=1.0) - locate(start)
    train(model, load_tokenizer("tiny-random"), batch, tmp_path, TrainConfig(steps=12, locate_weight=2.0,
          name_weight=0.5, move_weight=1.0, checkpoint_every=50, **FAST), toy_tokenizer_config(), progress=False)
    head = AuxHead(model.config.text_config.hidden_size)
    head.load_state_dict(aux_state_of(tmp_path))
    assert locate(head) < 0.5 * before
    assert locate(head, move_weight=1.0) - locate(head) < 0.5 * before_move     # the motion term learned too
    saved = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert not any(k.split(".")[0] in ("proj", "locate", "name", "move") for k in saved)    # training-only


def test_motion_loss_only_reaches_the_tasks_it_is_given(examples, tmp_path):
    """``move_tasks`` limits the motion term: with no `when` example in the batch, its head never gets a gradient."""
    from ov2_ros.train.aux import AuxHead
    from ov2_ros.train.trainer import aux_state_of

    batch = [e for e in examples if e.task != "ground"][:4]
    assert len(batch) == 4 and any(np.nansum(e.query_moving) > 0 for e in batch)
    model = build_tiny_random(seed=1)
    torch.manual_seed(0)
    start = AuxHead(model.config.text_config.hidden_size).state_dict()     # train() seeds, then builds its head
    moved = {}
    for tasks in (("ground",), ("point", "track", "ground")):
        run = tmp_path / "_".join(tasks)
        train(model, load_tokenizer("tiny-random"), batch, run, TrainConfig(steps=3, locate_weight=1.0,
              move_weight=1.0, move_tasks=tasks, checkpoint_every=50, **FAST), toy_tokenizer_config(), progress=False)
        moved[tasks] = float((aux_state_of(run)["move.weight"] - start["move.weight"]).abs().max())
    assert moved[("ground",)] == 0.0 and moved[("point", "track", "ground")] > 1e-4


def test_jump_targets_are_the_cycles_that_start_in_the_window():
    from ov2_ros.codec.synth import make_scene
    from ov2_ros.train.scenes import moving_spans

    scene = make_scene(100_001, periodic=True)
    starts = scene.objects[0].cycle_starts
    lo = starts[1] + 1                              # a window opening just after a cycle started
    frames = list(range(lo, lo + 20))
    spans = moving_spans(scene, 0, frames, "jumps")
    assert spans, "a 20-frame window holds a cycle start of a ~13-frame period"
    assert all(round(a * scene.fps) in starts for a, _ in spans)
    assert all(lo <= round(a * scene.fps) < lo + 20 for a, _ in spans)


def test_aux_warmup_trains_the_new_head_alone_first(examples, tmp_path):
    """During ``aux_warmup`` steps only the new aux head learns: on a fixed batch the answer loss stays where it
    was while the aux loss falls; the ``steps`` after them train the model too."""
    batch = examples[:4]                     # batch_size 4 on 4 examples: every step sees the same batch
    model = build_tiny_random(seed=1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    out = train(model, load_tokenizer("tiny-random"), batch, tmp_path, TrainConfig(steps=2, aux_warmup=4,
                aux_weight=1.0, checkpoint_every=50, **FAST), toy_tokenizer_config(), progress=False)
    hist = out["history"]
    assert hist["step"] == [1, 2, 3, 4, 5, 6]
    assert np.allclose(hist["lm"][:5], hist["lm"][0], rtol=1e-5)    # steps 1-4 froze the model (5 sees it)
    assert hist["aux"][4] < hist["aux"][0]
    assert hist["lm"][5] < hist["lm"][4]                            # step 5 updated it
    assert max(float((model.state_dict()[k] - start[k]).abs().max()) for k in start) > 1e-4


def test_deepen_keeps_the_function_and_the_released_keys(examples):
    from ov2_ros.model.loading import check_keys, expected_shapes
    from ov2_ros.train.grow import deepen, spread

    assert spread(4, 8) == [0, 2, 4, 6] and spread(3, 5) == [0, 1, 3]
    model = build_tiny_random(seed=4).eval()
    grown = deepen(model, text_layers=2 * model.config.text_config.num_hidden_layers,
                   vision_layers=model.config.vision_config.num_hidden_layers + 1).eval()
    assert grown.config.text_config.num_hidden_layers == 2 * model.config.text_config.num_hidden_layers
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in model.parameters())
    check_keys({k: tuple(v.shape) for k, v in grown.state_dict().items()}, expected_shapes(grown.config), "grown")
    batch = collate(examples[:2], 257)
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw",
                                    "patch_positions")}
    with torch.no_grad():
        a, b = model(**kwargs).logits, grown(**kwargs).logits
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_vision_motion_target_marks_the_moving_shape_tokens(tmp_path):
    """``motion=True``: a fourth aux channel, each token's cover by a named shape while that shape moves (0 while it
    is still), and ``vmove_weight`` trains the head's vision-side motion output on it."""
    from ov2_ros.codec.synth import OBJECT_NAMES, make_scene
    from ov2_ros.train.aux import AuxHead
    from ov2_ros.train.scenes import build_scene_examples
    from ov2_ros.train.trainer import aux_state_of

    scene = make_scene(3, num_frames=24)
    made = build_scene_examples([3], toy_tokenizer_config(), load_tokenizer("tiny-random"), ("track",),
                                motion=True, num_frames=24)
    assert made[0].aux.shape[-1] == 4
    seen = {True: 0, False: 0}
    for e in made:
        frames = model_positions(e.window).reshape(-1, 4, 3)[:, 0, 0]
        for j, o in enumerate(scene.objects):
            c = OBJECT_NAMES.index(o.name)
            for k, f in enumerate(frames):
                if f < 0 or e.aux[k, c, 0] == 0:
                    continue
                moving = any(a <= f < b for a, b in o.moving)
                assert e.aux[k, c, 3] == pytest.approx(e.aux[k, c, 0] if moving else 0.0)
                seen[moving] += 1
    assert seen[True] and seen[False]

    batch = made[:4]
    model = build_tiny_random(seed=1)

    def vmove(head):
        with torch.no_grad():
            b = collate(batch, 257)
            vis = model.model.get_video_features(b["pixel_values_videos"], b["video_grid_thw"], b["patch_positions"])
            return float(head.loss(vis, b["aux"], b["aux_valid"], vmove_weight=1.0)
                         - head.loss(vis, b["aux"], b["aux_valid"]))

    torch.manual_seed(0)
    before = vmove(AuxHead(model.config.text_config.hidden_size))
    train(model, load_tokenizer("tiny-random"), batch, tmp_path, TrainConfig(steps=12, vmove_weight=1.0,
          checkpoint_every=50, **FAST), toy_tokenizer_config(), progress=False)
    head = AuxHead(model.config.text_config.hidden_size)
    head.load_state_dict(aux_state_of(tmp_path))
    assert vmove(head) < 0.5 * before
