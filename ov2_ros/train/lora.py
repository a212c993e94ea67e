"""LoRA through ``peft`` (for the 8B on a GPU): adapters on the language model's attention and MLP projections,
merged back into the base weights before saving, so the output folder is the plain released layout."""
from __future__ import annotations

from ov2_ros.train.errors import TrainError

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_lora(model, rank: int = 16, alpha: int = 32, dropout: float = 0.0):
    """(peft-wrapped model, its trainable parameters). Only ``model.language_model`` layers get adapters."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:
        raise TrainError(f"--lora needs peft (pip install peft; it is in requirements.txt): {exc}") from exc
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=r".*language_model.*\.(" + "|".join(TARGETS) + ")")
    for p in model.parameters():
        p.requires_grad_(False)
    model = inject_adapter_in_model(config, model)
    trainable = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in trainable:
        p.requires_grad_(True)
    return model, trainable


def merge_lora(model):
    """Fold every LoRA adapter into its base Linear and drop the adapter modules (keys as released)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, module.get_base_layer())
    return model
