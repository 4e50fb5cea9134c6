"""Connections to an index database: one SQLite file, or a PostgreSQL server.

Both speak the same SQL (written with ``?`` placeholders; PostgreSQL's ``%s`` is substituted),
so the build and query code is written once. Each backend only knows how to connect, start a
write transaction, and bulk-load fingerprint postings as fast as its server allows.

Concurrency: SQLite runs in WAL mode, so readers keep reading a consistent snapshot while one
writer commits; PostgreSQL gives the same through MVCC. Every write happens inside
:meth:`Store.write`, one transaction: a process killed mid-write leaves the last commit.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from stylecraft.errors import StylecraftError
from stylecraft.index.schema import SCHEMA_VERSION, table_statements

__all__ = ["IndexStoreError", "PostgresStore", "SQLiteStore", "Store", "open_store"]


class IndexStoreError(StylecraftError):
    """The index database is missing, of another version, or was built with other settings."""


class Store:
    """Common SQL over a DB-API connection.

    Attributes:
        url: What the user named (a path or a ``postgresql://`` URL).
        dialect: ``"sqlite"`` or ``"postgres"``.
    """

    dialect = "sqlite"

    def __init__(self, url: str, conn: Any) -> None:
        self.url = url
        self.conn = conn

    # -- SQL helpers ---------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        cur.executemany(self._sql(sql), list(rows))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        """Run an ``INSERT`` and return the new row's id."""
        return int(self.execute(sql + " RETURNING id", params).fetchone()[0])

    # -- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[Store]:
        """One write transaction: committed on exit, rolled back on an exception."""
        self._begin_write()
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    @contextlib.contextmanager
    def read(self) -> Iterator[Store]:
        """One read transaction: every query inside sees the same committed state."""
        self._begin_read()
        try:
            yield self
        finally:
            self.conn.rollback()

    def _begin_write(self) -> None:
        raise NotImplementedError

    def _begin_read(self) -> None:
        raise NotImplementedError

    def add_postings(self, hashes: Sequence[int], postings: Sequence[int]) -> None:
        """Insert fingerprint rows (inside a write transaction)."""
        self.executemany("INSERT INTO fingerprints (hash, posting) VALUES (?, ?) ON CONFLICT DO NOTHING",
                         zip(hashes, postings, strict=True))

    def lookup_postings(self, hashes: Sequence[int]) -> list[tuple[int, int]]:
        """``(hash, posting)`` rows for the given hashes."""
        raise NotImplementedError

    def count_postings(self, hashes: Sequence[int]) -> list[tuple[int, int]]:
        """``(hash, postings)`` for those of the given hashes that the index holds."""
        raise NotImplementedError

    def change_hash_counts(self, hashes: Sequence[int], deltas: Sequence[int]) -> None:
        """Add ``deltas`` to the posting counts of ``hashes`` (inside a write transaction)."""
        self.executemany("INSERT INTO hash_counts (hash, n) VALUES (?, ?) ON CONFLICT (hash) DO UPDATE SET n = hash_counts.n + excluded.n",
                         zip(hashes, deltas, strict=True))
        if min(deltas, default=0) < 0:
            self.execute("DELETE FROM hash_counts WHERE n <= 0")

    def close(self) -> None:
        self.conn.close()

    # -- schema and settings ----------------------------------------------------------------
    def create_schema(self) -> None:
        with self.write():
            for stmt in table_statements(self.dialect):
                self.execute(stmt)
            if self.scalar("SELECT value FROM meta WHERE key = 'schema_version'") is None:
                self.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self.execute("INSERT INTO meta (key, value) VALUES ('generation', '0')")

    def meta(self, key: str) -> Any:
        value = self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else json.loads(value)

    def set_meta(self, key: str, value: Any) -> None:
        text = json.dumps(value, sort_keys=True)
        self.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     (key, text))

    def check_version(self) -> None:
        version = self.meta("schema_version")
        if version is None:
            raise IndexStoreError(f"{self.url} is not a stylecraft index: build one with `stylecraft index build`")
        if int(version) != SCHEMA_VERSION:
            raise IndexStoreError(f"{self.url} has index schema {version}, this stylecraft reads {SCHEMA_VERSION}: rebuild it")

    def bump_generation(self) -> int:
        gen = int(self.meta("generation") or 0) + 1
        self.set_meta("generation", gen)
        return gen


class SQLiteStore(Store):
    """One SQLite file in WAL mode (readers never wait for the writer)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, create: bool) -> None:
        path = Path(path)
        if not create and not path.is_file():
            raise IndexStoreError(f"index {path} does not exist: build it with `stylecraft index build {path} --reference NAME=PATH`")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE for writers).
        conn = sqlite3.connect(str(path), timeout=600.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB page cache
        super().__init__(str(path), conn)

    def _begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _begin_read(self) -> None:
        self.conn.execute("BEGIN")

    def _load_query(self, hashes: Sequence[int]) -> Any:
        # A temporary table joined on the clustered key: one ordered range read per hash.
        cur = self.conn.cursor()
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS q (hash INTEGER PRIMARY KEY)")
        cur.execute("DELETE FROM q")
        cur.executemany("INSERT OR IGNORE INTO q (hash) VALUES (?)", ((int(h),) for h in hashes))
        return cur

    def lookup_postings(self, hashes: Sequence[int]) -> list[tuple[int, int]]:
        return self._load_query(hashes).execute("SELECT f.hash, f.posting FROM q JOIN fingerprints f ON f.hash = q.hash").fetchall()

    def count_postings(self, hashes: Sequence[int]) -> list[tuple[int, int]]:
        return self._load_query(hashes).execute("SELECT c.hash, c.n FROM q JOIN hash_counts c ON c.hash = q.hash").fetchall()


class PostgresStore(Store):
    """A PostgreSQL database reached through psycopg 3."""

    dialect = "postgres"

    def __init__(self, url: str, create: bool) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise IndexStoreError("a postgresql:// index needs psycopg: pip install 'stylecraft[postgres]'") from exc
        try:
            conn = psycopg.connect(url, autocommit=False)
        except psycopg.OperationalError as exc:
            raise IndexStoreError(f"cannot connect to {_redact(url)}: {' '.join(str(exc).split())}") from None
        super().__init__(url, conn)
        if not create:
            exists = self.scalar("SELECT to_regclass('meta') IS NOT NULL")
            conn.rollback()
            if not exists:
                raise IndexStoreError(f"{_redact(url)} holds no stylecraft index: build one with `stylecraft index build`")

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _begin_write(self) -> None:
        self.conn.rollback()  # psycopg opens transactions implicitly; start from a clean one
        # One writer at a time: a transaction-scoped advisory lock, released at commit.
        self.conn.execute("SELECT pg_advisory_xact_lock(727274)")

    def _begin_read(self) -> None:
        self.conn.rollback()
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def add_postings(self, hashes: Sequence[int], postings: Sequence[int]) -> None:
        # COPY into a temporary table, then one INSERT: far faster than row-by-row inserts.
        cur = self.conn.cursor()
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS fp_load (hash BIGINT, posting BIGINT) ON COMMIT DELETE ROWS")
        with cur.copy("COPY fp_load (hash, posting) FROM STDIN") as copy:
            for row in zip(hashes, postings, strict=True):
                copy.write_row(row)
        cur.execute("INSERT INTO fingerprints SELECT hash, posting FROM fp_load ORDER BY hash ON CONFLICT DO NOTHING")
        cur.execute("TRUNCATE fp_load")

    def lookup_postings(self, hashes: Sequence[int]) -> list[tuple[int, int]]:
        cur = self.conn.cursor()
        cur.execute("SELECT hash, posting FROM fingerprints WHERE hash = ANY(%s)", (sorted({int(h) for h in hashes}),))
        return cur.fetchall()

    def count_postings(self, hashes: Sequence[int]) -> list[tuple[int, int]]:
        cur = self.conn.cursor()
        cur.execute("SELECT hash, n FROM hash_counts WHERE hash = ANY(%s)", (sorted({int(h) for h in hashes}),))
        return cur.fetchall()


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def is_postgres_url(url: str | Path) -> bool:
    return str(url).startswith(("postgresql://", "postgres://"))


def open_store(url: str | Path, create: bool = False) -> Store:
    """Open (or with ``create``, create) the index at ``url``: a file path or a ``postgresql://`` URL.

    Raises:
        IndexStoreError: The index does not exist (and ``create`` is false), cannot be reached, or
            has another schema version.
    """
    store: Store = PostgresStore(str(url), create) if is_postgres_url(url) else SQLiteStore(url, create)
    if create:
        store.create_schema()
    with store.read():
        store.check_version()
    return store
