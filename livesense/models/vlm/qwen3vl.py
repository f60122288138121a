"""Qwen3-VL backend: frames as 1-frame video groups, explicit M-RoPE positions, DeepStack.

Each frame is laid out as the Qwen3-VL processor lays out video frames:
``<{t:.1f} seconds><|vision_start|><|video_pad|> * n<|vision_end|>``. A single frame is
duplicated over ``temporal_patch_size`` (as the image processor does), so every frame is its own
temporal group with grid ``(1, h, w)`` and can be appended on its own. Positions are the model's
``get_rope_index`` on the chunk, shifted by the cache's running position, so chunked
ingestion equals a full-sequence forward and the model's shared ``rope_deltas`` are never
written (one model can serve several threads).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from livesense.models.vlm.base import FrameFeatures, TokenChunk, VlmBackend
from livesense.models.vlm.preprocess import fit_to_factor, resize_rgb

__all__ = ["Qwen3VLBackend"]


class Qwen3VLBackend(VlmBackend):
    arch = "qwen3vl"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        name: str = "",
        source: str = "",
        max_pixels: int | None = None,
    ) -> None:
        super().__init__(model, tokenizer, name, source)
        vc = model.config.vision_config
        self.patch = int(vc.patch_size)
        self.merge = int(vc.spatial_merge_size)
        self.temporal = int(vc.temporal_patch_size)
        factor = self.patch * self.merge
        # Tiny models: one 2x2 cell grid (4 tokens); real ones ~64 tokens per frame.
        self.max_pixels = max_pixels or (4 if vc.hidden_size <= 64 else 64) * factor * factor
        self.mean, self.std = 0.5, 0.5
        self.video_token_id = int(model.config.video_token_id)
        self._tokens_per_frame = self.max_pixels // (factor * factor)

    @property
    def tokens_per_frame(self) -> int:
        return self._tokens_per_frame

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """RGB uint8 (H, W, 3) -> (patches (gh * gw, C * T * P * P), grid (1, gh, gw))."""
        factor = self.patch * self.merge
        h, w = fit_to_factor(image.shape[0], image.shape[1], factor, self.max_pixels)
        x = resize_rgb(image, h, w).astype(np.float32) / 255.0
        x = ((x - self.mean) / self.std).transpose(2, 0, 1)  # (C, H, W)
        c, gh, gw, m, p = 3, h // self.patch, w // self.patch, self.merge, self.patch
        x = x.reshape(c, gh // m, m, p, gw // m, m, p)
        x = x.transpose(1, 4, 2, 5, 0, 3, 6)  # (gh/m, gw/m, m, m, C, P, P)
        x = np.broadcast_to(x[:, :, :, :, :, None], (*x.shape[:5], self.temporal, p, p))
        patches = x.reshape(gh * gw, c * self.temporal * p * p)
        return torch.from_numpy(np.ascontiguousarray(patches)), (1, gh, gw)

    @torch.inference_mode()
    def encode_frames(
        self, images: Sequence[np.ndarray], pts: Sequence[float]
    ) -> list[FrameFeatures]:
        if not images:
            return []
        pre = [self.preprocess(im) for im in images]
        pixels = torch.cat([p for p, _ in pre]).to(self.device, self.dtype)
        grid = torch.tensor([g for _, g in pre], device=self.device)  # (n, 3)
        out = self.model.model.get_video_features(pixels, grid, return_dict=True)
        feats = []
        for i, t in enumerate(pts):
            deep = [layer[i] for layer in out.deepstack_features]
            feats.append(FrameFeatures(float(t), out.pooler_output[i], deep, pre[i][1]))
        self._tokens_per_frame = feats[-1].n_tokens
        return feats

    def frame_text(self, pts: float, n_tokens: int) -> str:
        return (
            f"<{pts:.1f} seconds><|vision_start|>" + "<|video_pad|>" * n_tokens + "<|vision_end|>"
        )

    def frame_chunk(self, frames: Sequence[FrameFeatures]) -> TokenChunk:
        ids = self.tokenize("".join(self.frame_text(f.pts, f.n_tokens) for f in frames))
        mm = [2 if i == self.video_token_id else 0 for i in ids]
        return TokenChunk(ids, mm, list(frames))

    def _embed(self, chunk: TokenChunk) -> tuple[torch.Tensor, dict]:
        ids = torch.tensor([chunk.ids], device=self.device)  # (1, q)
        embeds = self.model.model.get_input_embeddings()(ids)  # (1, q, hidden)
        if not chunk.frames:
            return embeds, {}
        vis = ids == self.video_token_id  # (1, q)
        feats = torch.cat([f.embeds for f in chunk.frames]).to(embeds.dtype)  # (n_vis, hidden)
        embeds = embeds.masked_scatter(vis[..., None], feats)
        n_layers = len(chunk.frames[0].deepstack)
        deep = [torch.cat([f.deepstack[k] for f in chunk.frames]) for k in range(n_layers)]
        return embeds, {"visual_pos_masks": vis, "deepstack_visual_embeds": deep or None}

    def _positions(self, chunk: TokenChunk, start: int) -> tuple[torch.Tensor, np.ndarray, int]:
        ids = torch.tensor([chunk.ids])
        mm = torch.tensor([chunk.mm])
        grids = torch.tensor([f.grid for f in chunk.frames]) if chunk.frames else None
        pos, _ = self.model.model.get_rope_index(ids, mm, video_grid_thw=grids)  # (3, 1, q)
        pos = pos + start
        nxt = int(pos.max()) + 1
        return pos.to(self.device), pos[0, 0].numpy(), nxt

    def _language_model(self) -> torch.nn.Module:
        return self.model.model.language_model

    def system_text(self, text: str) -> str:
        return f"<|im_start|>system\n{text}<|im_end|>\n"

    def user_text(self, text: str) -> str:
        return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"

    def assistant_prefix(self) -> str:
        return "<|im_start|>assistant\n"

    def end_of_turn(self) -> str:
        return "<|im_end|>"
