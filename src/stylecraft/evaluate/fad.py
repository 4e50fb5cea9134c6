"""Fréchet Audio Distance and Kernel Audio Distance between a reference set and a generated set.

A *set* is either a folder of audio files (embedded here with an :class:`Embedding`) or a
``.npy`` file holding precomputed embeddings ``[N, D]``. For FAD each set is reduced to a Gaussian
(:func:`~stylecraft.evaluate.frechet.gaussian_stats`) and the two are compared with
:func:`~stylecraft.evaluate.frechet.frechet_distance`; KAD compares the rows themselves
(:func:`~stylecraft.evaluate.kad.kernel_audio_distance`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from stylecraft.artifacts import atomic_save_npy, sha256_file, sha256_json
from stylecraft.audio import AUDIO_EXTENSIONS
from stylecraft.errors import AudioDecodeError, StylecraftError
from stylecraft.evaluate.embeddings import BatchedEmbedding, Embedding, get_embedding
from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats
from stylecraft.progress import progress_iter

__all__ = [
    "AUDIO_EXTENSIONS",
    "EmbeddedSet",
    "compute_fad",
    "embed_set",
    "embedding_cache_path",
    "list_audio_files",
    "load_audio_for_embedding",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class EmbeddedSet:
    """Embeddings of one side of a FAD comparison.

    Attributes:
        embeddings: float64 ``[N, D]``, the rows of all embedded files stacked in file order.
        n_files: Number of audio files that contributed rows (0 for a ``.npy`` source).
        files: Those files, as strings, in the order their rows appear.
        skipped: ``(path, reason)`` for every audio file that could not be embedded.
        source: The folder or ``.npy`` file the set came from.
        kind: ``"audio"`` for a folder of audio, ``"npy"`` for precomputed embeddings.
    """

    embeddings: np.ndarray
    n_files: int
    files: list[str]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    source: str = ""
    kind: Literal["audio", "npy"] = "audio"
    sizes: list[int] = dataclasses.field(default_factory=list)
    """Embedding rows per file, in file order (empty for a ``.npy`` source)."""

    def per_file(self) -> dict[str, np.ndarray]:
        """Rows of each file, keyed by path."""
        out: dict[str, np.ndarray] = {}
        start = 0
        for f, n in zip(self.files, self.sizes, strict=True):
            out[f] = self.embeddings[start : start + n]
            start += n
        return out


def _one_line(exc: BaseException) -> str:
    """Collapse an exception message to one line (libsndfile messages span several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def list_audio_files(folder: str | Path) -> list[Path]:
    """List the audio files under ``folder``, recursively, in a stable order.

    Hidden files (name starting with ``.``) are left out: they are editor/OS leftovers such as
    macOS ``._track.wav`` resource forks or unfinished atomic-write temporaries, not audio.

    Args:
        folder: Folder to search.

    Returns:
        Paths with an extension in :data:`AUDIO_EXTENSIONS` (case-insensitive), sorted by their
        path relative to ``folder`` so the order does not depend on the file system.

    Raises:
        StylecraftError: If ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StylecraftError(f"audio folder {folder} does not exist or is not a folder")
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def load_audio_for_embedding(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file for embedding.

    Args:
        path: Audio file readable by libsndfile (FLAC, WAV, OGG, MP3, AIFF, ...).

    Returns:
        ``(audio, sample_rate)`` with ``audio`` float32 of shape ``[samples, channels]``.

    Raises:
        AudioDecodeError: If the file cannot be decoded or holds no samples; the one-line
            message names the file.
    """
    path = Path(path)
    try:
        audio, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioDecodeError(f"cannot decode audio file {path}: {_one_line(exc)}") from exc
    if audio.size == 0:
        raise AudioDecodeError(f"audio file {path} holds no samples")
    return audio, int(sample_rate)


def embedding_cache_path(cache_dir: Path, audio_path: Path, embedding: Embedding) -> Path:
    """Where the cached embedding of ``audio_path`` lives.

    The key is content-addressed (sha256 of the file's bytes, not its name or mtime) so that
    renamed or copied files hit the cache and rewritten ones miss it, and it includes a hash of
    ``embedding.settings()`` so that changing any parameter never reuses stale numbers.

    Args:
        cache_dir: Cache folder.
        audio_path: The audio file.
        embedding: The embedding model.

    Returns:
        ``cache_dir / "<sha256 of file>-<first 16 hex of sha256 of settings>.npy"``.
    """
    settings_key = sha256_json(embedding.settings())[:16]
    return Path(cache_dir) / f"{sha256_file(audio_path)}-{settings_key}.npy"


def _load_cached(path: Path) -> np.ndarray | None:
    """Load a cached embedding, or ``None`` if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        # Treated as a miss: the entry is rewritten below, which repairs the cache.
        logger.warning("ignoring unreadable embedding cache entry %s: %s", path, _one_line(exc))
        return None
    if arr.ndim != 2 or arr.shape[0] < 1 or not np.isfinite(arr).all():
        logger.warning("ignoring malformed embedding cache entry %s (shape %s)", path, arr.shape)
        return None
    return arr


def _cache_key(path: Path, embedding: Embedding, cache_dir: Path | None) -> Path | None:
    """Cache file of ``path`` under ``cache_dir`` (``None`` without a cache)."""
    if cache_dir is None:
        return None
    try:
        return embedding_cache_path(cache_dir, path, embedding)
    except OSError as exc:
        # Hashing reads the file first; an unreadable file is a skip, like a decode failure.
        raise AudioDecodeError(f"cannot read audio file {path}: {_one_line(exc)}") from exc


def _embed_file(path: Path, embedding: Embedding, cache_dir: Path | None) -> np.ndarray:
    """Embed one file, through the cache when one is given."""
    cache_path = _cache_key(path, embedding, cache_dir)
    if cache_path is not None:
        cached = _load_cached(cache_path)
        if cached is not None:
            return cached
    audio, sample_rate = load_audio_for_embedding(path)
    try:
        emb = embedding.embed(audio, sample_rate)
    except AudioDecodeError as exc:
        # Embedders do not know the file name; add it so the skip reason is actionable.
        raise AudioDecodeError(f"{path}: {_one_line(exc)}") from exc
    emb = np.asarray(emb, dtype=np.float32)
    if cache_path is not None:
        atomic_save_npy(cache_path, emb)
    return emb


def _front_end_file(
    path: Path, embedding: BatchedEmbedding, cache_dir: Path | None
) -> tuple[bool, np.ndarray, Path | None]:
    """``(True, embedding, None)`` on a cache hit, else ``(False, network inputs, cache path)``."""
    cache_path = _cache_key(path, embedding, cache_dir)
    if cache_path is not None:
        cached = _load_cached(cache_path)
        if cached is not None:
            return True, cached, None
    audio, sample_rate = load_audio_for_embedding(path)
    try:
        inputs = embedding.front_end(audio, sample_rate)
    except AudioDecodeError as exc:
        raise AudioDecodeError(f"{path}: {_one_line(exc)}") from exc
    return False, inputs, cache_path


def _network_threads(embedding: BatchedEmbedding, workers: int) -> int:
    """Batches the network runs at once: ``workers`` on CPU, else 1 (see _embed_files_batched)."""
    device = getattr(embedding, "device", None)
    on_cpu = device is not None and getattr(device, "type", str(device)) == "cpu"
    return workers if on_cpu and workers > 1 else 1


@contextlib.contextmanager
def _single_threaded_torch(enabled: bool) -> Iterator[None]:
    """Torch's intra-op threads set to 1 for the block (and restored), when ``enabled``."""
    if not enabled:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class _PendingFile:
    """A file whose network inputs wait for, or are in, network batches."""

    index: int
    inputs: np.ndarray  # [n, ...]
    cache_path: Path | None
    sent: int = 0  # rows sent to the network
    parts: list[np.ndarray] = dataclasses.field(default_factory=list)  # outputs so far, in row order
    done: int = 0  # rows whose outputs came back


class _NetworkBatches:
    """The network side of :func:`_embed_files_batched`.

    Queued rows of any number of files go to the network in batches; batches run here, or
    ``net_threads`` at once in a pool, and are finished oldest first, so every file's output
    parts arrive in row order. A file whose rows are all back lands in :attr:`finished`.
    """

    def __init__(self, embedding: BatchedEmbedding, net_threads: int) -> None:
        self.embedding = embedding
        self.net_threads = net_threads
        self.pool = ThreadPoolExecutor(max_workers=net_threads) if net_threads > 1 else None
        self.waiting: collections.deque[_PendingFile] = collections.deque()
        # Batches in flight, oldest first: (future, [(file, rows of it in the batch)]).
        self.running: collections.deque[tuple[Future[np.ndarray], list[tuple[_PendingFile, int]]]] = collections.deque()
        self.queued_rows = 0
        self.finished: dict[int, np.ndarray | AudioDecodeError] = {}

    def take_front_end(self, index: int, front_end: Future[tuple[bool, np.ndarray, Path | None]]) -> None:
        """File ``index``'s front-end outcome: a skip, a cache hit, or rows queued for the network."""
        try:
            hit, arr, cache_path = front_end.result()
        except AudioDecodeError as exc:
            self.finished[index] = exc
            return
        if hit:
            self.finished[index] = arr
            return
        self.waiting.append(_PendingFile(index, arr, cache_path))
        self.queued_rows += arr.shape[0]

    def send_full_batches(self) -> None:
        """Send every full batch the queued rows make."""
        while self.queued_rows >= self.embedding.batch_size:
            self._start_batch(self.embedding.batch_size)

    def finish_ready(self) -> None:
        """Finish the oldest batches that are already done (never waits)."""
        while self.running and self.running[0][0].done():
            self._finish_batch()

    def flush(self) -> None:
        """Send the remaining rows, shared evenly between the network threads so none idles
        at the end, and wait for every batch."""
        share = -(-self.queued_rows // self.net_threads)
        while self.queued_rows > 0:
            self._start_batch(min(self.queued_rows, share, self.embedding.batch_size))
        while self.running:
            self._finish_batch()

    def close(self) -> None:
        """Cancel the batches not started and stop the pool."""
        if self.pool is not None:
            for batch, _ in self.running:
                batch.cancel()
            self.pool.shutdown()

    def _start_batch(self, limit: int) -> None:
        """Send the first ``limit`` queued rows (across files) to the network."""
        parts: list[np.ndarray] = []
        owners: list[tuple[_PendingFile, int]] = []
        need = limit
        for item in self.waiting:
            if need == 0:
                break
            take = min(need, item.inputs.shape[0] - item.sent)
            if take == 0:
                continue
            parts.append(item.inputs[item.sent : item.sent + take])
            owners.append((item, take))
            item.sent += take
            need -= take
        batch = parts[0] if len(parts) == 1 else np.concatenate(parts)  # [limit, ...]
        self.queued_rows -= limit
        if self.pool is not None:
            self.running.append((self.pool.submit(self.embedding.embed_inputs, batch), owners))
        else:
            done: Future[np.ndarray] = Future()
            done.set_result(self.embedding.embed_inputs(batch))
            self.running.append((done, owners))
        while len(self.running) > self.net_threads:
            self._finish_batch()

    def _finish_batch(self) -> None:
        """Wait for the oldest batch and complete the files it ends."""
        fut, owners = self.running.popleft()
        out = fut.result()
        start = 0
        for item, take in owners:
            item.parts.append(out[start : start + take])
            item.done += take
            start += take
        while self.waiting and self.waiting[0].done == self.waiting[0].inputs.shape[0]:
            item = self.waiting.popleft()
            emb = np.asarray(np.concatenate(item.parts), dtype=np.float32)
            if item.cache_path is not None:
                atomic_save_npy(item.cache_path, emb)
            self.finished[item.index] = emb


def _embed_files_batched(
    files: list[Path], embedding: BatchedEmbedding, cache_dir: Path | None, workers: int
) -> Iterator[np.ndarray | AudioDecodeError]:
    """Embed ``files`` in order: front ends in threads, the network on cross-file batches.

    Front ends run up to ``2 * workers`` files ahead of the network, which bounds memory to a
    few files' inputs; the network always sees full batches of ``embedding.batch_size`` inputs
    (except the last), whatever the file lengths. On CPU with ``workers > 1``, ``workers``
    batches run at once, each in its own thread with one torch thread (torch's thread count is
    set to 1 for the call and restored after): whole batches side by side keep the cores busier
    than splitting every operation between threads (about 1.2x on VGGish with 2 cores, and
    less CPU time spent waiting). Elsewhere the network runs here with torch's own threads.

    Yields:
        Per file, in order: its float32 embedding ``[n, D]``, or the AudioDecodeError that
        made it a skip.
    """
    network = _NetworkBatches(embedding, _network_threads(embedding, workers))
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    ahead = max(2, 2 * workers)
    futures: collections.deque[Future[tuple[bool, np.ndarray, Path | None]]] = collections.deque()
    next_submit = 0
    next_yield = 0
    try:
        with _single_threaded_torch(network.pool is not None):
            for idx in range(len(files)):
                while next_submit < len(files) and next_submit < idx + ahead:
                    futures.append(pool.submit(_front_end_file, files[next_submit], embedding, cache_dir))
                    next_submit += 1
                network.take_front_end(idx, futures.popleft())
                network.send_full_batches()
                network.finish_ready()
                while next_yield in network.finished:  # in file order
                    yield network.finished.pop(next_yield)
                    next_yield += 1
            network.flush()
        while next_yield < len(files):
            yield network.finished.pop(next_yield)
            next_yield += 1
    finally:
        for fut in futures:
            fut.cancel()
        pool.shutdown()
        network.close()


def _load_npy_set(path: Path) -> EmbeddedSet:
    """Read precomputed embeddings ``[N, D]`` from a ``.npy`` file."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise StylecraftError(f"cannot read embeddings from {path}: {_one_line(exc)}") from exc
    if arr.ndim != 2:
        raise StylecraftError(f"embeddings in {path} must be a 2-D array [N, D], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise StylecraftError(f"embeddings in {path} must be floating point, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise StylecraftError(f"embeddings in {path} hold NaN or inf values")
    return EmbeddedSet(
        embeddings=arr.astype(np.float64),
        n_files=0,
        files=[],
        skipped=[],
        source=str(path),
        kind="npy",
    )


def embed_set(
    source: str | Path,
    embedding: Embedding,
    cache_dir: Path | None = None,
    progress: bool = True,
    workers: int = 1,
) -> EmbeddedSet:
    """Embed a folder of audio, or load precomputed embeddings from a ``.npy`` file.

    Files that cannot be decoded or embedded are skipped, each logged as a warning and listed
    in :attr:`EmbeddedSet.skipped` with its reason, so a few bad files do not stop an
    evaluation but are never dropped silently. Any other exception is a bug and propagates.

    Args:
        source: Folder searched recursively for audio (see :func:`list_audio_files`), or a
            ``.npy`` file with a 2-D float array ``[N, D]``. Precomputed embeddings must come
            from the same model as the other set; only their dimension can be checked.
        embedding: Model used for audio folders.
        cache_dir: If given, per-file embeddings are cached there as float32 ``.npy``
            (see :func:`embedding_cache_path`).
        progress: Show a progress bar over files on stderr.
        workers: Files decoded and embedded at once, in threads. Decoding, resampling, the
            FFT front ends and torch all release the GIL, so threads overlap them without
            copying the model into other processes; results keep file order either way.
            For a :class:`~stylecraft.evaluate.embeddings.BatchedEmbedding` (``vggish``) the
            threads run only the front ends, and the network runs here on batches gathered
            across files, so its own torch threads are not oversubscribed.

    Returns:
        The :class:`EmbeddedSet`.

    Raises:
        StylecraftError: If ``source`` does not exist, is neither a folder nor a ``.npy`` file,
            holds no audio files, if no file could be embedded, or if files disagree on the
            embedding dimension.
    """
    return embed_sets([source], embedding, cache_dir=cache_dir, progress=progress, workers=workers)[0]


def embed_sets(
    sources: list[str | Path],
    embedding: Embedding,
    cache_dir: Path | None = None,
    progress: bool = True,
    workers: int = 1,
) -> list[EmbeddedSet]:
    """:func:`embed_set` of several sources, their audio files embedded in one stream.

    Every source is checked before any audio is decoded. The files of all audio folders then
    go through one pipeline, so the next set's decoding overlaps the network's work on the
    previous one and the batches of a :class:`~stylecraft.evaluate.embeddings.BatchedEmbedding`
    run across sets (one partial batch at the end instead of one per set). Values are those of
    embedding each set on its own, up to float rounding where batches are composed differently.

    Args:
        sources: Folders of audio or ``.npy`` files, as for :func:`embed_set`.
        embedding: Model used for audio folders.
        cache_dir: Optional per-file embedding cache folder.
        progress: Show a progress bar over all audio files on stderr.
        workers: Front-end threads, as for :func:`embed_set`.

    Returns:
        One :class:`EmbeddedSet` per source, in order.

    Raises:
        StylecraftError: As :func:`embed_set`, for the first source at fault.
    """
    listed: list[EmbeddedSet | list[Path]] = []
    for raw in sources:
        source = Path(raw)
        if source.is_file():
            if source.suffix.lower() != ".npy":
                raise StylecraftError(
                    f"{source} is a file but not a .npy of embeddings; pass a folder of audio or a .npy"
                )
            listed.append(_load_npy_set(source))
            continue
        if not source.exists():
            raise StylecraftError(f"{source} does not exist (expected a folder of audio or a .npy file)")
        files = list_audio_files(source)
        if not files:
            exts = " ".join(AUDIO_EXTENSIONS)
            raise StylecraftError(f"no audio files ({exts}) found under {source}")
        listed.append(files)

    all_files = [f for item in listed if isinstance(item, list) for f in item]
    names = ", ".join(Path(src).name or str(src) for src, item in zip(sources, listed, strict=True) if isinstance(item, list))
    outcomes = _embed_files(all_files, embedding, cache_dir, workers, f"embedding {names} ({embedding.name})", progress)
    out: list[EmbeddedSet] = []
    start = 0
    for raw, item in zip(sources, listed, strict=True):
        if isinstance(item, EmbeddedSet):
            out.append(item)
            continue
        out.append(_audio_set(Path(raw), item, outcomes[start : start + len(item)]))
        start += len(item)
    return out


def _embed_files(
    files: list[Path], embedding: Embedding, cache_dir: Path | None, workers: int, desc: str, progress: bool
) -> list[np.ndarray | AudioDecodeError]:
    """Per file, in order: its embedding, or the AudioDecodeError that makes it a skip."""
    if not files:
        return []

    def one(path: Path) -> np.ndarray | AudioDecodeError:
        try:
            return _embed_file(path, embedding, cache_dir)
        except AudioDecodeError as exc:
            return exc

    if isinstance(embedding, BatchedEmbedding):
        pool = None
        results: Iterator[np.ndarray | AudioDecodeError] = _embed_files_batched(files, embedding, cache_dir, workers)
    elif workers > 1:
        pool = ThreadPoolExecutor(max_workers=workers)
        results = pool.map(one, files)
    else:
        pool = None
        results = map(one, files)
    try:
        return list(progress_iter(results, desc, total=len(files), enabled=progress))
    finally:
        if pool is not None:
            pool.shutdown()


def _audio_set(source: Path, files: list[Path], outcomes: list[np.ndarray | AudioDecodeError]) -> EmbeddedSet:
    """The :class:`EmbeddedSet` of one folder from its files' outcomes (skips logged)."""
    rows: list[np.ndarray] = []
    used: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path, emb in zip(files, outcomes, strict=True):
        if isinstance(emb, AudioDecodeError):
            reason = _one_line(emb)
            logger.warning("skipping %s: %s", path, reason)
            skipped.append((str(path), reason))
            continue
        if rows and emb.shape[1] != rows[0].shape[1]:
            raise StylecraftError(
                f"{path} gives embeddings of dimension {emb.shape[1]}, but {used[0]} gives {rows[0].shape[1]}"
            )
        rows.append(emb)
        used.append(str(path))

    if not rows:
        raise StylecraftError(
            f"none of the {len(files)} audio files under {source} could be embedded; "
            f"first error: {skipped[0][1]}"
        )
    return EmbeddedSet(
        embeddings=np.concatenate(rows, axis=0).astype(np.float64),
        n_files=len(used),
        files=used,
        skipped=skipped,
        source=str(source),
        kind="audio",
        sizes=[int(r.shape[0]) for r in rows],
    )


def few_rows_warning(label: str, source: str, n: int, d: int) -> str | None:
    """The warning for a set with no more rows than dimensions (``None`` when it has enough).

    With ``n <= D`` the covariance is singular and FAD is dominated by its sample-size bias; the
    value is still computed (frechet_distance handles it) but should not be trusted. KAD makes
    no such assumption.
    """
    if n > d:
        return None
    return (f"{label} set {source} has {n} embedding rows for dimension {d}: its covariance is singular and FAD "
            "is dominated by sample-size bias; add audio, or read KAD (--metric kad)")


def _stats(emb_set: EmbeddedSet, label: str, warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian of one set, with errors and warnings that say which set is meant."""
    n, d = emb_set.embeddings.shape
    if n < 2:
        raise StylecraftError(
            f"{label} set {emb_set.source} gives {n} embedding row(s); at least 2 are needed "
            "(and many more than the embedding dimension for a stable FAD)"
        )
    warning = few_rows_warning(label, emb_set.source, n, d)
    if warning is not None:
        logger.warning("%s", warning)
        warnings.append(warning)
    return gaussian_stats(emb_set.embeddings)


def environment_versions() -> dict[str, str]:
    """Versions of the packages that can move a FAD value, recorded in every FAD result."""
    import importlib.metadata
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("stylecraft", "numpy", "scipy", "torch", "librosa", "soxr", "resampy", "transformers", "soundfile"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


Metric = Literal["fad", "kad", "all"]


@dataclasses.dataclass(frozen=True)
class KadOptions:
    """How KAD is computed (defaults: kadtk 1.1.0's ``calc_kernel_audio_distance``).

    Attributes:
        bandwidth: ``"gen"`` (median pairwise distance of the evaluated set), ``"ref"`` (of
            the reference set) or a fixed positive number.
        estimator: ``"kadtk"`` or ``"unbiased"`` (see :mod:`stylecraft.evaluate.kad`).
    """

    bandwidth: float | Literal["gen", "ref"] = "gen"
    estimator: Literal["kadtk", "unbiased"] = "kadtk"


def _unit_embeddings(emb_set: EmbeddedSet) -> tuple[np.ndarray, str]:
    """Points for the diversity figure: one mean embedding per file, or the rows of a ``.npy``."""
    if emb_set.kind == "audio":
        return np.stack([rows.mean(axis=0) for rows in emb_set.per_file().values()]), "file"
    return emb_set.embeddings, "row"


def _diversity_record(ref_set: EmbeddedSet, gen_set: EmbeddedSet) -> dict[str, Any]:
    """Mean pairwise distance within the evaluated set beside within the reference set."""
    from stylecraft.evaluate.diversity import embedding_diversity

    ref_pts, ref_unit = _unit_embeddings(ref_set)
    gen_pts, gen_unit = _unit_embeddings(gen_set)
    if ref_pts.shape[0] < 2 or gen_pts.shape[0] < 2:
        return {"skipped": "needs at least 2 files (or rows) in each set"}
    return {**embedding_diversity(gen_pts, ref_pts), "unit_generated": gen_unit, "unit_reference": ref_unit,
            "what": "mean pairwise distance between per-file mean embeddings (standardised by the reference's spread)"}


def _fad_record(record: dict[str, Any], ref_set: EmbeddedSet, gen_set: EmbeddedSet, warnings: list[str],
                inf: bool, per_track: bool, ci: float | None, n_boot: int, seed: int, inf_min_n: int,
                inf_steps: int) -> None:
    """FAD and its statistics into ``record``."""
    from stylecraft.evaluate.stats import bootstrap_fad, fad_inf, per_track_fad

    mu_ref, sigma_ref = _stats(ref_set, "reference", warnings)
    mu_gen, sigma_gen = _stats(gen_set, "generated", warnings)
    record["fad"] = frechet_distance(mu_ref, sigma_ref, mu_gen, sigma_gen)
    if inf:
        res = fad_inf(mu_ref, sigma_ref, gen_set.embeddings, steps=inf_steps, min_n=inf_min_n, seed=seed)
        record["fad_inf"] = {"score": res.score, "slope": res.slope, "r2": res.r2, "points": res.points,
                             "steps": inf_steps, "min_n": inf_min_n}
    if per_track:
        scores, track_skips = per_track_fad(mu_ref, sigma_ref, gen_set.per_file())
        record["per_track_fad"] = scores
        record["per_track_skipped"] = [{"path": p, "reason": r} for p, r in track_skips.items()]
    if ci is not None:
        boot = bootstrap_fad(ref_set.embeddings, gen_set.embeddings, n_boot=n_boot, level=ci, seed=seed,
                             ref_sizes=ref_set.sizes or None, gen_sizes=gen_set.sizes or None,
                             resample_ref=_can_resample(ref_set))
        record["ci"] = boot.record()


def _can_resample(emb_set: EmbeddedSet) -> bool:
    """Whether a set has enough files (or rows) to be resampled by the bootstrap."""
    from stylecraft.evaluate.stats import MIN_BOOTSTRAP_UNITS

    units = len(emb_set.sizes) if emb_set.sizes else emb_set.embeddings.shape[0]
    return units >= MIN_BOOTSTRAP_UNITS


def _kad_record(record: dict[str, Any], ref_set: EmbeddedSet, gen_set: EmbeddedSet, opts: KadOptions,
                inf: bool, per_track: bool, ci: float | None, n_boot: int, seed: int, inf_min_n: int,
                inf_steps: int) -> None:
    """KAD and its statistics into ``record``."""
    from stylecraft.evaluate.kad import kad_inf, kernel_audio_distance, per_track_kad
    from stylecraft.evaluate.stats import bootstrap_kad

    res = kernel_audio_distance(ref_set.embeddings, gen_set.embeddings, bandwidth=opts.bandwidth,
                                estimator=opts.estimator)
    record["kad"] = res.kad
    record["kad_settings"] = {"kernel": "gaussian", "scale": 100, "bandwidth": res.bandwidth,
                              "bandwidth_from": res.bandwidth_from, "estimator": res.estimator,
                              "defaults": "kadtk 1.1.0 calc_kernel_audio_distance"}
    if inf:
        ki = kad_inf(ref_set.embeddings, gen_set.embeddings, steps=inf_steps, min_n=inf_min_n, seed=seed,
                     bandwidth=opts.bandwidth)
        record["kad_inf"] = {"score": ki.score, "slope": ki.slope, "r2": ki.r2, "points": ki.points,
                             "steps": inf_steps, "min_n": inf_min_n}
    if per_track:
        scores, track_skips = per_track_kad(ref_set.embeddings, gen_set.per_file(), bandwidth=opts.bandwidth)
        record["per_track_kad"] = scores
        record["per_track_skipped"] = [{"path": p, "reason": r} for p, r in track_skips.items()]
    if ci is not None:
        if opts.estimator != "kadtk":
            raise StylecraftError("the bootstrap interval of KAD uses the kadtk estimator; leave out --kad-estimator or --ci")
        boot = bootstrap_kad(ref_set.embeddings, gen_set.embeddings, n_boot=n_boot, level=ci, seed=seed,
                             ref_sizes=ref_set.sizes or None, gen_sizes=gen_set.sizes or None,
                             resample_ref=_can_resample(ref_set), bandwidth=opts.bandwidth)
        record["kad_ci"] = boot.record()


def _embed_pair(
    ref: str | Path, gen: str | Path, embedding: Embedding, cache_dir: Path | None, progress: bool, workers: int
) -> tuple[EmbeddedSet, EmbeddedSet]:
    """The reference and generated sets, embedded in one stream; their dimensions must agree."""
    ref_set, gen_set = embed_sets([ref, gen], embedding, cache_dir=cache_dir, progress=progress, workers=workers)
    d_ref = ref_set.embeddings.shape[1]
    d_gen = gen_set.embeddings.shape[1]
    if d_ref != d_gen:
        raise StylecraftError(
            f"embedding dimensions differ: reference {ref} has D={d_ref}, generated {gen} has "
            f"D={d_gen}; both sets must come from the same embedding model"
        )
    return ref_set, gen_set


def _base_record(metric: Metric, ref: str | Path, gen: str | Path, ref_set: EmbeddedSet, gen_set: EmbeddedSet,
                 embedding: Embedding, seed: int) -> dict[str, Any]:
    """What :func:`compute_fad` records before any metric: sizes, sources, skips, settings, versions."""
    skipped = [
        {"set": label, "path": path, "reason": reason}
        for label, s in (("ref", ref_set), ("gen", gen_set))
        for path, reason in s.skipped
    ]
    warnings: list[str] = []
    return {
        "metric": metric,
        "n_ref": int(ref_set.embeddings.shape[0]),
        "n_gen": int(gen_set.embeddings.shape[0]),
        "dim": int(ref_set.embeddings.shape[1]),
        "embedding": embedding.name,
        "embedding_settings": embedding.settings(),
        "versions": environment_versions(),
        "ref": str(ref),
        "gen": str(gen),
        "ref_kind": ref_set.kind,
        "gen_kind": gen_set.kind,
        "n_ref_files": ref_set.n_files,
        "n_gen_files": gen_set.n_files,
        "skipped": skipped,
        "seed": seed,
        "warnings": warnings,
    }


def _merge_per_track(record: dict[str, Any], gen_set: EmbeddedSet) -> None:
    """Replace ``per_track_fad`` / ``per_track_kad`` with one ``per_track`` list in file order."""
    fads, kads = record.pop("per_track_fad", {}), record.pop("per_track_kad", {})
    record["per_track"] = [
        {"path": p, **({"fad": fads[p]} if p in fads else {}), **({"kad": kads[p]} if p in kads else {})}
        for p in gen_set.files if p in fads or p in kads
    ]


def compute_fad(
    ref: str | Path,
    gen: str | Path,
    embedding_name: str = "mfcc",
    cache_dir: Path | None = None,
    progress: bool = True,
    inf: bool = False,
    per_track: bool = False,
    ci: float | None = None,
    n_boot: int = 200,
    workers: int = 1,
    seed: int = 0,
    inf_min_n: int = 500,
    inf_steps: int = 25,
    embedding: Embedding | None = None,
    metric: Metric = "fad",
    kad: KadOptions | None = None,
) -> dict[str, Any]:
    """Fréchet Audio Distance and/or Kernel Audio Distance between a reference set and a generated set.

    Args:
        ref: Reference set: a folder of audio or a ``.npy`` of embeddings ``[N, D]``.
        gen: Generated set, same kinds as ``ref``.
        embedding_name: Registry name of the embedding model (see
            :func:`~stylecraft.evaluate.embeddings.get_embedding`).
        cache_dir: Optional per-file embedding cache folder.
        progress: Show progress bars over files on stderr.
        inf: Also compute FAD∞ / KAD∞ (fadtk's / kadtk's ``score_inf``) of the generated set.
        per_track: Also compute each generated file's own FAD / KAD against the reference.
        ci: Confidence level of a bootstrap interval (e.g. 0.95), or ``None`` for none. Files
            are resampled whole; a generated set of fewer than
            :data:`~stylecraft.evaluate.stats.MIN_BOOTSTRAP_UNITS` files is refused, a
            reference set of fewer is held fixed (``ci.resampled_ref`` says which).
        n_boot: Bootstrap replicates.
        workers: Files embedded at once (threads); see :func:`embed_set` (on CPU, batched
            embeddings also run this many network batches at once).
        seed: Seed of the ∞ draws and bootstrap resampling.
        inf_min_n: Smallest sample size of FAD∞ / KAD∞.
        inf_steps: Number of FAD∞ / KAD∞ sample sizes.
        embedding: An already built embedding (overrides ``embedding_name``).
        metric: ``"fad"``, ``"kad"`` or ``"all"`` (both).
        kad: KAD options (defaults: kadtk's).

    Returns:
        A JSON-serialisable record with keys ``fad`` and/or ``kad`` (floats; ``kad_settings``
        says how KAD was computed), ``n_ref`` / ``n_gen`` (embedding rows), ``dim``,
        ``embedding``, ``embedding_settings`` (with the weights' hashes), ``versions``, ``ref`` /
        ``gen`` (sources), ``ref_kind`` / ``gen_kind`` (``"audio"`` or ``"npy"``),
        ``n_ref_files`` / ``n_gen_files`` (audio files embedded; 0 for ``.npy``), ``skipped``
        (a list of ``{"set", "path", "reason"}`` for files that could not be embedded),
        ``warnings`` (e.g. FAD on no more rows than dimensions), ``diversity`` (mean pairwise
        distance within each set), and, when asked for, ``fad_inf`` / ``kad_inf``,
        ``per_track`` (``{"path", "fad", "kad"}`` per file) and ``ci`` / ``kad_ci``.

    Raises:
        StylecraftError: For an unknown embedding or metric, unreadable sources, sets with
            fewer than 2 rows, sets whose embedding dimensions differ, or statistics that cannot
            be computed (e.g. ∞ with fewer rows than its minimum sample size, or an interval
            over too few files).
    """
    if metric not in ("fad", "kad", "all"):
        raise StylecraftError(f"--metric must be fad, kad or all, got {metric!r}")
    if per_track and not Path(gen).is_dir():
        raise StylecraftError(f"per-track scores need a folder of audio files; {gen} is a .npy of embeddings")
    if embedding is None:
        embedding = get_embedding(embedding_name)
    ref_set, gen_set = _embed_pair(ref, gen, embedding, cache_dir, progress, workers)
    record = _base_record(metric, ref, gen, ref_set, gen_set, embedding, seed)
    stats: dict[str, Any] = {"inf": inf, "per_track": per_track, "ci": ci, "n_boot": n_boot, "seed": seed, "inf_min_n": inf_min_n,
             "inf_steps": inf_steps}
    if metric in ("fad", "all"):
        _fad_record(record, ref_set, gen_set, record["warnings"], **stats)
    if metric in ("kad", "all"):
        _kad_record(record, ref_set, gen_set, kad or KadOptions(), **stats)
    if per_track:
        _merge_per_track(record, gen_set)
    record["diversity"] = _diversity_record(ref_set, gen_set)
    return record
