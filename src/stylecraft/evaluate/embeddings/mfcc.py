"""The weights-free MFCC embedding (``mfcc``): FAD anywhere, CI included."""

from __future__ import annotations

import importlib.metadata
import warnings
from typing import Any

import librosa
import numpy as np
import soxr

from stylecraft.errors import AudioDecodeError
from stylecraft.evaluate.embeddings.base import to_mono_float

__all__ = ["MfccEmbedding"]


class MfccEmbedding:
    """Weights-free MFCC block embedding (``name="mfcc"``, 80 dimensions per 0.96 s).

    Pipeline:

    1. Mono mix (mean of channels), resampled to 16 kHz with ``soxr`` (quality ``"HQ"``).
    2. Mel power spectrogram: ``n_fft=512`` with a 25 ms window (``win_length=400``) and a
       10 ms hop (``hop_length=160``), 64 Slaney mel bands from 20 Hz to 8 kHz
       (``htk=False``). Window, hop and band count follow VGGish's front end, so blocks line
       up with what a learned embedding would see.
    3. ``10 * log10(max(S, 1e-10))`` with a fixed reference of 1.0 and **no** ``top_db``
       clamp. librosa's default clamps relative to the loudest frame of the whole clip, which
       would make a block's features depend on audio seconds away; a fixed floor keeps
       every frame a function of its own neighbourhood only.
    4. 20 MFCCs (DCT-II, orthonormal, no lifter) plus delta and delta-delta
       (``librosa.feature.delta``, ``width=9``, ``mode="nearest"``; ``"nearest"`` rather
       than librosa's ``"interp"`` because it also works on clips shorter than 9 frames).
    5. Frames are grouped into non-overlapping blocks of 96 frames (0.96 s, VGGish's example
       length). Per-frame rows are strongly correlated with their neighbours, which would
       make the covariance estimate look far better determined than it is; one row per
       block is closer to independent samples. Each block is summarised as the mean of
       ``[mfcc, delta, delta2]`` (60 values) and the standard deviation of ``mfcc``
       (20 values, capturing within-block variation that the mean erases): **D = 80**.
    6. A trailing partial block is dropped (as VGGish does), unless the clip is shorter than
       one block, in which case the one partial block is kept so that every clip yields a
       row.

    The embedding is deterministic and runs on CPU in well under real time.
    """

    name = "mfcc"
    sample_rate = 16_000

    # Step 2-5 parameters, also reported by settings().
    n_mfcc = 20
    n_fft = 512
    win_length = 400
    hop_length = 160
    n_mels = 64
    fmin = 20.0
    fmax = 8000.0
    htk = False
    amin = 1e-10
    delta_width = 9
    delta_mode = "nearest"
    block_frames = 96
    resample_quality = "HQ"
    # Bump when the computation changes in a way settings() does not otherwise capture,
    # so that cached embeddings are recomputed.
    version = 1

    @property
    def dim(self) -> int:
        """Embedding dimension: mean of MFCC, delta, delta-delta plus std of MFCC."""
        return 4 * self.n_mfcc

    def settings(self) -> dict[str, Any]:
        """Return the parameters above plus library versions (which can shift the numbers)."""
        return {
            "name": self.name,
            "version": self.version,
            "sample_rate": self.sample_rate,
            "resample": f"soxr-{self.resample_quality}",
            "n_mfcc": self.n_mfcc,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "window": "hann",
            "center": True,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "htk": self.htk,
            "mel_norm": "slaney",
            "db": {"ref": 1.0, "amin": self.amin, "top_db": None},
            "dct": {"type": 2, "norm": "ortho", "lifter": 0},
            "delta": {"width": self.delta_width, "mode": self.delta_mode, "orders": [1, 2]},
            "block": {
                "frames": self.block_frames,
                "stats": ["mean(mfcc)", "mean(delta)", "mean(delta2)", "std(mfcc)"],
                "partial": "dropped unless the only block",
            },
            "dim": self.dim,
            "librosa": importlib.metadata.version("librosa"),
            "soxr": importlib.metadata.version("soxr"),
        }

    def frame_features(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Per-frame ``[mfcc, delta, delta2]`` features (steps 1-4).

        Args:
            audio: Float samples, shape ``[samples]`` or ``[samples, channels]``.
            sample_rate: Sample rate of ``audio`` in Hz.

        Returns:
            float32 array ``[frames, 3 * n_mfcc]``, 100 frames per second.

        Raises:
            AudioDecodeError: If the clip is empty or holds non-finite samples.
        """
        mono = to_mono_float(audio, sample_rate)
        if sample_rate != self.sample_rate:
            mono = soxr.resample(mono, sample_rate, self.sample_rate, quality=self.resample_quality)
            mono = np.ascontiguousarray(mono, dtype=np.float32)
            if mono.size == 0:
                # A handful of samples at a high rate can resample to nothing.
                raise AudioDecodeError("audio is too short to resample to 16 kHz")
        with warnings.catch_warnings():
            # Clips shorter than one FFT are zero-padded by the centred STFT, which is what we
            # want; librosa's warning about it would only be noise for short generated clips.
            warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large", category=UserWarning)
            mel = librosa.feature.melspectrogram(
                y=mono,
                sr=self.sample_rate,
                n_fft=self.n_fft,
                win_length=self.win_length,
                hop_length=self.hop_length,
                window="hann",
                center=True,
                power=2.0,
                n_mels=self.n_mels,
                fmin=self.fmin,
                fmax=self.fmax,
                htk=self.htk,
            )
        log_mel = librosa.power_to_db(mel, ref=1.0, amin=self.amin, top_db=None)
        mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=self.n_mfcc, dct_type=2, norm="ortho", lifter=0)
        d1 = librosa.feature.delta(mfcc, width=self.delta_width, order=1, mode=self.delta_mode)
        d2 = librosa.feature.delta(mfcc, width=self.delta_width, order=2, mode=self.delta_mode)
        return np.concatenate([mfcc, d1, d2], axis=0).T.astype(np.float32)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embed one clip as 0.96 s blocks.

        Args:
            audio: Float samples, shape ``[samples]`` or ``[samples, channels]``.
            sample_rate: Sample rate of ``audio`` in Hz.

        Returns:
            float32 array ``[blocks, 80]``; at least one row.

        Raises:
            AudioDecodeError: If the clip is empty or holds non-finite samples.
        """
        feats = self.frame_features(audio, sample_rate)
        n_frames = feats.shape[0]
        n_blocks = n_frames // self.block_frames
        if n_blocks == 0:
            blocks = feats[None, :, :]
        else:
            usable = n_blocks * self.block_frames
            blocks = feats[:usable].reshape(n_blocks, self.block_frames, feats.shape[1])
        blocks = blocks.astype(np.float64)  # accumulate the statistics in float64
        mean = blocks.mean(axis=1)
        std = blocks[:, :, : self.n_mfcc].std(axis=1)
        out = np.concatenate([mean, std], axis=1).astype(np.float32)
        assert out.shape[1] == self.dim
        if not np.isfinite(out).all():
            # Only reachable with absurd amplitudes whose power overflows float32.
            raise AudioDecodeError("audio gives non-finite MFCCs (sample values far outside [-1, 1]?)")
        return out
