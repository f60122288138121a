"""The small VLM interface the video reasoner needs, and loading by model id or directory.

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

import logging
import os
import sys
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from livesense.errors import LivesenseError
from livesense.models.vlm.cache import IncrementalCache, Kind, additive_mask

log = logging.getLogger(__name__)

__all__ = ["Chunk", "FrameFeatures", "VlmBackend", "load_vlm"]


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
class Chunk:
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
    def frame_chunk(self, frames: Sequence[FrameFeatures]) -> Chunk:
        """The tokens (timestamp, markers, placeholders) for ``frames``, in order."""

    @abstractmethod
    def _embed(self, chunk: Chunk) -> tuple[torch.Tensor, dict]:
        """(inputs_embeds (1, q, hidden), extra language-model kwargs) for ``chunk``."""

    @abstractmethod
    def _positions(self, chunk: Chunk, start: int) -> tuple[torch.Tensor, np.ndarray, int]:
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

    def text_chunk(self, text: str) -> Chunk:
        ids = self.tokenize(text)
        return Chunk(ids, [0] * len(ids))

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
        self, cache: IncrementalCache, chunk: Chunk, kind: Kind, segment: int = -1
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
            logits = self.append(cache, Chunk([tok], [0]), kind, segment)[-1]
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
                logits = self.append(cache, Chunk(ids[:-1], [0] * (len(ids) - 1)), Kind.QUERY)
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


_TINY_WARNING = (
    "*** livesense: using a TINY RANDOM VLM ({arch}) — its notes and answers are meaningless "
    "text; use --vlm MODEL for real output ***"
)


def _device_dtype(device: str | None, dtype: torch.dtype | None) -> tuple[str, torch.dtype]:
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    return dev, dtype


def load_vlm(
    name: str,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    *,
    seed: int = 0,
) -> VlmBackend:
    """Load a VLM backend by Hugging Face model id, local directory, or ``tiny``.

    ``tiny`` / ``tiny-qwen3vl`` / ``tiny-smolvlm`` build a tiny random model (loudly flagged:
    its text is meaningless). Qwen3-VL and SmolVLM/Idefics3 checkpoints are supported. Device:
    CUDA if available else CPU; dtype bf16 on CUDA, float32 on CPU. Raises LivesenseError with
    a one-line fix when the model is not available locally.
    """
    from livesense.models.vlm import tiny as tiny_mod

    if name == "tiny" or name.startswith("tiny-"):
        arch = "qwen3vl" if name == "tiny" else name.removeprefix("tiny-")
        if arch not in tiny_mod.TINY_ARCHS:
            raise LivesenseError(
                f"unknown tiny VLM {name!r}; use tiny, "
                + ", ".join(f"tiny-{a}" for a in tiny_mod.TINY_ARCHS)
            )
        msg = _TINY_WARNING.format(arch=arch)
        log.info(msg)
        print(msg, file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="livesense-tiny-") as d:
            tiny_mod.save_tiny(d, arch, seed)
            backend = load_vlm_from(d, device, dtype, name=name)
        backend.tiny = True
        return backend
    return load_vlm_from(name, device, dtype, name=name)


def load_vlm_from(
    path: str | os.PathLike,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    name: str | None = None,
) -> VlmBackend:
    """``from_pretrained`` for a model id or directory; picks the backend by ``model_type``."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    src = os.fspath(path)
    name = name or src
    hint = (
        f"cannot load VLM {name!r}: not found locally and it cannot be downloaded here; "
        f"run `huggingface-cli download {name}` on a machine with network, or pass a local "
        "model directory (or use --vlm tiny)"
    )
    dev, dt = _device_dtype(device, dtype)
    try:
        cfg = AutoConfig.from_pretrained(src)
    except (OSError, ValueError) as e:
        raise LivesenseError(hint) from e
    mtype = getattr(cfg, "model_type", "")
    if mtype in ("qwen3_vl",):
        from livesense.models.vlm.qwen3vl import Qwen3VLBackend as cls
    elif mtype in ("smolvlm", "idefics3"):
        from livesense.models.vlm.smolvlm import SmolVLMBackend as cls  # type: ignore[assignment]
    else:
        raise LivesenseError(
            f"VLM {name!r} has model_type {mtype!r}; supported: qwen3_vl, smolvlm, idefics3"
        )
    try:
        tok = AutoTokenizer.from_pretrained(src)
        model = AutoModelForImageTextToText.from_pretrained(
            src, dtype=dt, attn_implementation="sdpa"
        )
    except OSError as e:
        raise LivesenseError(hint) from e
    model.to(dev)
    return cls(model, tok, name=name, source=src)
