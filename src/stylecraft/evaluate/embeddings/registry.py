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

from collections.abc import Callable

from stylecraft.errors import StylecraftError
from stylecraft.evaluate.embeddings.base import Embedding
from stylecraft.evaluate.embeddings.mfcc import MfccEmbedding

__all__ = ["available_embeddings", "get_embedding", "register_embedding"]


def _vggish() -> Embedding:
    from stylecraft.evaluate.embeddings.vggish import VGGishEmbedding

    return VGGishEmbedding.from_registry()


def _vggish_tiny() -> Embedding:
    from stylecraft.evaluate.embeddings.vggish import VGGishEmbedding

    return VGGishEmbedding.preset("tiny", seed=0)


def _encodec(variant: str, tiny: bool) -> Callable[[], Embedding]:
    def factory() -> Embedding:
        from stylecraft.evaluate.embeddings.encodec import EncodecEmbedding

        if tiny:
            return EncodecEmbedding.preset(variant, tiny=True, seed=0)
        return EncodecEmbedding.from_registry(variant)

    return factory


def _clap() -> Embedding:
    from stylecraft.evaluate.embeddings.clap import ClapEmbedding

    return ClapEmbedding.from_registry()


def _clap_tiny() -> Embedding:
    from stylecraft.evaluate.embeddings.clap import ClapEmbedding

    return ClapEmbedding.preset(seed=0)


def _musicnn(variant: str, tiny: bool) -> Callable[[], Embedding]:
    def factory() -> Embedding:
        from stylecraft.evaluate.embeddings.musicnn import MusicnnEmbedding

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
