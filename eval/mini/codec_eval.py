"""What a codec keeps of music it never heard, beside Opus at 6 kbit/s and MP3 at 8 kbit/s.

    python eval/mini/codec_eval.py --model stylecraft-mini --music eval/data/mini/test/drascula eval/data/mini/test/colobot

Excerpts (deterministic: evenly spaced 10 s excerpts of every track, silent ones left out,
loudness-normalised to -16 LUFS, mono, 32 kHz) go through each codec; each reconstruction is aligned to its original by
cross-correlation (Opus and MP3 add encoder delay) and scored with:

* log-mel L1 over the full band (0-16 kHz) and below 4 kHz (the band Opus keeps at 6 kbit/s);
* the correlation of each mel band's time course with the original's, averaged over the bands
  below 4 kHz (temporal detail; above 4 kHz Opus keeps nothing to correlate) and over all bands;
* multi-resolution STFT distance and SI-SNR.

Figures go to ``eval/results/mini_codec.json`` and a spectrogram grid ``mini_codec.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "eval" / "results"
SR = 32000
EXCERPT_S = 10.0
N_FFT, HOP, N_MELS = 2048, 512, 128
BAND_HZ = 4000.0
SILENCE_DBFS = -50.0  # excerpts quieter than this (RMS) are left out


def excerpts(folders: list[Path], per_track: int) -> list[tuple[str, np.ndarray]]:
    from stylecraft.audio import io as audio_io
    from stylecraft.audio.loudness import normalize_gain

    out = []
    n = int(EXCERPT_S * SR)
    for folder in folders:
        for f in sorted(p for p in folder.iterdir() if p.is_file() or p.is_symlink()):
            audio, sr = audio_io.load(f)
            mono = audio_io.resample(audio_io.to_mono(audio), sr, SR)
            if mono.shape[0] < n + SR:
                continue
            for k, start in enumerate(np.linspace(0, mono.shape[0] - n, per_track + 2)[1:-1].astype(int)):
                raw = mono[start : start + n]
                if 20 * np.log10(np.sqrt(np.mean(raw**2)) + 1e-12) < SILENCE_DBFS:
                    print(f"skipped {folder.name}/{f.stem}@{k}: silent", file=sys.stderr)  # no codec measure means anything there
                    continue
                clip, _ = normalize_gain(raw, SR, -16.0)
                out.append((f"{folder.name}/{f.stem}@{k}", np.clip(clip, -1, 1).astype(np.float32)))
    return out


def ffmpeg_roundtrip(clip: np.ndarray, args: list[str], suffix: str) -> np.ndarray:
    """Encode with ffmpeg (``args``: codec and bitrate) and decode back to mono float at 32 kHz."""
    import soundfile as sf

    from stylecraft.audio import io as audio_io

    with tempfile.TemporaryDirectory() as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / f"enc{suffix}", Path(tmp) / "out.wav"
        sf.write(src, clip, SR, subtype="PCM_16")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(enc)], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(enc), "-ac", "1", str(dec)], check=True)
        y, sr = sf.read(dec, dtype="float32")
        return audio_io.resample(audio_io.to_mono(y), sr, SR)


def align(ref: np.ndarray, y: np.ndarray, max_shift: int = 4000) -> np.ndarray:
    """``y`` shifted (by cross-correlation, within ±max_shift samples) and cut to ``ref``'s length."""
    from scipy.signal import correlate

    m = min(len(ref), len(y))
    c = correlate(y[:m], ref[:m], mode="full", method="fft")[m - 1 - max_shift : m + max_shift]
    lag = int(np.argmax(c)) - max_shift
    y = y[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), y])
    out = np.zeros_like(ref)
    out[: min(len(ref), len(y))] = y[: len(ref)]
    return out


def _log_mel(x: np.ndarray) -> np.ndarray:
    import librosa

    m = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, fmax=SR / 2, power=1.0)
    return np.log10(np.maximum(m, 1e-5))


def scores(ref: np.ndarray, y: np.ndarray) -> dict[str, float]:
    import librosa
    import torch

    from stylecraft.codec.losses import MultiResolutionSTFTLoss
    from stylecraft.codec.train import si_snr

    a, b = _log_mel(ref), _log_mel(y)
    low = librosa.mel_frequencies(n_mels=N_MELS, fmax=SR / 2) < BAND_HZ

    def corr(rows: np.ndarray) -> float:
        vals = []
        for i in np.flatnonzero(rows):
            if a[i].std() > 1e-6 and b[i].std() > 1e-6:
                vals.append(float(np.corrcoef(a[i], b[i])[0, 1]))
            else:
                vals.append(0.0)  # a band the codec flattened keeps no time course
        return float(np.mean(vals))

    tr, ty = torch.from_numpy(ref)[None], torch.from_numpy(y)[None]
    return {
        "mel_l1_full": float(np.abs(a - b).mean()),
        "mel_l1_below_4k": float(np.abs(a[low] - b[low]).mean()),
        "time_corr_below_4k": corr(low),
        "time_corr_full": corr(np.ones(N_MELS, bool)),
        "mrstft": float(MultiResolutionSTFTLoss()(ty, tr)),
        "si_snr_db": float(si_snr(ty, tr)[0]),
    }


def main() -> None:
    from stylecraft.codec.roundtrip import roundtrip_audio
    from stylecraft.models.loading import load_codec

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stylecraft-mini")
    ap.add_argument("--music", type=Path, nargs="+", required=True, help="folders of held-out music")
    ap.add_argument("--per-track", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "mini_codec.json")
    args = ap.parse_args()
    codec = load_codec(args.model)
    conf = codec.config
    ours = f"{args.model} ({conf.num_quantizers * conf.codebook_nbits * conf.frame_rate / 1000:.2f} kbit/s)"
    methods = {
        ours: lambda c: roundtrip_audio(codec, c, SR)[0],
        "Opus 6 kbit/s": lambda c: ffmpeg_roundtrip(c, ["-c:a", "libopus", "-b:a", "6k", "-ac", "1"], ".opus"),
        "MP3 8 kbit/s": lambda c: ffmpeg_roundtrip(c, ["-c:a", "libmp3lame", "-b:a", "8k", "-ac", "1", "-ar", "8000"], ".mp3"),
    }
    clips = excerpts(args.music, args.per_track)
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    shown: list[tuple[str, np.ndarray]] = []
    for i, (name, clip) in enumerate(clips):
        for m, fn in methods.items():
            y = align(clip, fn(clip))
            rows[m].append(scores(clip, y))
            if i < 2:
                shown.append((f"{m}: {name}", y))
        if i < 2:
            shown.insert(len(shown) - len(methods), (f"original: {name}", clip))
        print(f"{i + 1}/{len(clips)} {name}", file=sys.stderr, flush=True)
    summary = {m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for m, rs in rows.items()}
    result: dict[str, Any] = {
        "model": args.model, "excerpts": len(clips), "excerpt_s": EXCERPT_S, "music": [str(p) for p in args.music],
        "summary": summary, "per_excerpt": {m: rs for m, rs in rows.items()}, "names": [n for n, _ in clips],
        "machine": platform.platform(), "ffmpeg": subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0],
    }
    from stylecraft.artifacts import atomic_write_json
    from stylecraft.evaluate.plots import spectrogram_grid

    atomic_write_json(args.out, result)
    spectrogram_grid(shown, SR, args.out.with_suffix(".png"))
    for m, s in summary.items():
        print(m, json.dumps({k: round(v, 4) for k, v in s.items()}))


if __name__ == "__main__":
    main()
