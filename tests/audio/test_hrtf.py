"""HRIR sets: the shipped MIT KEMAR asset, SOFA reading and its azimuth convention, lookup."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from livesense.audio.hrtf import HrirSet, load_hrirs, onset_index, read_npz, read_sofa
from livesense.errors import ConfigError, LivesenseError, MediaError

SYSTEM_SOFA = Path("/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa")
needs_sofa = pytest.mark.skipif(
    not SYSTEM_SOFA.is_file(), reason="Debian libmysofa1 (MIT KEMAR SOFA file) is not installed"
)

RIGHT, LEFT, FRONT = np.array([0.0, 1, 0]), np.array([0.0, -1, 0]), np.array([1.0, 0, 0])


def _ear_energy_onset(hr: HrirSet, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ir = hr.irs[hr.nearest(direction)]  # (2, N)
    return np.sum(ir.astype(np.float64) ** 2, axis=-1), onset_index(ir)


def _check_lateral(hr: HrirSet) -> None:
    (e_l, e_r), (on_l, on_r) = _ear_energy_onset(hr, RIGHT)
    assert e_r > 4 * e_l, "source on the right: right ear must be louder"
    itd_ms = (on_l - on_r) / hr.sample_rate * 1e3
    assert 0.4 < itd_ms < 0.9, f"source on the right: right ear must lead by ~0.6 ms, got {itd_ms}"
    (e_l, e_r), (on_l, on_r) = _ear_energy_onset(hr, LEFT)
    assert e_l > 4 * e_r and on_l < on_r
    (e_l, e_r), (on_l, on_r) = _ear_energy_onset(hr, FRONT)
    assert abs(10 * np.log10(e_r / e_l)) < 1.0 and abs(int(on_l) - int(on_r)) <= 1


def test_shipped_set_loads():
    hr = load_hrirs()
    assert hr.sample_rate == 48000
    assert hr.irs.shape == (710, 2, 256) and hr.irs.dtype == np.float32
    assert hr.directions.shape == (710, 3)
    np.testing.assert_allclose(np.linalg.norm(hr.directions, axis=-1), 1.0, atol=1e-6)
    assert 5 < hr.onset < 40  # head-centre arrival after removing the common delay
    assert load_hrirs() is hr  # cached, and read-only so sharing is safe
    with pytest.raises(ValueError):
        hr.irs[0, 0, 0] = 1.0
    size = (Path(__file__).parents[2] / "livesense/assets/hrtf/mit_kemar_48k.npz").stat().st_size
    assert size < 1.5e6


def test_shipped_set_right_source_is_louder_and_earlier_in_right_ear():
    _check_lateral(load_hrirs())


def test_nearest_and_interpolate():
    hr = load_hrirs()
    i = int(hr.nearest(RIGHT))
    np.testing.assert_allclose(hr.directions[i], RIGHT, atol=1e-6)
    idx = hr.nearest(np.array([RIGHT, LEFT, 3 * FRONT]))
    assert hr.directions[idx[1], 1] == pytest.approx(-1.0, abs=1e-6)
    assert hr.directions[idx[2], 0] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(hr.interpolate(RIGHT), hr.irs[i])  # exact hit
    between = hr.interpolate(np.array([1.0, 0.05, 0.0]))  # between 0 and ~5 degrees right
    assert between.shape == (2, 256) and np.all(np.isfinite(between))


def test_resample_and_trim():
    hr = load_hrirs()
    hr44 = hr.resample(44100)
    assert hr44.sample_rate == 44100 and hr44.irs.shape[-1] == 236
    assert hr44.onset == pytest.approx(hr.onset * 147 / 160)
    short = hr.trimmed(4, 128, fade=8)
    assert short.irs.shape == (710, 2, 128) and short.onset == pytest.approx(hr.onset - 4)
    assert load_hrirs(sample_rate=44100).sample_rate == 44100


def test_partition_spectra_reconstruct_the_responses():
    hr = load_hrirs()
    spec = hr.partition_spectra(128)  # (M, 2, P, 129)
    assert spec.shape == (710, 2, 2, 129)
    parts = np.fft.irfft(spec, n=256, axis=-1)[..., :128]  # (M, 2, P, 128)
    np.testing.assert_allclose(parts.reshape(710, 2, 256), hr.irs, atol=1e-6)
    assert hr.partition_spectra(128) is spec


@needs_sofa
def test_system_sofa_loads_with_livesense_azimuth_convention():
    raw = read_sofa(SYSTEM_SOFA)
    assert raw.sample_rate == 44100 and raw.irs.shape == (710, 2, 512)
    _check_lateral(raw)
    hr = load_hrirs(SYSTEM_SOFA)
    assert hr.sample_rate == 48000 and hr.irs.shape == (710, 2, 558)
    _check_lateral(hr)


@needs_sofa
def test_shipped_set_matches_the_sofa_source():
    full = load_hrirs(SYSTEM_SOFA)
    ship = load_hrirs()
    np.testing.assert_allclose(ship.directions, full.directions, atol=1e-6)
    # Same responses after the common leading cut (23 samples), up to float16 and the fade.
    cut = int(round(full.onset - ship.onset))
    ref = full.irs[..., cut : cut + 200]
    assert np.max(np.abs(ship.irs[..., :200] - ref)) < 2e-3


def _write_sofa(
    path: Path, positions, irs, pos_type="spherical", receivers_y=(0.09, -0.09), rate=48000.0
):
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = "SOFA"
        f.create_dataset("Data.IR", data=np.asarray(irs, dtype=np.float64))
        sp = f.create_dataset("SourcePosition", data=np.asarray(positions, dtype=np.float64))
        sp.attrs["Type"] = np.bytes_(pos_type)
        f.create_dataset("Data.SamplingRate", data=np.array([rate]))
        rp = np.zeros((2, 3, 1))
        rp[:, 1, 0] = receivers_y
        f.create_dataset("ReceiverPosition", data=rp)


def _lateral_irs() -> np.ndarray:
    """Two directions: [0] a source that reaches receiver 0 first, [1] a frontal one."""
    irs = np.zeros((2, 2, 32))
    irs[0, 0, 5], irs[0, 1, 12] = 1.0, 0.3
    irs[1, :, 8] = 1.0
    return irs


def test_synthetic_sofa_azimuth_90_is_left(tmp_path):
    path = tmp_path / "left.sofa"
    _write_sofa(path, [[90.0, 0, 1.2], [0.0, 0, 1.2]], _lateral_irs())
    hr = load_hrirs(path)
    np.testing.assert_allclose(hr.directions[0], LEFT, atol=1e-12)  # SOFA az +90 = left
    np.testing.assert_array_equal(onset_index(hr.irs[0]), [5, 12])  # left ear first
    assert hr.onset == pytest.approx(8.0)


def test_synthetic_sofa_cartesian_and_swapped_receivers(tmp_path):
    path = tmp_path / "cart.sofa"
    # Cartesian SOFA y points left; receiver 0 sits at -y, i.e. it is the RIGHT ear.
    _write_sofa(path, [[0, 1.0, 0], [1.0, 0, 0]], _lateral_irs(), "cartesian", (-0.09, 0.09))
    hr = read_sofa(path)
    np.testing.assert_allclose(hr.directions[0], LEFT, atol=1e-12)
    np.testing.assert_array_equal(onset_index(hr.irs[0]), [12, 5])  # ears reordered (L, R)


def test_sofa_data_delay_is_applied(tmp_path):
    path = tmp_path / "delay.sofa"
    _write_sofa(path, [[0.0, 0, 1]], np.ones((1, 2, 4)))
    with h5py.File(path, "a") as f:
        f.create_dataset("Data.Delay", data=np.array([[3.0, 5.0]]))
    hr = read_sofa(path)
    np.testing.assert_array_equal(onset_index(hr.irs[0]), [3, 5])


def test_hrtf_file_errors(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        load_hrirs(tmp_path / "missing.sofa")
    with pytest.raises(MediaError, match="not found"):
        load_hrirs(tmp_path / "missing.npz")
    text = tmp_path / "fake.sofa"
    text.write_text("not hdf5")
    with pytest.raises(MediaError, match="not a readable SOFA"):
        load_hrirs(text)
    empty = tmp_path / "empty.sofa"
    with h5py.File(empty, "w") as f:
        f.create_dataset("SourcePosition", data=np.zeros((1, 3)))
    with pytest.raises(MediaError, match="Data.IR"):
        load_hrirs(empty)
    mono = tmp_path / "mono.sofa"
    _write_sofa(mono, [[0.0, 0, 1]], np.ones((1, 1, 8)))
    with pytest.raises(MediaError, match="two ears"):
        load_hrirs(mono)
    with pytest.raises(ConfigError, match=r"\.sofa or \.npz"):
        load_hrirs(tmp_path / "hrtf.wav")
    bad_npz = tmp_path / "bad.npz"
    np.savez(bad_npz, irs=np.zeros((2, 2, 8)))
    with pytest.raises(MediaError, match="lacks directions, sample_rate"):
        load_hrirs(bad_npz)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    with pytest.raises(MediaError, match="not a readable .npz"):
        read_npz(junk)
    shape = tmp_path / "shape.npz"
    np.savez(shape, irs=np.zeros((2, 3, 8)), directions=np.eye(3)[:2], sample_rate=48000, onset=1.0)
    with pytest.raises(LivesenseError, match=r"\(M=2, 2, N\)"):
        load_hrirs(shape)


def test_user_npz_roundtrip(tmp_path):
    hr = load_hrirs()
    path = tmp_path / "mine.npz"
    np.savez(path, irs=hr.irs[:10], directions=hr.directions[:10], sample_rate=48000)
    mine = load_hrirs(path)
    assert len(mine) == 10 and mine.n_taps == 256
    np.testing.assert_array_equal(mine.irs, hr.irs[:10])
