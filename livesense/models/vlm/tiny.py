"""Tiny random VLMs (Qwen3-VL and SmolVLM2/Idefics3 architectures) and an offline tokenizer.

Everything here is built from configs in code, so tests and ``--vlm tiny`` need no network.
The weights are random: the text such a model writes is meaningless. The models are saved with
``save_pretrained`` and loaded back through the same ``from_pretrained`` path as real weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "SPECIAL_TOKENS",
    "TINY_ARCHS",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "save_tiny",
]

# The special tokens both chat formats need (Qwen ChatML + SmolVLM's image markers).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
)
TINY_ARCHS: tuple[str, ...] = ("qwen3vl", "smolvlm")
_VOCAB = 320  # 256 byte symbols + specials, rounded up


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE (ByteLevel alphabet, no merges) plus :data:`SPECIAL_TOKENS`.

    Ids 0..255 are the byte symbols, the special tokens follow in order.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    from transformers import PreTrainedTokenizerFast  # lazy: transformers takes ~1.5 s to import

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )


def _qwen3vl(tok: PreTrainedTokenizerFast, seed: int) -> torch.nn.Module:
    # lazy: transformers takes ~1.5 s to import and only --vlm needs it
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = tok.convert_tokens_to_ids
    cfg = Qwen3VLConfig(
        text_config={
            "vocab_size": _VOCAB,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 65536,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 2, 2],  # sums to head_dim / 2
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,  # == text hidden_size
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    return Qwen3VLForConditionalGeneration(cfg)


def _smolvlm(tok: PreTrainedTokenizerFast, seed: int) -> torch.nn.Module:
    # lazy: transformers takes ~1.5 s to import and only --vlm needs it
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    cfg = SmolVLMConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": _VOCAB,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 65536,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,  # 4x4 patches -> 4 tokens after the x2 pixel shuffle
        },
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    return SmolVLMForConditionalGeneration(cfg)


def build_tiny_model(arch: str = "qwen3vl", seed: int = 0) -> tuple[torch.nn.Module, object]:
    """A tiny random ``(model, tokenizer)`` of ``arch`` ("qwen3vl" or "smolvlm"), float32, eval."""
    tok = build_tiny_tokenizer()
    builders = {"qwen3vl": _qwen3vl, "smolvlm": _smolvlm}
    if arch not in builders:
        raise ValueError(f"unknown tiny VLM architecture {arch!r}; choose one of {TINY_ARCHS}")
    model = builders[arch](tok, seed).eval()
    return model, tok


def save_tiny(directory: str | os.PathLike, arch: str = "qwen3vl", seed: int = 0) -> Path:
    """Write a tiny random model + tokenizer to ``directory`` (loadable by ``from_pretrained``)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = build_tiny_model(arch, seed)
    model.save_pretrained(out)
    tok.save_pretrained(out)  # type: ignore[attr-defined]
    (out / "LIVESENSE_TINY").write_text("random weights: generated text is meaningless\n")
    return out
