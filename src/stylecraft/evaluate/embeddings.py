"""Embedding models for Fréchet Audio Distance.

FAD compares the distribution of embedding frames of a reference set with that of a generated
set, so every model used for it only has to turn a clip into a ``[frames, D]`` matrix. The
:class:`Embedding` protocol is that contract; :func:`get_embedding` builds one by name.

:class:`MfccEmbedding` needs no weights and no network, so FAD can be computed anywhere (CI
included). Learned embeddings (``vggish``, ``encodec-24k``/``-48k``, ``clap``, ``musicnn-msd``/``-mtt``) load their
published weights by name (``stylecraft fetch``); each also has a ``-tiny`` randomly initialised
variant of the same code path for offline tests. More models plug in by implementing
:class:`Embedding` and calling :func:`register_embedding` with a zero-argument factory; the
factory is only called on :func:`get_embedding`, so heavy imports and weight loading stay out
of module import time.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import librosa
import numpy as np
import soxr

from stylecraft.errors import AudioDecodeError, StylecraftError

__all__ = [
    "BatchedEmbedding",
    "Embedding",
    "MfccEmbedding",
    "available_embeddings",
    "get_embedding",
    "register_embedding",
]


@runtime_checkable
class Embedding(Protocol):
    """An audio embedding model usable for FAD.

    Attributes:
        name: Short registry name (e.g. ``"mfcc"``), recorded next to every FAD value.
        sample_rate: Rate, in Hz, at which the model analyses audio; :meth:`embed` resamples
            its input to this rate itself.
    """

    name: str
    sample_rate: int

    def settings(self) -> dict[str, Any]:
        """Return every setting that changes the numbers.

        The dict must be JSON-serialisable: it is hashed into embedding cache keys and stored
        in FAD result records, so two runs with equal settings must give equal embeddings.
        """
        ...

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embed one clip.

        Args:
            audio: Float samples, shape ``[samples]`` or ``[samples, channels]``.
            sample_rate: Sample rate of ``audio`` in Hz.

        Returns:
            float32 array ``[frames, D]`` with at least one row.

        Raises:
            AudioDecodeError: If the clip holds no usable audio (empty or non-finite).
        """
        ...


@runtime_checkable
class BatchedEmbedding(Embedding, Protocol):
    """An :class:`Embedding` whose work splits into a per-clip front end and a batched network.

    :func:`~stylecraft.evaluate.fad.embed_set` uses the split to run front ends (decode,
    resampling, spectrograms) in worker threads while the network runs in the calling thread
    on batches of ``batch_size`` inputs gathered across files. The network must treat every
    input row independently, so that batching changes nothing but float rounding.

    Attributes:
        batch_size: Network inputs per forward pass.
    """

    batch_size: int

    def front_end(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Network inputs ``[n, ...]`` of one clip (``n >= 1``), as float32.

        Raises:
            AudioDecodeError: If the clip gives no input (too short, empty, non-finite).
        """
        ...

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Run the network on inputs ``[n, ...]``; returns float32 ``[n, D]``."""
        ...


def _to_mono_float(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Validate a clip and mix it down to a 1-D float32 mono signal."""
    audio = np.asarray(audio)
    if sample_rate <= 0:
        raise StylecraftError(f"sample rate must be positive, got {sample_rate}")
    if audio.ndim not in (1, 2):
        raise AudioDecodeError(f"audio must have shape [samples] or [samples, channels], got {audio.shape}")
    if audio.size == 0:
        raise AudioDecodeError(f"audio holds no samples (shape {audio.shape})")
    if not np.issubdtype(audio.dtype, np.floating):
        raise AudioDecodeError(f"audio must be floating point, got dtype {audio.dtype}")
    # Average the channels (rather than taking one) so that content panned to one side counts.
    if audio.ndim == 2 and audio.shape[1] == 2 and audio.dtype == np.float32:
        # Equal to ``mean(axis=1)`` bit for bit (float32 (a + b) / 2), without numpy's slow
        # strided reduction over a length-2 axis (about 10x faster on long stereo files).
        mono = (audio[:, 0] + audio[:, 1]) * np.float32(0.5)
    else:
        mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioDecodeError("audio holds NaN or inf samples")
    return mono


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
        mono = _to_mono_float(audio, sample_rate)
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


def _vggish() -> Embedding:
    from stylecraft.evaluate.vggish import VGGishEmbedding

    return VGGishEmbedding.from_registry()


def _vggish_tiny() -> Embedding:
    from stylecraft.evaluate.vggish import VGGishEmbedding

    return VGGishEmbedding.preset("tiny", seed=0)


def _encodec(variant: str, tiny: bool) -> Callable[[], Embedding]:
    def factory() -> Embedding:
        from stylecraft.evaluate.encodec_emb import EncodecEmbedding

        if tiny:
            return EncodecEmbedding.preset(variant, tiny=True, seed=0)
        return EncodecEmbedding.from_registry(variant)

    return factory


def _clap() -> Embedding:
    from stylecraft.evaluate.clap_emb import ClapEmbedding

    return ClapEmbedding.from_registry()


def _clap_tiny() -> Embedding:
    from stylecraft.evaluate.clap_emb import ClapEmbedding

    return ClapEmbedding.preset(seed=0)


def _musicnn(variant: str, tiny: bool) -> Callable[[], Embedding]:
    def factory() -> Embedding:
        from stylecraft.evaluate.musicnn import MusicnnEmbedding

        if tiny:
            return MusicnnEmbedding.preset(variant, seed=0)
        return MusicnnEmbedding.from_registry(variant)

    return factory


_REGISTRY: dict[str, Callable[[], Embedding]] = {
    MfccEmbedding.name: MfccEmbedding,
    # The published weights, fetched by name; a missing file is a ModelNotFoundError.
    "vggish": _vggish,
    # Same network structure, small and randomly initialised: offline tests and quick demos only.
    "vggish-tiny": _vggish_tiny,
    "encodec-24k": _encodec("24k", tiny=False),
    "encodec-48k": _encodec("48k", tiny=False),
    "encodec-24k-tiny": _encodec("24k", tiny=True),
    "encodec-48k-tiny": _encodec("48k", tiny=True),
    "clap": _clap,
    "clap-tiny": _clap_tiny,
    # Music-tagging CNNs whose weights come from a package registry (``stylecraft fetch musicnn``).
    "musicnn-msd": _musicnn("msd", tiny=False),
    "musicnn-mtt": _musicnn("mtt", tiny=False),
    "musicnn-msd-tiny": _musicnn("msd", tiny=True),
    "musicnn-mtt-tiny": _musicnn("mtt", tiny=True),
}


def register_embedding(name: str, factory: Callable[[], Embedding]) -> None:
    """Make an embedding available to :func:`get_embedding`.

    Args:
        name: Registry name; must equal the ``name`` attribute of the built objects.
        factory: Zero-argument callable returning a new :class:`Embedding`. It is called
            lazily, so it may import heavy libraries or load weights.

    Raises:
        StylecraftError: If ``name`` is already registered.
    """
    if name in _REGISTRY:
        raise StylecraftError(f"embedding {name!r} is already registered")
    _REGISTRY[name] = factory


def available_embeddings() -> list[str]:
    """Return the registered embedding names, sorted."""
    return sorted(_REGISTRY)


def get_embedding(name: str) -> Embedding:
    """Build the embedding model registered as ``name``.

    Args:
        name: Registry name, e.g. ``"mfcc"``.

    Returns:
        A new :class:`Embedding` instance.

    Raises:
        StylecraftError: If ``name`` is unknown; the message lists the known names.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_embeddings())
        raise StylecraftError(f"unknown embedding {name!r}; known embeddings: {known}") from None
    return factory()
