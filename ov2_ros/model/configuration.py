"""Typed configs for LLaVA-OneVision-2, field-for-field compatible with the released ``config.json``.

``model_type`` is ``llava_onevision2``; the vision sub-config is ``onevision_encoder``; the text sub-config is any
transformers config (Qwen3 for the released weights), resolved from its own ``model_type``.
"""
from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import CONFIG_MAPPING, AutoConfig
from transformers.configuration_utils import PreTrainedConfig


@strict
class LlavaOnevision2VisionConfig(PreTrainedConfig):
    """OneVision-Encoder (ViT) settings. ``head_dim // 2`` must be divisible by 16 for the 4:6:6 RoPE split."""

    model_type = "onevision_encoder"
    base_config_key = "vision_config"

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 448
    patch_size: int = 14
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    layer_norm_type: str = "layer_norm"
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    rope_theta: float = 10000.0
    use_head: bool = False
    out_hidden_size: int = 1024
    spatial_merge_size: int = 3
    tokens_per_second: int = 1
    temporal_patch_size: int = 1
    frame_windows_size: int = 4

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@strict
class LlavaOnevision2Config(PreTrainedConfig):
    """Top-level config: ``vision_config`` (OneVision-Encoder), ``text_config`` (Qwen3) and the vision token ids."""

    model_type = "llava_onevision2"
    sub_configs = {"vision_config": LlavaOnevision2VisionConfig, "text_config": AutoConfig}
    keys_to_ignore_at_inference = ["past_key_values"]

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if isinstance(self.vision_config, dict):
            self.vision_config = LlavaOnevision2VisionConfig(**self.vision_config)
        elif self.vision_config is None:
            self.vision_config = LlavaOnevision2VisionConfig()
        if isinstance(self.text_config, dict):
            text_type = self.text_config.setdefault("model_type", "qwen3")
            self.text_config = CONFIG_MAPPING[text_type](**self.text_config)
        elif self.text_config is None:
            self.text_config = CONFIG_MAPPING["qwen3"]()
        # generate() and chat tooling read these at the top level; the text config is their source of truth
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(self, key, None) is None:
                setattr(self, key, getattr(self.text_config, key, None))
        super().__post_init__(**kwargs)


# AutoConfig (and AutoTokenizer, which reads config.json) then know the type without trust_remote_code.
AutoConfig.register(LlavaOnevision2VisionConfig.model_type, LlavaOnevision2VisionConfig, exist_ok=True)
AutoConfig.register(LlavaOnevision2Config.model_type, LlavaOnevision2Config, exist_ok=True)
