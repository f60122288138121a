"""Streaming STFT / ISTFT: equality with torch.stft / torch.istft, the streaming contract
(offline == chunked, causality, latency), batch dims, reset, and exact roundtrip reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from livesense.audio.stft import (
    PRESETS,
    StftConfig,
    StftRoundtrip,
    StreamingISTFT,
    StreamingSTFT,
    stft_roundtrip,
)
from livesense.streaming.processor import Chain, StreamProcessor, concat_chunks
from livesense.streaming.testing import (
    assert_causal,
    assert_offline_equals_chunked,
    random_splits,
    run_chunked,
)

CONFIGS = [(512, 128), (256, 64), (400, 100), (1024, 256), (9, 3)]
ATOL = 1e-5


def signal(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def ref_stft(x: torch.Tensor, cfg: StftConfig, right_pad: int = 0) -> torch.Tensor:
    """The documented offline equivalent: left pad n_fft - hop zeros, center=False."""
    xp = F.pad(x, (cfg.n_fft - cfg.hop, right_pad))
    lead = xp.shape[:-1]
    s = torch.stft(
        xp.reshape(-1, xp.shape[-1]),
        cfg.n_fft,
        cfg.hop,
        window=torch.hann_window(cfg.n_fft, dtype=x.dtype),
        center=False,
        return_complex=True,
    )
    return s.reshape(*lead, *s.shape[-2:])


def ref_istft(spec: torch.Tensor, cfg: StftConfig) -> torch.Tensor:
    """torch.istft on the same frames, from sample n_fft - hop of the center=False synthesis.

    torch.istft(center=False) refuses periodic Hann (envelope exactly 0 at sample 0); with
    center=True it is the same synthesis minus its first n_fft // 2 samples, which lie inside the
    n_fft - hop padding samples the streaming ISTFT drops anyway.
    """
    n_frames, half = spec.shape[-1], cfg.n_fft // 2
    length = n_frames * cfg.hop + cfg.overlap - half
    y = torch.istft(
        spec.reshape(-1, *spec.shape[-2:]),
        cfg.n_fft,
        cfg.hop,
        window=torch.hann_window(cfg.n_fft),
        center=True,
        length=length,
    )
    return y.reshape(*spec.shape[:-2], length)[..., cfg.overlap - half :]


def tail_envelope(cfg: StftConfig, n_frames: int) -> torch.Tensor:
    """Squared-window OLA envelope of the last n_fft - hop output samples, relative to steady state."""
    w2 = torch.hann_window(cfg.n_fft, dtype=torch.float64) ** 2
    env = torch.zeros((n_frames - 1) * cfg.hop + cfg.n_fft, dtype=torch.float64)
    for j in range(n_frames):
        env[j * cfg.hop : j * cfg.hop + cfg.n_fft] += w2
    return (env / env.max())[-cfg.overlap :]


def chunked(proc: StreamProcessor, x: torch.Tensor, sizes: list[int]) -> torch.Tensor | None:
    proc.reset()
    outs, pos = [], 0
    for s in sizes:
        outs.append(proc.step(x[..., pos : pos + s]))
        pos += s
    assert pos >= x.shape[-1]
    outs.append(proc.flush())
    return concat_chunks(outs)


# --------------------------------------------------------------------------- config


def test_default_config_is_binauralflow_and_latency_is_computed():
    cfg = StftConfig()
    assert (
        (cfg.n_fft, cfg.hop, cfg.sample_rate)
        == (512, 128, 48000)
        == (
            PRESETS["binauralflow"].n_fft,
            PRESETS["binauralflow"].hop,
            PRESETS["binauralflow"].sample_rate,
        )
    )
    assert cfg.n_bins == 257
    assert cfg.latency == 384 and cfg.latency_s == pytest.approx(0.008)
    assert cfg.max_delay == 511
    assert cfg.frame_rate == 375.0
    assert cfg.ola_gain == pytest.approx(3 / 8 * 512 / 128)
    assert StftConfig.preset("cues") == StftConfig(1024, 256)
    with pytest.raises(ValueError, match="unknown STFT preset"):
        StftConfig.preset("nope")


@pytest.mark.parametrize("n_fft,hop", CONFIGS)
def test_latencies_add_up(n_fft, hop):
    cfg = StftConfig(n_fft, hop)
    stft, istft, rt = StreamingSTFT(cfg), StreamingISTFT(cfg), stft_roundtrip(cfg)
    assert stft.latency == 0
    assert istft.latency == n_fft - hop == cfg.latency
    assert rt.latency == stft.latency + istft.latency == n_fft - hop
    assert stft.granularity == istft.granularity == rt.granularity == hop


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_fft": 0}, "n_fft must be a positive int"),
        ({"n_fft": -512}, "n_fft must be a positive int"),
        ({"n_fft": 512.0}, "n_fft must be a positive int"),
        ({"hop": 0}, "hop must be a positive int"),
        ({"hop": True}, "hop must be a positive int"),
        ({"sample_rate": 0}, "sample_rate must be a positive int"),
        ({"hop": 1024}, r"hop \(1024\) must be <= n_fft \(512\)"),
        ({"n_fft": 400, "hop": 200}, "not COLA"),  # n_fft / hop == 2: Hann^2 ripples
        ({"hop": 256}, "not COLA"),
        ({"hop": 512}, "not COLA"),
        ({"hop": 100}, "not COLA"),  # does not divide n_fft
    ],
)
def test_invalid_config_raises_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StftConfig(**kwargs)


def test_cola_message_suggests_valid_hops():
    with pytest.raises(ValueError, match=r"n_fft / hop >= 3, e\.g\. hop in \[100, 80, 50\]"):
        StftConfig(400, 200)


# --------------------------------------------------------------------------- STFT


@pytest.mark.parametrize("n_fft,hop", CONFIGS)
def test_stft_equals_torch_stft(n_fft, hop):
    cfg = StftConfig(n_fft, hop)
    x = signal(3001)
    ref = ref_stft(x, cfg)
    assert ref.shape == (cfg.n_bins, 3001 // hop)
    offline = StreamingSTFT(cfg).process(x)
    assert offline.shape == ref.shape and offline.dtype == torch.complex64
    assert (offline - ref).abs().max() <= ATOL
    rng = np.random.default_rng(n_fft)
    sizes = list(np.diff(random_splits(3001, rng, 300)))
    got = chunked(StreamingSTFT(cfg), x, sizes)
    assert (got - ref).abs().max() <= ATOL


@pytest.mark.parametrize("n_fft,hop", [(512, 128), (9, 3)])
def test_stft_pad_end_equals_torch_stft_with_right_padding(n_fft, hop):
    cfg = StftConfig(n_fft, hop)
    for n in (1, hop - 1, hop, 1000, 1001):
        x = signal(n, seed=n)
        ref = ref_stft(x, cfg, right_pad=(-n) % hop + cfg.overlap)
        got = chunked(StreamingSTFT(cfg, pad_end=True), x, [7] * (n // 7 + 1))
        assert got.shape == ref.shape
        assert (got - ref).abs().max() <= ATOL


def test_stft_contract_harness():
    x = signal(2, 3000)
    assert_offline_equals_chunked(lambda: StreamingSTFT(StftConfig()), x)
    assert_offline_equals_chunked(lambda: StreamingSTFT(StftConfig(), pad_end=True), x)
    assert_causal(lambda: StreamingSTFT(StftConfig()), x, cut=1100, check_latency=False)


def test_stft_emits_one_frame_per_hop_without_lookahead():
    cfg = StftConfig()
    proc, n, frames = StreamingSTFT(cfg), 0, 0
    for size in [1, 126, 1, 1, 300, 0, 700, 5]:
        y = proc.step(signal(size, seed=size))
        n += size
        frames += 0 if y is None else y.shape[-1]
        assert frames == n // cfg.hop  # frame i is out as soon as sample i*hop + hop - 1 is in


def test_stft_small_max_chunk_uses_the_oversize_path():
    cfg = StftConfig(256, 64)
    x = signal(2000)
    got = chunked(StreamingSTFT(cfg, max_chunk=10), x, [3, 50, 900, 1, 1046])
    assert (got - ref_stft(x, cfg)).abs().max() <= ATOL


# --------------------------------------------------------------------------- ISTFT


@pytest.mark.parametrize("n_fft,hop", CONFIGS)
def test_istft_equals_torch_istft(n_fft, hop):
    cfg = StftConfig(n_fft, hop)
    x = signal(2, 3001)
    spec = ref_stft(x, cfg)
    n_frames = spec.shape[-1]
    ref = ref_istft(spec, cfg)
    got = StreamingISTFT(cfg).process(spec)
    assert got.shape == ref.shape == (2, n_frames * hop)
    # All but the last hop: plain 1e-5.
    assert (got - ref)[..., :-hop].abs().max() <= ATOL
    # The flushed tail is divided by the partial envelope, which falls to w[n_fft-1]^2 (~1e-9
    # for 512) in the last hop: both implementations amplify float32 rounding there equally
    # (and far from x, which is why the roundtrip pads the end instead), so compare the tail
    # weighted by that envelope.
    env = tail_envelope(cfg, n_frames).float()
    assert ((got - ref)[..., -cfg.overlap :] * env).abs().max() <= ATOL
    # The steady-state part reconstructs the signal itself.
    assert (got[..., : -cfg.overlap] - x[..., : got.shape[-1] - cfg.overlap]).abs().max() <= ATOL


@pytest.mark.parametrize("n_frames", [1, 2, 3, 4, 5])
def test_istft_few_frames_equals_torch_istft(n_frames):
    cfg = StftConfig()
    spec = ref_stft(signal(3, n_frames * cfg.hop, seed=n_frames), cfg)
    assert spec.shape[-1] == n_frames
    got, ref = StreamingISTFT(cfg).process(spec), ref_istft(spec, cfg)
    assert got.shape == ref.shape == (3, n_frames * cfg.hop)
    env = tail_envelope(cfg, n_frames).float()[-got.shape[-1] :]
    assert ((got - ref)[..., -cfg.overlap :] * env).abs().max() <= ATOL


def test_istft_contract_harness():
    cfg = StftConfig()
    spec = ref_stft(signal(2, 25_000), cfg)  # (2, 257, 195): time (frames) on the last axis
    assert_offline_equals_chunked(lambda: StreamingISTFT(cfg), spec)
    assert_causal(lambda: StreamingISTFT(cfg), spec, cut=60, check_latency=False)


def test_istft_rejects_bad_input():
    with pytest.raises(TypeError, match="complex"):
        StreamingISTFT().step(torch.zeros(257, 3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 257, frames\)"):
        StreamingISTFT().step(torch.zeros(256, 3, dtype=torch.complex64))


# --------------------------------------------------------------------------- roundtrip


@pytest.mark.parametrize("n_fft,hop", CONFIGS)
def test_roundtrip_reconstructs_every_sample_with_exact_length(n_fft, hop):
    cfg = StftConfig(n_fft, hop)
    for n in sorted({1, hop - 1, hop, hop + 1, cfg.overlap, n_fft, 2 * n_fft + 5, 2999}):
        x = signal(n, seed=n)
        y = stft_roundtrip(cfg).process(x)
        assert y.shape == x.shape, (n, y.shape)
        assert (y - x).abs().max() <= ATOL, n
        y = chunked(stft_roundtrip(cfg), x, [hop - 1] * (n // (hop - 1) + 1))
        assert y.shape == x.shape and (y - x).abs().max() <= ATOL, n


def test_roundtrip_contract_harness():
    cfg = StftConfig()
    x = signal(2, 4000)
    assert_offline_equals_chunked(
        lambda: stft_roundtrip(cfg), x, splits=[[0, 0, 383, 384, 385, 4000]]
    )
    # `latency` is counted to the last sample of each hop block: exact at hop-aligned cuts ...
    assert_causal(lambda: stft_roundtrip(cfg), x, cut=8 * cfg.hop)
    # ... elsewhere future input moves earlier samples of the same block, by rounding only.
    assert_causal(lambda: stft_roundtrip(cfg), x, cut=1100, atol=1e-6)


@pytest.mark.parametrize("n_fft,hop", CONFIGS)
def test_roundtrip_emits_sample_k_once_input_k_plus_latency_is_in(n_fft, hop):
    cfg = StftConfig(n_fft, hop)
    x = signal(4 * n_fft)
    proc, n_in, outs = stft_roundtrip(cfg), 0, []
    rng = np.random.default_rng(0)
    while n_in < x.shape[-1]:
        size = int(rng.integers(0, 2 * hop))
        y = proc.step(x[n_in : n_in + size])
        n_in = min(n_in + size, x.shape[-1])
        if y is not None:
            outs.append(y)
        emitted = sum(o.shape[-1] for o in outs)
        # Everything up to the last completed hop block, minus the latency, and nothing more.
        assert emitted == max(0, (n_in // hop) * hop - proc.latency)
    y = concat_chunks([*outs, proc.flush()])
    assert (y - x).abs().max() <= ATOL


class SpectralGain(StreamProcessor):
    """A frame-wise spectral process (stand-in for the renderer): per-bin gain, no latency."""

    def __init__(self, gain: torch.Tensor):
        self.gain = gain  # (n_bins, 1)

    def reset(self) -> None:
        pass

    def step(self, chunk):
        return chunk * self.gain


def test_spectral_chain_lookahead_is_latency_plus_granularity_minus_one():
    cfg = StftConfig()
    gain = torch.ones(cfg.n_bins, 1)
    gain[40:] = 0.1  # a low shelf: output genuinely depends on the whole window

    def chain(declared: int | None = None):
        c = StftRoundtrip(cfg, middle=[SpectralGain(gain)])
        if declared is not None:
            c.latency = declared
        return c

    assert chain().latency == cfg.latency
    x = signal(3000)
    assert_offline_equals_chunked(chain, x)
    y = chain().process(x)
    assert y.shape == x.shape and (y - x).abs().max() > 0.1  # it does filter
    # A plain chain agrees up to its flushed tail, which divides processed (no longer
    # window-consistent) frames by an envelope falling to ~1e-9 and blows up, as torch.istft
    # does; the roundtrip's pad_end never flushes through that tail.
    plain = Chain([StreamingSTFT(cfg), SpectralGain(gain), StreamingISTFT(cfg)]).process(x)
    steady = (3000 // cfg.hop) * cfg.hop - cfg.overlap
    assert (plain[:steady] - y[:steady]).abs().max() <= ATOL
    assert plain[steady:].abs().max() > 10 * x.abs().max()
    for cut in (1024, 1151, 1152):  # hop-aligned cuts: the block-end latency is exact
        assert_causal(chain, x, cut=cut - cut % cfg.hop)
    for cut in (1000, 1023, 1100):  # any cut: allow the block's first sample its extra wait
        assert_causal(lambda: chain(cfg.max_delay), x, cut=cut)
    with pytest.raises(AssertionError, match="declared latency 0 is too small"):
        assert_causal(lambda: chain(0), x, cut=1024)


# --------------------------------------------------------------------------- batches, edge cases


def test_batch_dims_match_per_channel_processing():
    cfg = StftConfig()
    x = signal(3, 2, 2000)  # batch of 3, 2 channels
    sizes = [480, 0, 1, 1000, 519]
    spec = chunked(StreamingSTFT(cfg), x, sizes)
    assert spec.shape == (3, 2, cfg.n_bins, 2000 // cfg.hop)
    assert (spec - ref_stft(x, cfg)).abs().max() <= ATOL
    for b in range(3):
        for ch in range(2):
            one = StreamingSTFT(cfg).process(x[b, ch])
            assert (spec[b, ch] - one).abs().max() <= ATOL
    y = chunked(StreamingISTFT(cfg), spec, [1, 4, 0, 10])
    assert (y - ref_istft(spec, cfg))[..., : -cfg.hop].abs().max() <= ATOL
    y = chunked(stft_roundtrip(cfg), x, sizes)
    assert y.shape == x.shape and (y - x).abs().max() <= ATOL


def test_batch_shape_change_mid_stream_raises():
    proc = StreamingSTFT()
    proc.step(signal(2, 100))
    with pytest.raises(ValueError, match="batch shape"):
        proc.step(signal(3, 100))


def test_zero_length_chunks():
    cfg = StftConfig()
    stft, istft, rt = StreamingSTFT(cfg), StreamingISTFT(cfg), stft_roundtrip(cfg)
    assert stft.step(torch.zeros(2, 0)) is None
    assert istft.step(torch.zeros(2, cfg.n_bins, 0, dtype=torch.complex64)) is None
    assert rt.step(torch.zeros(0)) is None
    assert stft.flush() is None and istft.flush() is None and rt.flush() is None
    assert stft_roundtrip(cfg).process(torch.zeros(0)) is None
    assert StreamingSTFT(cfg).process(signal(cfg.hop - 1)) is None  # no complete frame
    x = signal(1000)
    got = chunked(stft_roundtrip(cfg), x, [0, 0, 200, 0, 500, 0, 0, 300, 0])
    assert got.shape == x.shape and (got - x).abs().max() <= ATOL


def test_reset_and_flush_give_a_fresh_stream():
    cfg = StftConfig()
    x = signal(2, 1500)
    for make in (lambda: StreamingSTFT(cfg), lambda: stft_roundtrip(cfg)):
        fresh = chunked(make(), x, [100] * 15)
        proc = make()
        proc.step(signal(5, 777, seed=9))  # other batch shape, other data
        proc.reset()
        assert (chunked(proc, x, [100] * 15) - fresh).abs().max() == 0
        # flush ends the stream and leaves the processor fresh: a second stream is identical
        assert (chunked(proc, x, [100] * 15) - fresh).abs().max() == 0
    spec = ref_stft(x, cfg)
    istft = StreamingISTFT(cfg)
    istft.step(spec[..., :5] * 3)
    istft.reset()
    assert (
        chunked(istft, spec, [3] * 4) - chunked(StreamingISTFT(cfg), spec, [3] * 4)
    ).abs().max() == 0


def test_float64_and_numpy_input():
    cfg = StftConfig(256, 64)
    x = signal(1000).double()
    spec = StreamingSTFT(cfg).process(x)
    assert spec.dtype == torch.complex128
    assert (spec - ref_stft(x, cfg)).abs().max() <= 1e-12
    y = stft_roundtrip(cfg).process(x)
    assert y.dtype == torch.float64 and (y - x).abs().max() <= 1e-12
    y = stft_roundtrip(cfg).process(x.float().numpy())
    assert isinstance(y, torch.Tensor) and (y - x.float()).abs().max() <= ATOL
    with pytest.raises(TypeError, match="float signal"):
        StreamingSTFT(cfg).step(torch.zeros(10, dtype=torch.int16))


# --------------------------------------------------------------------------- property test


@settings(max_examples=25, deadline=None)
@given(
    cfg_i=st.sampled_from([(512, 128), (256, 64), (9, 3)]),
    n=st.integers(0, 2500),
    sizes=st.lists(st.integers(0, 700), min_size=1, max_size=40),
    seed=st.integers(0, 2**16),
)
def test_property_random_splits(cfg_i, n, sizes, seed):
    cfg = StftConfig(*cfg_i)
    x = signal(n, seed=seed)
    bounds = [min(int(b), n) for b in np.cumsum([0, *sizes])]
    if bounds[-1] < n:
        bounds.append(n)  # the rest in one chunk
    spec, _ = run_chunked(StreamingSTFT(cfg), x, bounds)
    ref = ref_stft(x, cfg) if n >= cfg.hop else None
    if ref is None or ref.shape[-1] == 0:
        assert spec is None
    else:
        assert spec.shape == ref.shape and (spec - ref).abs().max() <= ATOL
    y, lengths = run_chunked(stft_roundtrip(cfg), x, bounds)
    if n == 0:
        assert y is None
    else:
        assert y.shape == x.shape and (y - x).abs().max() <= ATOL
    ends = bounds[1:]
    assert lengths == [max(0, (e // cfg.hop) * cfg.hop - cfg.latency) for e in ends]
