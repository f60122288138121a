"""VLM backends: tiny models through from_pretrained, chunked == full logits, decode, scoring."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from livesense.errors import LivesenseError
from livesense.models.vlm import Kind, additive_mask, load_vlm, load_vlm_from
from livesense.models.vlm.tiny import build_tiny_tokenizer, save_tiny

ARCHS = ["qwen3vl", "smolvlm"]


@pytest.fixture(scope="module", params=ARCHS)
def backend(request, tmp_path_factory):
    d = save_tiny(tmp_path_factory.mktemp(request.param), request.param, seed=1)
    return load_vlm_from(d)


def _frames(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[float]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)], [
        float(i) * 0.5 for i in range(n)
    ]


def _native_logits(b, text: str, images: list[np.ndarray]) -> torch.Tensor:
    """The model's own full-sequence forward (library positions and causal mask)."""
    ids = torch.tensor([b.tokenize(text)])
    with torch.no_grad():
        if b.arch == "qwen3vl":
            pre = [b.preprocess(im) for im in images]
            out = b.model(
                input_ids=ids,
                pixel_values_videos=torch.cat([p for p, _ in pre]),
                video_grid_thw=torch.tensor([g for _, g in pre]),
                mm_token_type_ids=(ids == b.video_token_id).long() * 2,
            )
        else:
            pv = torch.stack([b.preprocess(im) for im in images])[None]
            out = b.model(input_ids=ids, pixel_values=pv)
    return out.logits[0]  # (q, vocab)


@pytest.mark.parametrize("splits", [[1, 1, 1, 1, 1, 1], [2, 3, 1], [6]])
def test_chunked_ingestion_equals_full_forward(backend, splits):
    images, pts = _frames(6)
    feats = backend.encode_frames(images, pts)
    sys_t, q_t = backend.system_text("Watch."), backend.user_text("What happened?")
    cache = backend.new_cache()
    outs = [backend.append_text(cache, sys_t, Kind.SYSTEM)]
    i = 0
    for n in splits:
        outs.append(backend.append_video(cache, feats[i : i + n], segment=0))
        i += n
    outs.append(backend.append_text(cache, q_t))
    chunked = torch.cat(outs)
    text = sys_t + "".join(backend.frame_text(f.pts, f.n_tokens) for f in feats) + q_t
    full = _native_logits(backend, text, images)
    assert chunked.shape == full.shape
    assert (chunked - full).abs().max().item() <= 1e-4
    assert len(cache) == cache.kv.get_seq_length() == full.shape[0]


def test_encode_frames_batch_independent(backend):
    images, pts = _frames(3)
    together = backend.encode_frames(images, pts)
    alone = backend.encode_frames(images[1:2], pts[1:2])
    assert torch.allclose(together[1].embeds, alone[0].embeds, atol=1e-5)
    assert together[0].n_tokens == backend.tokens_per_frame


def test_decode_matches_greedy_full_forward(backend):
    text = backend.system_text("Hi.") + backend.user_text("Say something.")
    cache = backend.new_cache()
    logits = backend.append_text(cache, text, Kind.QUERY)
    backend.stop_ids  # noqa: B018 (property must work)
    toks = []
    ids = backend.tokenize(text)
    with torch.no_grad():
        for _ in range(4):
            nxt = int(backend.model(input_ids=torch.tensor([ids + toks])).logits[0, -1].argmax())
            if nxt in backend.stop_ids:
                break
            toks.append(nxt)
    assert backend.decode(cache, logits[-1], 4) == toks


def test_crop_and_rewind(backend):
    cache = backend.new_cache()
    backend.append_text(cache, "abc", Kind.SYSTEM)
    mark = cache.mark()
    first = backend.append_text(cache, "question?")
    cache.rewind(mark)
    assert cache.mark() == mark and cache.kv.get_seq_length() == mark[0]
    again = backend.append_text(cache, "question?")
    assert torch.allclose(first, again, atol=1e-5)  # same context, same positions
    cache.crop(mark[0])
    assert cache.next_pos > mark[1]  # a plain crop never reuses positions


def test_option_logprobs_picks_highest(backend):
    cache = backend.new_cache()
    logits = backend.append_text(cache, backend.user_text("Pick."))[-1]
    fake = torch.full_like(logits, -10.0)
    fake[backend.tokenize("C")[0]] = 5.0
    scores = backend.option_logprobs(cache, fake, ["A", "B", "C", "D"])
    assert int(np.argmax(scores)) == 2
    # multi-token options: sum of token log-probs, cache unchanged afterwards
    mark = cache.mark()
    multi = backend.option_logprobs(cache, logits, ["cat", "dog"])
    assert cache.mark() == mark
    step = backend.append_text(cache, "ca")
    lp0 = torch.log_softmax(logits, -1)[backend.tokenize("c")[0]]
    lp = torch.log_softmax(step, -1)
    want = lp0 + lp[0, backend.tokenize("a")[0]] + lp[1, backend.tokenize("t")[0]]
    assert multi[0] == pytest.approx(float(want), abs=1e-4)


def test_yes_prob_in_unit_range(backend):
    cache = backend.new_cache()
    p = backend.yes_prob(backend.append_text(cache, backend.user_text("Yes or no?"))[-1])
    assert 0.0 <= p <= 1.0


def test_hide_notes_mask():
    cached = np.array([Kind.SYSTEM, Kind.VIDEO, Kind.NOTE], np.int8)
    new = np.array([Kind.VIDEO, Kind.NOTE], np.int8)
    m = additive_mask(cached, new, torch.float32, hide_notes_from_video=True)[0, 0]
    assert m.shape == (2, 5)
    allowed = m == 0
    assert allowed[0].tolist() == [True, True, False, True, False]  # video skips the note
    assert allowed[1].tolist() == [True, True, True, True, True]
    plain = additive_mask(cached, new, torch.float32)[0, 0] == 0
    assert plain[0].tolist() == [True, True, True, True, False]  # causal only


def test_tokenizer_roundtrip():
    tok = build_tiny_tokenizer()
    ids = tok.encode("héllo <|im_start|>", add_special_tokens=False)
    assert tok.convert_tokens_to_ids("<|im_start|>") in ids
    assert tok.decode(ids) == "héllo <|im_start|>"


def test_load_missing_model_gives_clear_error(tmp_path):
    with pytest.raises(LivesenseError, match="huggingface-cli download"):
        load_vlm(str(tmp_path / "no-such-model"))


def test_load_tiny_is_loud(capsys):
    b = load_vlm("tiny-smolvlm")
    assert b.tiny and b.arch == "smolvlm"
    assert "TINY RANDOM" in capsys.readouterr().err
    with pytest.raises(LivesenseError):
        load_vlm("tiny-nope")
