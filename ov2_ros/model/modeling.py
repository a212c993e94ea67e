"""LLaVA-OneVision-2: OneVision-Encoder + 2x2 merger + Qwen3 (transformers), keys as released.

State-dict keys: ``model.visual.*`` (see ``vision.py``), ``model.language_model.*`` (transformers ``Qwen3Model``),
``lm_head.weight``. ``forward`` takes ``input_ids, attention_mask, pixel_values_videos, video_grid_thw,
patch_positions`` like the released code, and its image path ``pixel_values, image_grid_thw`` (what the
release's codec prompts use). Placeholders are replaced in order by the merged vision tokens (see ``embed``); the LLM
uses plain 1-D positions, as released.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel
from transformers.cache_utils import Cache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import PreTrainedModel

from ov2_ros.model.configuration import LlavaOnevision2Config
from ov2_ros.model.errors import ProcessorError
from ov2_ros.model.vision import LlavaOnevision2VisionModel, VisionRotaryEmbedding


@dataclass
class LlavaOnevision2Output(ModelOutput):
    """``logits``: (B, L, V); ``last_hidden_state``: (B, L, D); ``cache``: the KV cache when ``use_cache``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    cache: Cache | None = None


class LlavaOnevision2PreTrainedModel(PreTrainedModel):
    config_class = LlavaOnevision2Config
    config: LlavaOnevision2Config
    base_model_prefix = "model"
    input_modalities = ("image", "video", "text")
    _no_split_modules = ["OneVisionEncoderEncoderLayer", "Qwen3DecoderLayer"]
    _skip_keys_device_placement = "past_key_values"
    _supports_flash_attn = True
    _supports_sdpa = True
    _can_compile_fullgraph = False

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, VisionRotaryEmbedding):
            with torch.no_grad():
                module.reset_buffers()


def _scatter_tokens(input_ids: torch.Tensor, embeds: torch.Tensor, features: torch.Tensor, token_id: int,
                    what: str) -> torch.Tensor:
    mask = input_ids == token_id
    n = int(mask.sum())
    if n != features.shape[0]:
        raise ProcessorError(f"{what}: the prompt has {n} placeholder tokens (id {token_id}) but the vision tower "
                             f"made {features.shape[0]} tokens")
    return embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.device, embeds.dtype))


class LlavaOnevision2Model(LlavaOnevision2PreTrainedModel):
    base_model_prefix = ""

    def __init__(self, config: LlavaOnevision2Config):
        super().__init__(config)
        self.visual = LlavaOnevision2VisionModel(config.vision_config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_video_features(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor | None,
                           patch_positions: torch.Tensor) -> torch.Tensor:
        """(P, C*p*p) patches -> (P / m^2, D) LLM-width tokens, in the patch order given."""
        dtype = self.visual.embeddings.patch_embedding.weight.dtype
        return self.visual(pixel_values_videos.to(dtype), video_grid_thw, patch_positions)

    def embed(self, input_ids: torch.Tensor, video_embeds: torch.Tensor | None = None,
              image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the vision placeholders replaced: (B, L) -> (B, L, D).

        Image features fill ``<|image_pad|>`` (``image_token_id``). Video features fill ``<|video_pad|>`` where the
        prompt has those, as the release's forward does; otherwise ``<|image_pad|>``, the placeholders of the
        release's codec prompt (its processor aliases video into the image path), which ``processor`` builds."""
        embeds = self.get_input_embeddings()(input_ids)
        if image_embeds is not None:
            embeds = _scatter_tokens(input_ids, embeds, image_embeds, self.config.image_token_id, "images")
        if video_embeds is not None:
            video_id = self.config.video_token_id
            token = video_id if bool((input_ids == video_id).any()) else self.config.image_token_id
            embeds = _scatter_tokens(input_ids, embeds, video_embeds, token, "video")
        return embeds

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, inputs_embeds=None,
                use_cache=None, pixel_values=None, pixel_values_videos=None, image_grid_thw=None,
                video_grid_thw=None, patch_positions=None, past_key_values=None, **kwargs):
        cache = cache if cache is not None else past_key_values
        if inputs_embeds is None:
            if input_ids is None:
                raise ProcessorError("forward needs input_ids or inputs_embeds")
            video = image = None
            if pixel_values_videos is not None:
                video = self.get_video_features(pixel_values_videos, video_grid_thw, patch_positions)
            if pixel_values is not None:
                image = self.get_video_features(pixel_values, image_grid_thw, patch_positions)
            inputs_embeds = self.embed(input_ids, video, image)
        if position_ids is None:
            position_ids = self._positions(inputs_embeds, attention_mask, cache)
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   position_ids=position_ids, cache=cache, use_cache=use_cache, **kwargs)

    @staticmethod
    def _positions(embeds: torch.Tensor, attention_mask: torch.Tensor | None, cache: Cache | None) -> torch.Tensor:
        """Plain 1-D positions as released: left padding skipped via the mask, continued after a cache."""
        past = cache.get_seq_length() if cache is not None else 0
        b, n = embeds.shape[:2]
        if attention_mask is not None and past == 0 and attention_mask.shape[-1] == n:
            pos = attention_mask.long().cumsum(-1) - 1
            return pos.masked_fill(attention_mask == 0, 1)
        return (torch.arange(n, device=embeds.device) + past).unsqueeze(0).expand(b, -1)


class LlavaOnevision2ForConditionalGeneration(LlavaOnevision2PreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: LlavaOnevision2Config):
        super().__init__(config)
        self.model = LlavaOnevision2Model(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    @property
    def visual(self) -> LlavaOnevision2VisionModel:
        return self.model.visual

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model

    def forward(self, input_ids=None, attention_mask=None, pixel_values_videos=None, video_grid_thw=None,
                patch_positions=None, position_ids=None, cache=None, inputs_embeds=None, use_cache=None,
                pixel_values=None, image_grid_thw=None, labels=None, logits_to_keep: int = 0,
                past_key_values=None, **kwargs) -> LlavaOnevision2Output:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache if cache is not None else past_key_values, inputs_embeds=inputs_embeds,
                         use_cache=use_cache, pixel_values=pixel_values, pixel_values_videos=pixel_values_videos,
                         image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw,
                         patch_positions=patch_positions, **kwargs)
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
        return LlavaOnevision2Output(loss=loss, logits=logits, last_hidden_state=hidden,
                                     cache=getattr(out, "cache", None))
