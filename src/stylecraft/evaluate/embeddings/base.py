"""The contract every embedding meets, and the input checks they share.

FAD compares the distribution of embedding frames of a reference set with that of a generated
set, so every model used for it only has to turn a clip into a ``[frames, D]`` matrix: the
:class:`Embedding` protocol. :class:`BatchedEmbedding` adds the split into a per-clip front end
and a batched network that :func:`~stylecraft.evaluate.fad.embed_set` exploits.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from stylecraft.errors import AudioDecodeError, StylecraftError

__all__ = ["BatchedEmbedding", "Embedding", "to_mono_float"]


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


def to_mono_float(audio: np.ndarray, sample_rate: int) -> np.ndarray:
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
