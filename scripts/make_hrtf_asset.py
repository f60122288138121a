"""Regenerate livesense/assets/hrtf/mit_kemar_48k.npz from the MIT KEMAR SOFA file.

Source: Debian ``libmysofa1``'s ``/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa``
(44.1 kHz, 710 directions x 2 ears x 512 taps). Steps: resample to 48 kHz (polyphase 160/147),
cut the leading delay common to all 1420 responses (keeping a margin before the earliest onset,
so interaural time differences stay intact), keep 256 taps with a 16-tap raised-cosine fade-out,
store float16. Prints the energy kept and fails if less than 99% of the set's energy survives.

    .venv/bin/python scripts/make_hrtf_asset.py [--sofa PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from livesense.audio.hrtf import CITATION, onset_index, read_sofa

DEFAULT_SOFA = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "livesense/assets/hrtf/mit_kemar_48k.npz"
RATE, TAPS, MARGIN, FADE = 48000, 256, 8, 16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sofa", default=DEFAULT_SOFA)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()

    full = read_sofa(args.sofa).resample(RATE)  # (710, 2, 558) at 48 kHz
    start = max(int(onset_index(full.irs, 0.05).min()) - MARGIN, 0)
    small = full.trimmed(start, TAPS, fade=FADE)

    e_full = np.sum(full.irs.astype(np.float64) ** 2, axis=-1)  # (M, 2)
    e_small = np.sum(small.irs.astype(np.float64) ** 2, axis=-1)
    kept_total = float(e_small.sum() / e_full.sum())
    kept = e_small / e_full
    irs16 = small.irs.astype(np.float16)
    q_err = float(np.max(np.abs(irs16.astype(np.float32) - small.irs)))
    if kept_total < 0.99 or float(kept.mean()) < 0.99:
        raise SystemExit(f"too much energy lost: total {kept_total:.4f}, mean {kept.mean():.4f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        irs=irs16,  # (710, 2, 256) float16, ears (left, right)
        directions=small.directions.astype(np.float32),  # (710, 3) livesense frame
        sample_rate=np.int64(RATE),
        onset=np.float64(small.onset),
        source=np.str_(f"{Path(args.sofa).name} (Debian libmysofa1), resampled to 48 kHz"),
        citation=np.str_(CITATION),
    )
    print(
        json.dumps(
            {
                "out": str(out),
                "bytes": out.stat().st_size,
                "shape": list(irs16.shape),
                "leading_samples_cut": start,
                "onset": round(small.onset, 2),
                "energy_kept_total": round(kept_total, 5),
                "energy_kept_mean": round(float(kept.mean()), 5),
                "energy_kept_min": round(float(kept.min()), 5),
                "float16_max_abs_err": q_err,
                "peak": float(np.abs(small.irs).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
