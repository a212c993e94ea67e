"""VlmRuntime on real codec windows: greedy static-cache decoding, the per-window vision cache, answers."""
from __future__ import annotations

import pytest
import torch

from ov2_ros.model import Query
from ov2_ros.model.answer import Answer


def test_static_cache_greedy_equals_full_forward_argmax(runtime, windows):
    """Each generated token is the argmax of a cache-free forward over prompt + tokens so far."""
    window = windows[3]
    inputs = runtime.prepare(window, Query("ask", "what moves?"))
    gen = runtime.generate(window, inputs, max_new_tokens=6, use_vision_cache=False)
    assert len(gen.token_ids) in range(1, 7) and gen.prompt_tokens == inputs.input_ids.shape[1]
    ids = inputs.input_ids
    kwargs = inputs.as_kwargs()
    with torch.no_grad():
        for tok in gen.token_ids:
            kwargs.update(input_ids=ids, attention_mask=torch.ones_like(ids))
            assert int(runtime.model(**kwargs).logits[0, -1].argmax()) == tok
            ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)


def test_answer_fills_window_fields_and_timings(runtime, windows):
    window = windows[-1]
    answer = runtime.answer(window, Query("track", "the red square"))
    assert isinstance(answer, Answer) and answer.task == "track"
    assert answer.window_frames == (window.start_frame, window.end_frame)
    assert answer.window_span == (min(window.frame_times.values()), max(window.frame_times.values()))
    assert answer.latency_s > 0 and 1 <= answer.extra["new_tokens"] <= 12
    # random weights write no <tracks> element: the parser reports it instead of raising
    assert answer.errors and not answer.tracks


def test_vision_cache_hits_when_the_window_slides_and_matches_recompute(runtime, windows):
    runtime.vision_cache.clear()
    hits0, misses0 = runtime.vision_cache.hits, runtime.vision_cache.misses
    outs = []
    for window in windows[1:5]:                  # each slides by one group
        inputs = runtime.prepare(window, Query("ask", "?"))
        cached = runtime.vision_tokens(inputs, use_cache=True)
        fresh = runtime.vision_tokens(inputs, use_cache=False)
        torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-5)   # batched vs per-window kernels
        outs.append(cached)
    # window 1 is two new groups; each later slide brings one new group and reuses the other
    assert runtime.vision_cache.misses - misses0 == 2 + 3
    assert runtime.vision_cache.hits - hits0 == 3
    # the reused group's tokens are bit-identical to when it was computed
    half = outs[0].shape[0] // 2
    assert torch.equal(outs[1][:half], outs[0][half:])


def test_cache_key_tracks_pixels(runtime, windows):
    from dataclasses import replace

    window = windows[2]
    group = window.groups[-1]
    canvas = group.canvases[0]
    brighter = replace(canvas, pixels=(canvas.pixels // 2).copy())
    changed = replace(window, groups=window.groups[:-1] + (replace(group, canvases=(brighter,) + group.canvases[1:]),))
    runtime.vision_cache.clear()
    misses = runtime.vision_cache.misses
    for w in (window, changed):
        runtime.vision_tokens(runtime.prepare(w, Query("ask", "?")))
    assert runtime.vision_cache.misses - misses == 3     # 2 groups, then only the edited group again


def test_close_releases_the_model():
    from ov2_ros.model import load_runtime

    rt = load_runtime("tiny-random", max_new_tokens=2)
    rt.close()
    assert rt.model is None


def test_transformers_generate_gives_the_same_tokens(runtime, windows):
    """The model also works with transformers' own generate(); greedy tokens agree with the runtime's."""
    window = windows[5]
    inputs = runtime.prepare(window, Query("ask", "describe"))
    ours = runtime.generate(window, inputs, max_new_tokens=5, stop_at_eos=False)
    theirs = runtime.model.generate(**inputs.as_kwargs(), max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert theirs[0, inputs.input_ids.shape[1]:].tolist() == list(ours.token_ids)


def test_kv_cache_is_reused_across_queries(runtime, windows):
    inputs = runtime.prepare(windows[4], Query("ask", "a"))
    first = runtime.generate(windows[4], inputs, 4, stop_at_eos=False)
    decoders = dict(runtime._decoders)
    again = runtime.generate(windows[4], runtime.prepare(windows[4], Query("ask", "a")), 4, stop_at_eos=False)
    assert again.token_ids == first.token_ids                                  # reset, not stale
    key = next(k for k in runtime._decoders if k[0] == 1)
    assert runtime._decoders[key] is decoders[key] and runtime._decoders[key].cache is decoders[key].cache


def test_canvas_digests_are_memoised_and_dropped_with_their_arrays(windows):
    import gc

    from ov2_ros.model.vision_cache import VisionCache

    cache = VisionCache()
    window = windows[3]
    key = cache.window_key(window.groups[0].canvases)
    assert len(cache._digests) == 4 and cache.window_key(window.groups[0].canvases) == key
    from dataclasses import replace
    copies = tuple(replace(c, pixels=c.pixels.copy()) for c in window.groups[0].canvases)
    assert cache.window_key(copies) == key and len(cache._digests) == 8     # same content, same key
    moved = tuple(replace(c, positions=c.positions + 1) for c in copies)
    assert cache.window_key(moved) != key
    del copies, moved
    gc.collect()
    assert len(cache._digests) == 4


def test_generate_accepts_both_published_call_forms(runtime, windows):
    window = windows[1]
    inputs = runtime.prepare(window, Query("ask", "?"))
    a = runtime.generate(inputs, 3, stop_at_eos=False)
    b = runtime.generate(window, inputs, 3, stop_at_eos=False)
    assert a.token_ids == b.token_ids and len(a.token_ids) == 3
    from ov2_ros.model import ModelError
    with pytest.raises(ModelError, match="prepared from that window"):
        runtime.generate(windows[2], inputs)


def test_other_backends_point_to_the_engine_loader():
    from ov2_ros.model import ModelError, load_runtime
    with pytest.raises(ModelError, match="select_backend"):
        load_runtime("tiny-random", backend="onnxruntime")


def test_uniform_frames_answer_end_to_end(runtime):
    from ov2_ros.codec.synth import event_frames
    from ov2_ros.model import window_from_frames

    frames = [f for f, _ in event_frames(160, 120)]
    picks = list(range(0, 120, 15))
    window = window_from_frames([frames[i] for i in picks], picks, fps=30.0)
    answer = runtime.answer(window, Query("ground", "the square moves"))
    assert answer.task == "ground" and answer.window_frames == (0, 106)
    assert answer.extra["prompt_tokens"] > window.num_tokens


# -- batched generation (one ViT call, left-padded prefill, batched decode) -------------------------------------
def _items(windows):
    return [(windows[1], Query("ask", "what moves?")), (windows[3], Query("track", "the red square")),
            (windows[5], Query("ask", "a")), (windows[2], Query("point", "the square"))]


def _other_stream(window):
    """The same window as seen by another camera (inverted pixels): other cache keys, same layout."""
    from dataclasses import replace

    return replace(window, groups=tuple(
        replace(g, canvases=tuple(replace(c, pixels=255 - c.pixels) for c in g.canvases)) for g in window.groups))


def test_batched_greedy_tokens_equal_per_window_generation(runtime, windows):
    batch = [runtime.prepare(w, q) for w, q in _items(windows)]
    assert len({x.input_ids.shape[1] for x in batch}) == 4            # every row padded differently
    alone = [runtime.generate(x, stop_at_eos=False) for x in batch]
    together = runtime.generate_batch(batch, stop_at_eos=False)
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]
    assert {g.batch_size for g in together} == {4} and len(together[0].token_ids) == runtime.max_new_tokens


def test_each_sequence_stops_at_its_own_eos(runtime, windows):
    batch = [runtime.prepare(w, q) for w, q in _items(windows)]
    free = [runtime.generate(x, stop_at_eos=False).token_ids for x in batch]
    # random weights rarely say EOS: make a token the rows reach at different steps the stop token
    stop = next(t for t in free[0][1:] if len({row.index(t) if t in row else None for row in free}) > 1)
    saved = set(runtime.stop_ids)
    try:
        runtime.stop_ids = {stop}
        alone = [runtime.generate(x).token_ids for x in batch]
        together = [g.token_ids for g in runtime.generate_batch(batch)]
    finally:
        runtime.stop_ids = saved
    assert together == alone
    assert len({len(t) for t in together}) > 1 and min(len(t) for t in together) < runtime.max_new_tokens
    assert all(stop not in t for t in together)


def test_answer_batch_equals_answers_one_by_one(runtime, windows):
    items = _items(windows)
    one_by_one = [runtime.answer(w, q) for w, q in items]
    batched = runtime.answer_batch(items)
    assert [a.text for a in batched] == [a.text for a in one_by_one]
    assert [(a.task, a.window_frames, a.window_span) for a in batched] == \
        [(a.task, a.window_frames, a.window_span) for a in one_by_one]
    assert {a.extra["batch_size"] for a in batched} == {4} and len({a.latency_s for a in batched}) == 1
    assert runtime.answer_batch([]) == []


def test_batch_vision_cache_works_per_stream(windows):
    from ov2_ros.model import load_runtime

    rt = load_runtime("tiny-random", max_new_tokens=2, vision_cache_windows=1)   # grown to hold the batch
    vit = rt.model.model.get_video_features
    calls = []
    rt.model.model.get_video_features = lambda *a: calls.append(len(a[1])) or vit(*a)   # count ViT calls
    streams = [windows[1:5], [_other_stream(w) for w in windows[1:5]]]
    for step, pair in enumerate(zip(*streams)):
        hits, misses = rt.vision_cache.hits, rt.vision_cache.misses
        batch = [rt.prepare(w, Query("ask", "?")) for w in pair]
        calls.clear()
        cached = rt._vision_batch(batch, use_cache=True)
        assert calls == [4 if step == 0 else 2]                     # one ViT call, one grid row per missed group
        fresh = [rt.vision_tokens(x, use_cache=False) for x in batch]
        for c, f in zip(cached, fresh):
            torch.testing.assert_close(c, f, rtol=1e-5, atol=1e-5)      # one fused ViT call vs each window alone
        # 2 groups per window: the first batch encodes both of each stream, each slide only the new one per stream
        assert rt.vision_cache.misses - misses == (4 if step == 0 else 2)
        assert rt.vision_cache.hits - hits == (0 if step == 0 else 2)
    rt.close()


def test_batch_repeating_a_window_encodes_it_once(runtime, windows):
    runtime.vision_cache.clear()
    misses = runtime.vision_cache.misses
    batch = [runtime.prepare(windows[3], Query("ask", q)) for q in ("a", "b")]
    a, b = runtime._vision_batch(batch, use_cache=True)
    assert runtime.vision_cache.misses - misses == 2 and torch.equal(a, b)


# -- decode modes ----------------------------------------------------------------------------------------------
def test_static_step_traces_as_one_graph(runtime, windows):
    """The one-token step reads nothing back to the host (no data-dependent branch): dynamo traces it whole
    (``fullgraph``), which is what CUDA-graph capture and ``torch.compile`` need."""
    from ov2_ros.model.decoding import DecodeState, decode_step

    runtime.generate(runtime.prepare(windows[2], Query("ask", "?")), 3, stop_at_eos=False)
    dec = next(d for k, d in runtime._decoders.items() if k[0] == 1)
    saved = dec.state.snapshot()
    expected = dec.state.token.clone()
    with torch.inference_mode():
        decode_step(runtime.model, dec.state)
        expected = dec.state.token.clone()
        dec.state.restore(saved)
        traced = torch.compile(lambda: decode_step(runtime.model, dec.state), backend="eager", fullgraph=True)
        traced()
    assert torch.equal(dec.state.token, expected) and isinstance(dec.state, DecodeState)


def test_graph_decode_falls_back_to_eager_without_cuda(windows):
    from ov2_ros.model import load_runtime

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the graph path runs (test_graph_decode_equals_eager_on_cuda)")
    eager = load_runtime("tiny-random", max_new_tokens=6, decode="eager")
    graph = load_runtime("tiny-random", max_new_tokens=6, decode="graph")
    window, query = windows[4], Query("track", "the red square")
    a, b = eager.answer(window, query), graph.answer(window, query)
    assert a.extra["decode_mode"] == "eager" and a.extra["decode_fallback"] is None
    assert b.extra["decode_mode"] == "eager" and "CUDA graphs need a CUDA device" in b.extra["decode_fallback"]
    assert b.text == a.text
    batched = graph.answer_batch([(window, query), (windows[2], query)])
    assert batched[0].text == a.text and "CUDA" in batched[1].extra["decode_fallback"]
    with pytest.raises(ValueError, match="decode mode"):
        load_runtime("tiny-random", decode="fast").answer(window, query)


def test_graph_decode_equals_eager_on_cuda(windows):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: CUDA-graph capture of the decode step (bench/gpu_all.sh runs it on one)")
    from ov2_ros.model import load_runtime

    rts = {m: load_runtime("tiny-random", device="cuda", max_new_tokens=8, decode=m) for m in ("eager", "graph")}
    items = _items(windows)
    out = {m: rt.answer_batch(items) for m, rt in rts.items()}
    assert [a.text for a in out["graph"]] == [a.text for a in out["eager"]]
    assert out["graph"][0].extra["decode_mode"] == "graph", out["graph"][0].extra["decode_fallback"]
    again = rts["graph"].answer_batch(items)                 # the captured graph replays for a new query
    assert [a.text for a in again] == [a.text for a in out["eager"]]


def test_sdpa_batched_decode_equals_full_forward_argmax(windows):
    """The CUDA default attention (SDPA) on the fixed-buffer step: one query token per row attends through the
    additive cache-slot bias (GQA packed, no repeated KV), left padding masked; each token is the argmax of a
    cache-free forward."""
    from ov2_ros.model import load_runtime

    rt = load_runtime("tiny-random", max_new_tokens=5, attn_implementation="sdpa")
    batch = [rt.prepare(w, q) for w, q in _items(windows)[:2]]
    gens = rt.generate_batch(batch, stop_at_eos=False)
    with torch.no_grad():
        for inputs, gen in zip(batch, gens):
            ids, kwargs = inputs.input_ids, inputs.as_kwargs()
            for tok in gen.token_ids:
                kwargs.update(input_ids=ids, attention_mask=torch.ones_like(ids))
                assert int(rt.model(**kwargs).logits[0, -1].argmax()) == tok
                ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
    rt.close()
