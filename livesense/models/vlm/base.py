"""The small VLM interface the video reasoner needs (loading is in :mod:`.loading`).

A :class:`VlmBackend` wraps a transformers model + tokenizer and exposes streaming primitives
on an :class:`~livesense.models.vlm.cache.IncrementalCache`:

- :meth:`VlmBackend.encode_frames` (thread-safe, no cache): RGB frames -> vision features;
  a watcher thread calls it while the thinker decodes.
- :meth:`VlmBackend.append_video` / :meth:`VlmBackend.append_text`: append a chunk with
  explicit positions and an explicit 4-D mask; return the chunk's logits.
- :meth:`VlmBackend.decode`: our own greedy loop (``generate()`` would recompute positions).
- :meth:`VlmBackend.option_logprobs` / :meth:`VlmBackend.yes_prob`: scoring, cache restored.

Subclasses (:mod:`.qwen3vl`, :mod:`.smolvlm`) supply preprocessing, frame token layout,
embedding, positions and the language-model forward.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from livesense.models.vlm.cache import IncrementalCache, Kind, additive_mask

__all__ = ["FrameFeatures", "TokenChunk", "VlmBackend"]


@dataclass
class FrameFeatures:
    """Vision features of one frame, ready to be appended to the cache."""

    pts: float
    embeds: torch.Tensor  # (n_tokens, hidden)
    deepstack: list[torch.Tensor] = field(default_factory=list)  # per layer (n_tokens, hidden)
    grid: tuple[int, int, int] = (1, 1, 1)  # (t, h, w) patch grid before merging

    @property
    def n_tokens(self) -> int:
        return int(self.embeds.shape[0])


@dataclass
class TokenChunk:
    """Token ids of a chunk to append, their modality and the frames filling the placeholders."""

    ids: list[int]
    mm: list[int]  # 0 text, 1 image, 2 video (mm_token_type_ids)
    frames: list[FrameFeatures] = field(default_factory=list)


class VlmBackend(ABC):
    """Streaming operations on one VLM; one instance may serve many caches (not concurrently
    on the same cache)."""

    arch: str = ""
    tiny: bool = False

    def __init__(
        self, model: torch.nn.Module, tokenizer: object, name: str = "", source: str = ""
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.source = source  # directory or model id it was loaded from
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.hide_notes_from_video = False
        self._lock = threading.Lock()  # one forward at a time per model (CPU threads)
        self.forward_hook: Callable[[], None] | None = None  # tests: slow down forwards

    # --- to implement -----------------------------------------------------------------------

    @abstractmethod
    def encode_frames(
        self, images: Sequence[np.ndarray], pts: Sequence[float]
    ) -> list[FrameFeatures]:
        """RGB uint8 (H, W, 3) frames -> per-frame vision features (no cache involved)."""

    @abstractmethod
    def frame_chunk(self, frames: Sequence[FrameFeatures]) -> TokenChunk:
        """The tokens (timestamp, markers, placeholders) for ``frames``, in order."""

    @abstractmethod
    def _embed(self, chunk: TokenChunk) -> tuple[torch.Tensor, dict]:
        """(inputs_embeds (1, q, hidden), extra language-model kwargs) for ``chunk``."""

    @abstractmethod
    def _positions(self, chunk: TokenChunk, start: int) -> tuple[torch.Tensor, np.ndarray, int]:
        """(position_ids for the LM, text-axis positions (q,), next position)."""

    @abstractmethod
    def _language_model(self) -> torch.nn.Module:
        """The decoder stack of this architecture (without the LM head)."""

    def _lm_forward(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor,
        cache: IncrementalCache,
        extra: dict,
    ) -> torch.Tensor:
        """Language model on a chunk -> logits (1, q, vocab)."""
        out = self._language_model()(
            inputs_embeds=embeds,
            position_ids=position_ids,
            attention_mask=mask,
            cache=cache.kv,
            use_cache=True,
            **extra,
        )
        return self.model.lm_head(out.last_hidden_state)  # (1, q, vocab)

    @abstractmethod
    def system_text(self, text: str) -> str: ...

    @abstractmethod
    def user_text(self, text: str) -> str:
        """A complete user turn followed by the assistant prefix."""

    @abstractmethod
    def assistant_prefix(self) -> str: ...

    @abstractmethod
    def end_of_turn(self) -> str: ...

    @property
    @abstractmethod
    def tokens_per_frame(self) -> int:
        """Vision placeholder tokens per frame."""

    # --- generic streaming operations --------------------------------------------------------

    def new_cache(self) -> IncrementalCache:
        return IncrementalCache(getattr(self.model.config, "text_config", None))

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))  # type: ignore[attr-defined]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def text_chunk(self, text: str) -> TokenChunk:
        ids = self.tokenize(text)
        return TokenChunk(ids, [0] * len(ids))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)  # type: ignore[attr-defined]

    @property
    def stop_ids(self) -> set[int]:
        ids = {self.tokenizer.convert_tokens_to_ids(self.end_of_turn().strip())}  # type: ignore[attr-defined]
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is not None:
            ids.add(int(eos))
        return ids

    @torch.inference_mode()
    def append(
        self, cache: IncrementalCache, chunk: TokenChunk, kind: Kind, segment: int = -1
    ) -> torch.Tensor:
        """Append ``chunk`` as ``kind`` tokens; returns its logits (q, vocab) in float32."""
        q = len(chunk.ids)
        if q == 0:
            raise ValueError("empty chunk")
        if self.forward_hook is not None:
            self.forward_hook()
        kinds = np.full(q, int(kind), np.int8)
        embeds, extra = self._embed(chunk)
        position_ids, text_pos, next_pos = self._positions(chunk, cache.next_pos)
        mask = additive_mask(
            cache.kinds, kinds, embeds.dtype, self.device, self.hide_notes_from_video
        )
        with self._lock:
            logits = self._lm_forward(embeds, position_ids, mask, cache, extra)
        cache.record(kinds, segment, text_pos, next_pos)
        return logits[0].float()

    def append_video(
        self, cache: IncrementalCache, frames: Sequence[FrameFeatures], segment: int = -1
    ) -> torch.Tensor:
        """Append encoded frames (one chunk); returns logits (q, vocab)."""
        return self.append(cache, self.frame_chunk(frames), Kind.VIDEO, segment)

    def append_text(
        self, cache: IncrementalCache, text: str, kind: Kind = Kind.QUERY, segment: int = -1
    ) -> torch.Tensor:
        return self.append(cache, self.text_chunk(text), kind, segment)

    def decode(
        self,
        cache: IncrementalCache,
        last_logits: torch.Tensor,
        max_new_tokens: int,
        kind: Kind = Kind.QUERY,
        segment: int = -1,
        on_token: Callable[[int], None] | None = None,
    ) -> list[int]:
        """Greedy decode from ``last_logits`` (vocab,); each token is appended to the cache as
        ``kind``. Stops at end-of-turn/eos (not appended) or after ``max_new_tokens``."""
        out: list[int] = []
        stops = self.stop_ids
        logits = last_logits
        for _ in range(max_new_tokens):
            tok = int(torch.argmax(logits))
            if tok in stops:
                break
            out.append(tok)
            if on_token is not None:
                on_token(tok)
            logits = self.append(cache, TokenChunk([tok], [0]), kind, segment)[-1]
        return out

    def option_logprobs(
        self, cache: IncrementalCache, last_logits: torch.Tensor, options: Sequence[str]
    ) -> list[float]:
        """Log-likelihood of each continuation in ``options`` after the cache; cache unchanged.

        Single-token options are read from ``last_logits`` (vocab,); longer ones are appended
        and cropped.
        """
        base = cache.mark()
        first = torch.log_softmax(last_logits.float(), -1)
        scores: list[float] = []
        for text in options:
            ids = self.tokenize(text)
            if not ids:
                scores.append(float("-inf"))
                continue
            score = float(first[ids[0]])
            if len(ids) > 1:
                logits = self.append(cache, TokenChunk(ids[:-1], [0] * (len(ids) - 1)), Kind.QUERY)
                lp = torch.log_softmax(logits, -1)  # (len-1, vocab)
                score += float(lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
                cache.rewind(base)
            scores.append(score)
        return scores

    def yes_prob(self, last_logits: torch.Tensor) -> float:
        """P(yes) / (P(yes) + P(no)) from the first token of "Yes" and "No"."""
        p = torch.softmax(last_logits.float(), -1)
        y, n = p[self.tokenize("Yes")[0]], p[self.tokenize("No")[0]]
        return float(y / (y + n + 1e-12))
