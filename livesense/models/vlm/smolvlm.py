"""SmolVLM2 / Idefics3 backend (SigLIP encoder + pixel shuffle + Llama), CPU friendly.

Each frame is one global image at the encoder's ``image_size`` (no tiling), laid out as the
SmolVLM2 video template does: ``Frame from MM:SS:<fake_token_around_image><global-img>
<image> * n<fake_token_around_image>``. Positions are 1-D and continue from the cache's running
counter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from livesense.models.vlm.base import FrameFeatures, TokenChunk, VlmBackend
from livesense.models.vlm.preprocess import resize_rgb

__all__ = ["SmolVLMBackend"]


class SmolVLMBackend(VlmBackend):
    arch = "smolvlm"

    def __init__(
        self, model: torch.nn.Module, tokenizer: object, name: str = "", source: str = ""
    ) -> None:
        super().__init__(model, tokenizer, name, source)
        cfg = model.config
        self.image_size = int(cfg.vision_config.image_size)
        patches = (self.image_size // int(cfg.vision_config.patch_size)) ** 2
        self._tokens_per_frame = patches // int(cfg.scale_factor) ** 2
        self.image_token_id = int(cfg.image_token_id)
        self.mean, self.std = 0.5, 0.5

    @property
    def tokens_per_frame(self) -> int:
        return self._tokens_per_frame

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 (H, W, 3) -> float (3, S, S) normalised, S = the encoder's image size."""
        s = self.image_size
        x = resize_rgb(image, s, s).astype(np.float32) / 255.0
        return torch.from_numpy(((x - self.mean) / self.std).transpose(2, 0, 1).copy())

    @torch.inference_mode()
    def encode_frames(
        self, images: Sequence[np.ndarray], pts: Sequence[float]
    ) -> list[FrameFeatures]:
        if not images:
            return []
        pixels = torch.stack([self.preprocess(im) for im in images])[None]  # (1, n, 3, S, S)
        out = self.model.model.get_image_features(pixels.to(self.device, self.dtype))
        feats = out.pooler_output[0].view(len(images), self._tokens_per_frame, -1)  # (n, k, h)
        return [FrameFeatures(float(t), feats[i]) for i, t in enumerate(pts)]

    def frame_text(self, pts: float, n_tokens: int) -> str:
        m, s = divmod(int(pts), 60)
        return (
            f"Frame from {m:02d}:{s:02d}:<fake_token_around_image><global-img>"
            + "<image>" * n_tokens
            + "<fake_token_around_image>"
        )

    def frame_chunk(self, frames: Sequence[FrameFeatures]) -> TokenChunk:
        ids = self.tokenize("".join(self.frame_text(f.pts, f.n_tokens) for f in frames))
        mm = [1 if i == self.image_token_id else 0 for i in ids]
        return TokenChunk(ids, mm, list(frames))

    def _embed(self, chunk: TokenChunk) -> tuple[torch.Tensor, dict]:
        ids = torch.tensor([chunk.ids], device=self.device)  # (1, q)
        embeds = self.model.model.get_input_embeddings()(ids)  # (1, q, hidden)
        if chunk.frames:
            vis = (ids == self.image_token_id)[..., None]  # (1, q, 1)
            feats = torch.cat([f.embeds for f in chunk.frames]).to(embeds.dtype)
            embeds = embeds.masked_scatter(vis, feats)
        return embeds, {}

    def _positions(self, chunk: TokenChunk, start: int) -> tuple[torch.Tensor, np.ndarray, int]:
        q = len(chunk.ids)
        pos = np.arange(start, start + q)
        return torch.from_numpy(pos)[None].to(self.device), pos, start + q  # (1, q)

    def _language_model(self) -> torch.nn.Module:
        return self.model.model.text_model

    def system_text(self, text: str) -> str:
        return f"<|im_start|>System: {text}<end_of_utterance>\n"

    def user_text(self, text: str) -> str:
        return f"User: {text}<end_of_utterance>\nAssistant:"

    def assistant_prefix(self) -> str:
        return "Assistant:"

    def end_of_turn(self) -> str:
        return "<end_of_utterance>"
