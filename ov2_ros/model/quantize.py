"""Weight-only quantization of LLaVA-OV-2 with ``torchao`` (PyPI ``torchao``; extra ``pip install .[quant]``).

Decoding is memory-bound: every new token reads all language-model weights once, so bytes per weight set the
floor (``models/README.md`` section 4). ``quantize_weights(model, "int8" | "int4")`` swaps weights in place for
torchao tensor subclasses; activations stay in the model dtype.

- ``int8``: per-output-channel symmetric int8 (``Int8WeightOnlyConfig``) for every ``nn.Linear`` (language
  model, ``lm_head``, vision tower and merger). Runs on CPU and CUDA (on CUDA, ``torch.compile`` fuses the
  dequantisation into the matmul; eager dequantises each weight per call).
- ``int4``: group-wise asymmetric int4 (``Int4WeightOnlyConfig``, group 128, tinygemm's tile-packed layout) for
  the language model's ``nn.Linear`` layers and ``lm_head``; the vision tower takes int8. tinygemm
  (``aten._weight_int4pack_mm``) is a CUDA kernel for bf16 on sm80+, so int4 needs such a GPU.
The token embedding table stays in the model dtype: torchao's int8 embedding dequantises the whole table (151,936
rows) on every lookup, which would add twice the table's bytes to every decode step to save 0.6 GB.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from ov2_ros.model.errors import ModelError

PRECISIONS = ("int8", "int4")
INT4_GROUP = 128


class QuantizationError(ModelError, RuntimeError):
    """A precision this machine or this install cannot run."""


@dataclass(frozen=True)
class QuantReport:
    precision: str
    bytes_before: int
    bytes_after: int
    modules: int                       # quantized modules

    @property
    def ratio(self) -> float:
        return self.bytes_after / self.bytes_before


def tensor_bytes(t: torch.Tensor) -> int:
    """Storage of a tensor, a torchao subclass counted by its inner tensors (packed data, scales, zero points)."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def weight_bytes(module: nn.Module) -> int:
    """Bytes of the module's parameters and buffers (shared tensors counted once)."""
    seen, total = set(), 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += tensor_bytes(t)
    return total


def _torchao():
    try:
        logging.getLogger("torchao").setLevel(logging.ERROR)   # its optional CUDA extensions fail to load on CPU
        from torchao import quantization
    except ImportError as exc:
        raise QuantizationError("weight-only quantization needs torchao: pip install torchao "
                                "(or pip install .[quant])") from exc
    return quantization


def _check_int4(model: nn.Module) -> None:
    weight = model.lm_head.weight
    if weight.device.type != "cuda" or not torch.cuda.is_available():
        raise QuantizationError(f"int4 weight-only runs tinygemm's CUDA kernel (aten._weight_int4pack_mm), and the "
                                f"model is on {weight.device}; use int8 here, or int4 on a CUDA GPU (sm80+)")
    if torch.cuda.get_device_capability(weight.device)[0] < 8:
        raise QuantizationError(f"int4 tinygemm needs compute capability 8.0+, this GPU has "
                                f"{torch.cuda.get_device_capability(weight.device)}")
    if weight.dtype != torch.bfloat16:
        raise QuantizationError(f"int4 tinygemm takes bf16 weights, the model is {weight.dtype}")


def quantize_weights(model: nn.Module, precision: str) -> QuantReport:
    """Quantize ``model`` (a ``LlavaOnevision2ForConditionalGeneration``) in place; see the module docstring."""
    if precision not in PRECISIONS:
        raise QuantizationError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    q = _torchao()
    before = weight_bytes(model)
    language = {id(m) for m in model.model.language_model.modules() if isinstance(m, nn.Linear)}
    language.add(id(model.lm_head))
    count = 0
    if precision == "int4":
        _check_int4(model)

        def int4_target(module: nn.Module, _name: str) -> bool:
            return id(module) in language and module.in_features % INT4_GROUP == 0

        config = q.Int4WeightOnlyConfig(group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d",
                                        set_inductor_config=False)
        count += sum(1 for m in model.modules() if int4_target(m, ""))
        q.quantize_(model, config, filter_fn=int4_target)
    # everything not int4 yet: int8 (a quantized weight is a subclass, so it is skipped)

    def int8_target(module: nn.Module, _name: str) -> bool:
        return isinstance(module, nn.Linear) and type(module.weight) is nn.Parameter

    count += sum(1 for m in model.modules() if int8_target(m, ""))
    q.quantize_(model, q.Int8WeightOnlyConfig(set_inductor_config=False), filter_fn=int8_target)
    return QuantReport(precision, before, weight_bytes(model), count)
