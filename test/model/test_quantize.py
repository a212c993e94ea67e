"""Weight-only int8 (torchao) on tiny-random: memory down, logits close, greedy tokens mostly the same."""
from __future__ import annotations

import pytest
import torch

from ov2_ros.model import Query

pytest.importorskip("torchao", reason="torchao is in requirements-dev.txt (extra [quant])")


@pytest.fixture(scope="module")
def pair():
    from ov2_ros.model import load_runtime

    return load_runtime("tiny-random", max_new_tokens=8), load_runtime("tiny-random", max_new_tokens=8,
                                                                       quantize="int8")


def test_int8_weights_use_less_memory_and_keep_logits_close(pair, windows):
    from ov2_ros.model.loading import build_tiny_random
    from ov2_ros.model.quantize import quantize_weights, weight_bytes

    base, quant = pair
    model = build_tiny_random()
    report = quantize_weights(model, "int8")
    assert report.bytes_before == weight_bytes(base.model) and report.bytes_after == weight_bytes(quant.model)
    # fp32 -> int8 + one scale per output row on every Linear; embeddings, norms, conv and biases stay fp32
    assert report.ratio < 0.45 and report.modules > 10
    assert type(model.model.language_model.embed_tokens.weight) is torch.nn.Parameter
    kwargs = base.prepare(windows[3], Query("ask", "what moves?")).as_kwargs()
    with torch.inference_mode():
        ref, got = base.model(**kwargs).logits[0], quant.model(**kwargs).logits[0]
    err = (got - ref).abs().max() / ref.abs().max()
    assert err < 0.05, f"int8 logits off by {err:.3g} of the largest logit"


def test_int8_greedy_tokens_agree_with_full_precision(pair, windows):
    base, quant = pair
    agree = total = 0
    for window in windows[1:6]:
        inputs = base.prepare(window, Query("ask", "describe"))
        a = base.generate(inputs, stop_at_eos=False).token_ids
        b = quant.generate(inputs, stop_at_eos=False).token_ids
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))   # tokens before the first split
        agree, total = agree + same, total + len(a)
    assert agree / total >= 0.5, f"int8 kept {agree}/{total} greedy tokens before diverging"


def test_int8_batched_answers_equal_its_own_per_window_answers(pair, windows):
    _, quant = pair
    items = [(windows[2], Query("ask", "a")), (windows[4], Query("track", "the square"))]
    assert [a.text for a in quant.answer_batch(items)] == [quant.answer(w, q).text for w, q in items]


def test_int4_needs_cuda_and_says_so():
    from ov2_ros.model.loading import build_tiny_random
    from ov2_ros.model.quantize import QuantizationError, quantize_weights

    if torch.cuda.is_available():
        pytest.skip("CUDA here: int4 runs (bench/model_gpu.py measures it)")
    with pytest.raises(QuantizationError, match="tinygemm's CUDA kernel"):
        quantize_weights(build_tiny_random(), "int4")
    with pytest.raises(QuantizationError, match="precision must be one of"):
        quantize_weights(build_tiny_random(), "int3")
