"""``stylecraft index build|add|remove|stats``: fill a catalogue index and keep it consistent.

A build scans each artist's folder, skips files whose sha256 is already indexed (or that were
rejected with the same bytes), analyses the rest in parallel and commits them from one writer
in small transactions. Killed at any point (even SIGKILL), the index holds the last commit, and
the same command started again analyses only what is missing.

Under ``accelerate launch`` the processes split the files; the main process scans, hands out the
list, gathers every other process's results (as safetensors bytes over torch.distributed) and
is the only writer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from stylecraft.artifacts import sha256_file
from stylecraft.audio import AUDIO_EXTENSIONS
from stylecraft.errors import StylecraftError
from stylecraft.evaluate.audit.fingerprint import FAN_OUT, PEAKS_PER_SECOND
from stylecraft.evaluate.embeddings import Embedding, get_embedding
from stylecraft.index.analyse import AnalysedTrack, FileTask, analyse_file, record_from_bytes, record_to_bytes
from stylecraft.index.distributed import broadcast_bytes, distributed_state, gather_bytes
from stylecraft.index.store import IndexStoreError, Store, open_store
from stylecraft.index.writer import commit_records, remove_tracks
from stylecraft.parallel import resolve_workers, run_tasks
from stylecraft.progress import make_progress

__all__ = ["BuildReport", "IndexSettings", "build_index", "index_stats", "remove_from_index"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """What an index holds; fixed when it is created (a later build must agree).

    Attributes:
        embeddings: Embedding names stored per track (the first is the audit's default).
        loudness_lufs: Tracks are scaled to this integrated loudness before embedding (as the
            audit does), ``None`` for their own level.
        peaks_per_second: Fingerprint peak density (see ``evaluate.fingerprint``).
        fan_out: Fingerprint partners per anchor peak.
        profile_s: Seconds of each track analysed for its style profile.
        min_duration_s: Shorter files are rejected.
    """

    embeddings: tuple[str, ...] = ("mfcc",)
    loudness_lufs: float | None = -23.0
    peaks_per_second: float = PEAKS_PER_SECOND
    fan_out: int = FAN_OUT
    profile_s: float = 60.0
    min_duration_s: float = 1.0

    def fingerprint(self) -> dict[str, Any]:
        return {"peaks_per_second": self.peaks_per_second, "fan_out": self.fan_out}

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "embeddings": list(self.embeddings)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexSettings:
        return cls(**{**data, "embeddings": tuple(data["embeddings"])})


@dataclasses.dataclass
class BuildReport:
    """What one build did."""

    added: int = 0
    already_indexed: int = 0
    already_rejected: int = 0
    rejected: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    rejects: list[dict[str, str]] = dataclasses.field(default_factory=list)
    main_process: bool = True


def parse_reference(item: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> ``(name, folder)``.

    Raises:
        StylecraftError: For a malformed item or a missing folder.
    """
    name, sep, path = item.partition("=")
    if not sep or not name.strip() or not path:
        raise StylecraftError(f"a reference must look like NAME=PATH, got {item!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise StylecraftError(f"reference {name.strip()!r}: {folder} is not a folder of audio")
    return name.strip(), folder


def built_embeddings(settings: IndexSettings) -> dict[str, Embedding]:
    """The index's embeddings, loudness-normalised as its settings say."""
    from stylecraft.evaluate.audit.profile import LoudnessNormalized

    out: dict[str, Embedding] = {}
    for name in settings.embeddings:
        emb = get_embedding(name)
        out[name] = emb if settings.loudness_lufs is None else LoudnessNormalized(emb, settings.loudness_lufs)
    return out


def _open_for_build(db: str | Path, settings: IndexSettings | None) -> tuple[Store, IndexSettings]:
    """Open or create the index; a new one records ``settings``, an old one must agree with them."""
    store = open_store(db, create=True)
    with store.write():
        stored = store.meta("settings")
        if stored is None:
            chosen = settings or IndexSettings()
            store.set_meta("settings", chosen.to_json())
            store.set_meta("embedding_settings", {k: e.settings() for k, e in built_embeddings(chosen).items()})
            return store, chosen
    have = IndexSettings.from_json(stored)
    if settings is not None and settings != have:
        store.close()
        raise IndexStoreError(
            f"{db} was built with {json.dumps(have.to_json())}; this build asks for {json.dumps(settings.to_json())}: "
            "use the same settings or a new index"
        )
    return store, have


def _scan(store: Store, references: dict[str, Path], report: BuildReport) -> tuple[list[FileTask], list[AnalysedTrack]]:
    """Files to analyse: not yet indexed and not rejected with the same bytes; plus scan rejects."""
    from stylecraft.data.ingest import scan

    with store.read():
        known = {r[0] for r in store.query("SELECT sha256 FROM tracks")}
        rejected = {(r[0], r[1]) for r in store.query("SELECT path, sha256 FROM rejects")}
    todo: list[FileTask] = []
    scan_rejects: list[AnalysedTrack] = []
    for artist, folder in references.items():
        files, rejects = scan(folder.resolve(), list(AUDIO_EXTENSIONS))
        scan_rejects += [AnalysedTrack(FileTask(artist, r.path, ""), reason=r.reason) for r in rejects
                         if (r.path, "") not in rejected]
        for f in files:
            try:
                digest = sha256_file(f)
            except OSError as exc:
                scan_rejects.append(AnalysedTrack(FileTask(artist, str(f), ""), reason=f"cannot read: {exc.strerror or exc}"))
                continue
            if digest in known:
                report.already_indexed += 1
                continue
            if (str(f), digest) in rejected:
                report.already_rejected += 1
                continue
            known.add(digest)  # a second copy in this scan is a duplicate, analysed once
            todo.append(FileTask(artist, str(f), digest))
    return todo, scan_rejects


def _commit(store: Store, batch: list[AnalysedTrack], report: BuildReport) -> None:
    added, dup, rejected = commit_records(store, batch)
    report.added += added
    report.already_indexed += dup
    report.rejected += rejected
    report.audio_s += sum(r.duration_s for r in batch if r.reason is None)
    report.rejects += [{"path": r.task.path, "reason": r.reason} for r in batch if r.reason is not None]
    batch.clear()


def build_index(
    db: str | Path,
    references: dict[str, Path],
    settings: IndexSettings | None = None,
    workers: int = 0,
    commit_every: int = 8,
    progress: bool = True,
) -> BuildReport:
    """Index every audio file under each artist's folder (or, with several processes, share the work).

    Args:
        db: SQLite path or ``postgresql://`` URL; created if missing.
        references: Artist name -> folder.
        settings: For a new index (``None``: defaults, or the existing index's own).
        workers: Files analysed at once in this process (0: one per core).
        commit_every: Tracks per transaction.
        progress: Show a progress bar.

    Returns:
        What was added, skipped and rejected, and how much audio was analysed in how long.

    Raises:
        StylecraftError: Unknown embedding, unreachable database, or settings that disagree
            with the existing index.
    """
    state = distributed_state()
    if state is not None and state.num_processes > 1:
        return distributed_build(state, db, references, settings, commit_every, progress)
    t0 = time.perf_counter()
    store, settings = _open_for_build(db, settings)
    report = BuildReport()
    try:
        todo, scan_rejects = _scan(store, references, report)
        if scan_rejects:
            _commit(store, scan_rejects, report)
        embeddings = built_embeddings(settings)
        args = [(t, embeddings, settings.fingerprint(), settings.profile_s, settings.min_duration_s) for t in todo]
        batch: list[AnalysedTrack] = []
        with make_progress() as prog:
            bar = prog.add_task("indexing", total=len(todo), visible=progress)
            for i, res in run_tasks(analyse_file, args, resolve_workers(workers, len(args))):
                if isinstance(res, BaseException):
                    if not isinstance(res, Exception) or isinstance(res, MemoryError):
                        raise res
                    first = str(res).strip().splitlines()[0] if str(res).strip() else ""
                    res = AnalysedTrack(todo[i], reason=f"cannot analyse: {type(res).__name__}{': ' + first if first else ''}")
                batch.append(res)
                prog.advance(bar)
                if len(batch) >= commit_every:
                    _commit(store, batch, report)
        if batch:
            _commit(store, batch, report)
        refresh_models(store, settings)
    finally:
        store.close()
    report.wall_s = time.perf_counter() - t0
    return report


def distributed_build(
    state: Any, db: str | Path, references: dict[str, Path], settings: Any, commit_every: int, progress: bool
) -> Any:
    """The body of :func:`build_index` under several processes.

    Returns:
        The :class:`BuildReport` on the main process (counts of its
        commits); other processes return an empty report.
    """
    t0 = time.perf_counter()
    rank, world = state.process_index, state.num_processes
    report = BuildReport(main_process=rank == 0)
    store = None
    plan: bytes | None = None
    if rank == 0:
        store, settings = _open_for_build(db, settings)
        todo, scan_rejects = _scan(store, references, report)
        if scan_rejects:
            _commit(store, scan_rejects, report)
        plan = json.dumps({"settings": settings.to_json(), "tasks": [t.__dict__ for t in todo]}).encode()
    shared = json.loads(broadcast_bytes(plan))
    settings = IndexSettings.from_json(shared["settings"])
    tasks = [FileTask(**t) for t in shared["tasks"]]
    embeddings = built_embeddings(settings)
    batch: list[AnalysedTrack] = []
    rounds = (len(tasks) + world - 1) // world
    try:
        with make_progress() as prog:
            bar = prog.add_task(f"indexing ({world} processes)", total=len(tasks), visible=progress and rank == 0)
            for r in range(rounds):
                i = r * world + rank
                mine = b""
                if i < len(tasks):
                    mine = record_to_bytes(_analyse_safely(tasks[i], embeddings, settings))
                for data in gather_bytes(mine, world, rank):
                    if data:
                        batch.append(record_from_bytes(data))
                        prog.advance(bar)
                if rank == 0 and store is not None and (len(batch) >= commit_every or r == rounds - 1) and batch:
                    _commit(store, batch, report)
        if rank == 0 and store is not None:
            refresh_models(store, settings)
    finally:
        if store is not None:
            store.close()
    state.wait_for_everyone()
    report.wall_s = time.perf_counter() - t0
    return report


def _analyse_safely(task: FileTask, embeddings: dict[str, Any], settings: Any) -> AnalysedTrack:
    try:
        return analyse_file(task, embeddings, settings.fingerprint(), settings.profile_s, settings.min_duration_s)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bad file is a reject, never a crash of the whole launch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return AnalysedTrack(task, reason=f"cannot analyse: {type(exc).__name__}{': ' + first if first else ''}")


def refresh_models(store: Store, settings: IndexSettings) -> None:
    """Refit the attribution model of every embedding whose tracks changed since its last fit."""
    from stylecraft.index.attribution import fit_and_store

    for name in settings.embeddings:
        fit_and_store(store, name)


def remove_from_index(db: str | Path, what: str) -> int:
    """Remove an artist (by name) or the tracks at or under a path; returns how many tracks went.

    Raises:
        StylecraftError: Nothing in the index matches ``what``.
    """
    store = open_store(db)
    try:
        with store.read():
            ids = [int(r[0]) for r in store.query(
                "SELECT t.id FROM tracks t JOIN artists a ON a.id = t.artist_id WHERE a.name = ?", (what,))]
            if not ids:
                p = str(Path(what).expanduser().resolve())
                ids = [int(r[0]) for r in store.query("SELECT id FROM tracks WHERE path = ? OR path LIKE ?",
                                                      (p, p.rstrip("/") + "/%"))]
        if not ids:
            raise StylecraftError(f"no artist named {what!r} and no indexed track at or under that path in {db}")
        n = remove_tracks(store, ids)
        settings = IndexSettings.from_json(store.meta("settings"))
        refresh_models(store, settings)
        return n
    finally:
        store.close()


def index_stats(db: str | Path) -> dict[str, Any]:
    """Counts and settings of an index: artists, tracks, hours, postings, rejects, models."""
    store = open_store(db)
    try:
        with store.read():
            artists = store.query(
                "SELECT a.name, COUNT(t.id), COALESCE(SUM(t.duration_s), 0) FROM artists a "
                "LEFT JOIN tracks t ON t.artist_id = a.id GROUP BY a.name ORDER BY a.name")
            rejects = store.query("SELECT path, artist, reason FROM rejects ORDER BY path")
            models = store.query("SELECT embedding, generation, summary FROM models ORDER BY embedding")
            return {
                "index": store.url if store.dialect == "sqlite" else "postgresql",
                "backend": store.dialect,
                "generation": int(store.meta("generation") or 0),
                "settings": store.meta("settings"),
                "artists": {a: {"tracks": int(n), "hours": float(s) / 3600} for a, n, s in artists},
                "tracks": int(store.scalar("SELECT COUNT(*) FROM tracks")),
                "hours": float(store.scalar("SELECT COALESCE(SUM(duration_s), 0) FROM tracks")) / 3600,
                "fingerprint_postings": int(store.scalar("SELECT COUNT(*) FROM fingerprints")),
                "segments": {e: int(n) for e, n in store.query(
                    "SELECT embedding, COALESCE(SUM(n_rows), 0) FROM track_embeddings GROUP BY embedding")},
                "rejects": [{"path": p, "artist": a, "reason": r} for p, a, r in rejects],
                "models": {e: {"generation": int(g), **json.loads(s)} for e, g, s in models},
            }
    finally:
        store.close()
