"""A catalogue index: per-track embedding statistics, segment embeddings and landmark fingerprints
of a whole catalogue, in SQLite (default) or PostgreSQL, so audits need not read the catalogue.

``build`` fills it (resumable, one writer, optionally under ``accelerate launch``), ``query``
answers audits from it.
"""
