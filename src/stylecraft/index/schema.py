"""Tables of a catalogue index, the same on SQLite and PostgreSQL (types differ per dialect).

* ``meta``: key/value settings fixed when the index is created (embeddings, fingerprint and
  loudness settings, schema version) and the ``generation``, raised by every commit that adds
  or removes tracks.
* ``artists``, ``tracks``: one row per artist and per indexed recording (path, sha256,
  duration, style profile as JSON). A sha256 is indexed once.
* ``track_embeddings``: per track and embedding, the segment embeddings ``[n, D]`` (float32,
  for nearest segments and per-track KAD) and their Gaussian (mean, covariance, trace: per-track
  FAD).
* ``artist_embeddings``: per artist and embedding, sufficient sums (row count, sum, sum of outer
  products) of all its tracks' rows, updated in the same transaction as the tracks, so the
  artist's Gaussian is always that of the tracks a reader sees.
* ``fingerprints``: the inverted index ``hash -> posting`` with ``posting = track_id << 20 | frame``,
  clustered by hash so a lookup is one range read.
* ``hash_counts``: postings per hash, kept with the postings, so a query can pick the
  candidate's rarest hashes first and stop at a budget of postings (see ``copies``).
* ``rejects``: files that could not be indexed, with the reason.
* ``models``: the fitted attribution model per embedding (safetensors bytes, no pickle).
"""

from __future__ import annotations

SCHEMA_VERSION = 2  # 2: landmarks picked per band in a sliding window, paired in a target zone
FRAME_BITS = 20  # posting = track_id << FRAME_BITS | anchor frame (2^20 frames = 6.7 h at 11.6 ms)

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artists (id {serial} PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS tracks (
  id {serial} PRIMARY KEY,
  artist_id BIGINT NOT NULL REFERENCES artists(id),
  path TEXT NOT NULL,
  sha256 TEXT NOT NULL UNIQUE,
  duration_s DOUBLE PRECISION NOT NULL,
  n_hashes BIGINT NOT NULL,
  profile TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_artist ON tracks (artist_id);
CREATE INDEX IF NOT EXISTS tracks_path ON tracks (path);
CREATE TABLE IF NOT EXISTS track_embeddings (
  track_id BIGINT NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
  embedding TEXT NOT NULL,
  n_rows BIGINT NOT NULL,
  dim BIGINT NOT NULL,
  mean {blob} NOT NULL,
  cov {blob} NOT NULL,
  trace DOUBLE PRECISION NOT NULL,
  segments {blob} NOT NULL,
  PRIMARY KEY (track_id, embedding)
);
CREATE TABLE IF NOT EXISTS artist_embeddings (
  artist_id BIGINT NOT NULL REFERENCES artists(id),
  embedding TEXT NOT NULL,
  n_tracks BIGINT NOT NULL,
  n_rows BIGINT NOT NULL,
  row_sum {blob} NOT NULL,
  outer_sum {blob} NOT NULL,
  PRIMARY KEY (artist_id, embedding)
);
CREATE TABLE IF NOT EXISTS fingerprints (hash BIGINT NOT NULL, posting BIGINT NOT NULL, PRIMARY KEY (hash, posting)){clustered};
CREATE TABLE IF NOT EXISTS hash_counts (hash BIGINT PRIMARY KEY, n BIGINT NOT NULL){clustered};
CREATE TABLE IF NOT EXISTS rejects (path TEXT PRIMARY KEY, artist TEXT NOT NULL, sha256 TEXT, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (embedding TEXT PRIMARY KEY, generation BIGINT NOT NULL, params {blob} NOT NULL, summary TEXT NOT NULL);
"""


def table_statements(dialect: str) -> list[str]:
    """``CREATE`` statements for ``dialect`` (``"sqlite"`` or ``"postgres"``)."""
    if dialect == "sqlite":
        ddl = _TABLES.format(serial="INTEGER", blob="BLOB", clustered=" WITHOUT ROWID")
    else:
        ddl = _TABLES.format(serial="BIGSERIAL", blob="BYTEA", clustered="")
    return [s.strip() for s in ddl.split(";") if s.strip()]
